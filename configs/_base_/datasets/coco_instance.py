# mmdet's COCO 2017 instance segmentation (data/coco: annotations/,
# train2017/, val2017/; 1333x800 resize, flip; bbox + segm mAP; 2 images
# per GPU, 16 on 8 GPUs), with the training collate function stated:
# batches are lists (pseudo_collate), which mmdet's data preprocessor pads
# and stacks, so that no launcher's default applies (mmpretrain's train.py
# would add default_collate). The val/test loaders name no collate_fn and
# get mmengine's default, the same pseudo_collate: DetInferencer reads
# `test_dataloader.collate_fn` as a registry key (a str), which the Runner
# does not accept, so no value suits both.
_base_ = ['mmdet::_base_/datasets/coco_instance.py']
train_dataloader = dict(
    collate_fn=dict(type='pseudo_collate'),
    persistent_workers=False)  # exact resume (ExactResumeHook)
