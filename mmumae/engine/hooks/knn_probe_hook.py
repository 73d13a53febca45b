"""Score the frozen backbone with a kNN classifier during pre-training."""
import os.path as osp
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.dataset import default_collate
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS
from torch.utils.data import DataLoader

from mmumae.registry import HOOKS

__all__ = ['KNNProbeHook', 'knn_predict']


def knn_predict(train: torch.Tensor, train_labels: torch.Tensor,
                query: torch.Tensor, num_classes: int, k: int = 20,
                temperature: float = 0.07) -> torch.Tensor:
    """Class scores ``(N, num_classes)`` of a weighted kNN on cosine
    similarity: the ``k`` nearest training features vote with weight
    ``exp(similarity / temperature)`` (Wu et al. 2018, DINO)."""
    sim = F.normalize(query, dim=1) @ F.normalize(train, dim=1).t()
    top, idx = sim.topk(min(k, train.shape[0]), dim=1)
    votes = torch.zeros(query.shape[0], num_classes)
    return votes.scatter_add_(1, train_labels[idx], (top / temperature).exp())


@HOOKS.register_module()
class KNNProbeHook(Hook):
    """Every ``interval`` epochs, score the frozen backbone on a small
    labelled split with a weighted kNN, so the log shows whether the
    representation still improves. Epoch-based loops only.

    The backbone (in eval mode, no masks: its dense output) encodes the
    images of ``data_root/<train_prefix>`` and ``data_root/<val_prefix>``
    (ImageNet layout: one sub-folder per class, read by mmpretrain's
    ``CustomDataset``) after the model's own data preprocessor; the last
    output is pooled over positions. The validation images are classified
    by their nearest training images; the top-1 accuracy (percent) is
    logged as ``knn/accuracy`` through the message hub and the
    visualizer's backends (``LocalVisBackend``, TensorBoard). The test
    split is never read: a ``test`` prefix is refused.

    Args:
        data_root (str, optional): The labelled folder. None takes the
            training dataloader's ``data_root``. Defaults to None.
        interval (int): Epochs between scores; the last epoch is always
            scored. Defaults to 10.
        img_size (int): Images are resized to ``img_size`` square.
            Defaults to 128.
        train_prefix (str): The labelled reference images. Defaults to
            ``'train'``.
        val_prefix (str): The scored images. Defaults to ``'val'``.
        k (int): Neighbours. Defaults to 20.
        temperature (float): Of the vote weights. Defaults to 0.07.
        batch_size (int): Images per forward pass. Defaults to 64.
    """
    priority = 'LOW'

    def __init__(self,
                 data_root: Optional[str] = None,
                 interval: int = 10,
                 img_size: int = 128,
                 train_prefix: str = 'train',
                 val_prefix: str = 'val',
                 k: int = 20,
                 temperature: float = 0.07,
                 batch_size: int = 64) -> None:
        if 'test' in (train_prefix, val_prefix):
            raise ValueError('KNNProbeHook: the test split is for reporting '
                             'only; score on a validation split '
                             "(val_prefix='val').")
        self.data_root, self.interval = data_root, interval
        self.img_size, self.batch_size = img_size, batch_size
        self.prefixes = (train_prefix, val_prefix)
        self.k, self.temperature = k, temperature
        self._loaders: Optional[List] = None

    def _build_loaders(self, runner: Runner) -> List:
        root = self.data_root or runner.cfg.train_dataloader.dataset.get(
            'data_root', '')
        pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(self.img_size, self.img_size)),
            dict(type='PackInputs'),
        ]
        loaders = []
        for prefix in self.prefixes:
            if not osp.isdir(osp.join(root, prefix)):
                raise FileNotFoundError(
                    f'KNNProbeHook: no folder {osp.join(root, prefix)!r}: '
                    'set data_root to a folder with train/ and val/ of class '
                    'sub-folders, or remove the hook.')
            # every image on the scoring process (no distributed sampler)
            loaders.append(DataLoader(
                DATASETS.build(dict(type='CustomDataset', data_root=root,
                                    data_prefix=prefix, pipeline=pipeline)),
                batch_size=self.batch_size, collate_fn=default_collate))
        return loaders

    @torch.no_grad()
    def _features(self, model, loader) -> Tuple[torch.Tensor, torch.Tensor]:
        feats, labels = [], []
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            inputs = data['inputs']
            inputs = inputs[0] if isinstance(inputs, list) else inputs
            out = model.backbone(inputs)
            out = out[-1] if isinstance(out, (tuple, list)) else out
            feats.append(out.flatten(2).mean(2) if out.dim() == 4
                         else out.mean(1))
            labels.append(torch.cat([s.gt_label for s in
                                     data['data_samples']]))
        return torch.cat(feats).float().cpu(), torch.cat(labels).cpu()

    def score(self, runner: Runner) -> float:
        """The kNN top-1 accuracy (percent) of the current backbone."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if self._loaders is None:
            self._loaders = self._build_loaders(runner)
        was_training = model.training
        model.eval()
        try:
            (xtr, ytr), (xva, yva) = (self._features(model, loader)
                                      for loader in self._loaders)
        finally:
            model.train(was_training)
        num_classes = int(max(ytr.max(), yva.max())) + 1
        pred = knn_predict(xtr, ytr, xva, num_classes, self.k,
                           self.temperature).argmax(1)
        return float((pred == yva).float().mean() * 100)

    def after_train_epoch(self, runner: Runner) -> None:
        """Score every ``interval`` epochs and after the last one (on the
        main process; the others go on and wait at their next step)."""
        epoch = runner.epoch + 1
        if (epoch % self.interval and epoch != runner.max_epochs) or \
                not is_main_process():
            return
        accuracy = self.score(runner)
        runner.message_hub.update_scalar('knn/accuracy', accuracy)
        runner.visualizer.add_scalars({'knn/accuracy': accuracy},
                                      step=epoch)
        runner.logger.info(f'Epoch {epoch}: kNN accuracy of the frozen '
                           f'backbone on {self.prefixes[1]}: {accuracy:.2f}')
