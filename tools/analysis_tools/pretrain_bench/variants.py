"""Benchmarked variants: every one is a config file in ``configs/``.

A preset (``--model``) names the configs of its variants; ``--cfg-options``
changes them (a ``VARIANT:`` prefix restricts a key to one variant), and
``--img-size`` sets the input size wherever the config states one.
"""
import ast
import copy
import os.path as osp
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config, DictAction

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

_UM = 'configs/ummae/'
_SM = 'configs/simmim/'
_SM_SWIN = (_SM + 'simmim_swin-tiny-w16_8xb64-accum8-amp-coslr-200e_'
            'in1k-256px.py')

#: preset -> title, baseline variant, {variant: (config, cfg-options)}
PRESETS: Dict[str, dict] = {
    'swin-t': dict(
        title='Swin-T', baseline='simmim', variants={
            'ummae': (_UM + 'ummae_swin-tiny-w8_8xb512-amp-coslr-200e_'
                      'in1k-256px.py', {}),
            'simmim': (_SM_SWIN, {}),
            'simmim-stock': (_SM + 'simmim_stock-swin-tiny-w16_8xb64-accum8-'
                             'amp-coslr-200e_in1k-256px.py', {}),
        }),
    'swin-l': dict(
        title='Swin-L', baseline='simmim', variants={
            'ummae': (_UM + 'ummae_swin-large-w8_8xb512-amp-coslr-800e_'
                      'in1k-256px.py', {}),
            # no Swin-L SimMIM config ships: the Swin-T one, made large
            'simmim': (_SM_SWIN, {'model.backbone.arch': 'large',
                                  'model.neck.in_channels': 1536}),
        }),
    'pvt-s': dict(
        title='PVT-S', baseline='simmim', variants={
            'ummae': (_UM + 'ummae_pvt-small_8xb512-amp-coslr-200e_'
                      'in1k-256px.py', {}),
            'simmim': (_SM + 'simmim_pvt-small_8xb64-accum8-amp-coslr-200e_'
                       'in1k-256px.py', {}),
        }),
    'vit-b': dict(
        title='ViT-B/16', baseline='mae', variants={
            'ummae': (_UM + 'ummae_vit-base-p16_8xb512-amp-coslr-200e_'
                      'in1k-224px.py', {}),
            'mae': (_UM + 'mae_vit-base-p16_8xb512-amp-coslr-200e_'
                    'in1k-224px.py', {}),
        }),
}

VARIANTS = ('ummae', 'simmim', 'simmim-stock', 'mae')
VARIANT_TITLES = {
    'ummae': 'UM-MAE (mmumae)',
    'simmim': 'SimMIM (same backbone)',
    'simmim-stock': 'SimMIM (mmpretrain SimMIMSwinTransformer)',
    'mae': 'MAE random sampling (mmpretrain)',
}
_WHY_MISSING = {
    'simmim-stock': 'mmpretrain has a stock SimMIM backbone for Swin only '
    '(SimMIMSwinTransformer); there is none for PVT or ViT',
    'mae': 'the MAE (random sampling) reference is for ViT only',
    'simmim': "SimMIM on ViT is not part of this comparison; the ViT "
    "reference is 'mae'",
    'ummae': 'no UM-MAE config for this preset',
}


class CfgOptionsAction(DictAction):
    """mmengine's ``--cfg-options KEY=VALUE`` plus Python literals.

    A value that starts with ``{``, ``[`` or ``(`` and is a Python literal
    (``{'embed_dims': 32}``, ``[dict-literals]``) is taken as that literal,
    so dict-valued keys (a backbone ``arch``) can be set from the command
    line; anything else is parsed as mmengine's ``DictAction`` does.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        options = copy.copy(getattr(namespace, self.dest, None) or {})
        for kv in values:
            key, _, val = kv.partition('=')
            literal = None
            if val[:1] in '{[(' and val:
                try:
                    literal = ast.literal_eval(val)
                except (ValueError, SyntaxError):
                    literal = None
            options[key] = (literal if literal is not None else
                            DictAction._parse_iterable(val))
        setattr(namespace, self.dest, options)


def variant_spec(preset: str, variant: str) -> Tuple[Optional[str], dict,
                                                     Optional[str]]:
    """Config path, preset cfg-options and the reason it is skipped."""
    variants = PRESETS[preset]['variants']
    if variant not in variants:
        return None, {}, (f'{PRESETS[preset]["title"]} has no {variant!r} '
                          f'variant: {_WHY_MISSING[variant]}.')
    path, options = variants[variant]
    return path, dict(options), None


def options_for(variant: str, cfg_options: Optional[dict]) -> dict:
    """The ``--cfg-options`` that apply to ``variant``.

    Keys without a prefix apply to every variant; ``VARIANT:KEY`` only to
    that one (e.g. ``ummae:model.neck.depth=1``).
    """
    out = {}
    for key, val in (cfg_options or {}).items():
        name, sep, rest = key.partition(':')
        if not sep:
            out[key] = val
        elif name == variant:
            out[rest] = val
        elif name not in VARIANTS:
            raise ValueError(
                f'--cfg-options {key}: unknown variant prefix {name!r}; use '
                f'one of {", ".join(VARIANTS)} or no prefix.')
    return out


def _set_if_present(node: dict, key: str, value) -> bool:
    if isinstance(node, dict) and key in node:
        node[key] = value
        return True
    return False


def set_input_size(cfg: Config, img: int) -> List[str]:
    """Set the input size wherever the config states one.

    That is the ``input_size`` of the mask generators in the training
    pipeline, ``model.neck.input_size`` and ``model.backbone.img_size``.
    Returns the keys changed.
    """
    changed = []
    for i, t in enumerate(cfg.train_dataloader.dataset.pipeline):
        if _set_if_present(t, 'input_size', img):
            changed.append(f'train_dataloader.dataset.pipeline.{i}.input_size')
    if _set_if_present(cfg.model.get('neck'), 'input_size', img):
        changed.append('model.neck.input_size')
    if _set_if_present(cfg.model.backbone, 'img_size', img):
        changed.append('model.backbone.img_size')
    return changed


def config_input_size(cfg: Config) -> int:
    """Input size of a config: the crop size of its training pipeline."""
    for t in cfg.train_dataloader.dataset.pipeline:
        if t['type'] == 'RandomResizedCrop':
            scale = t['scale']
            return scale if isinstance(scale, int) else scale[0]
    raise ValueError('the config has no RandomResizedCrop in '
                     'train_dataloader.dataset.pipeline; pass --img-size.')


def load_variant(path: str, options: dict,
                 img_size: Optional[int] = None) -> Config:
    """Load a config, merge the cfg-options, then set the input size.

    A dict value replaces the config's value whole (``_delete_``); set
    single keys of a dict with dotted keys instead.
    """
    cfg = Config.fromfile(osp.join(REPO_ROOT, path))
    if options:
        cfg.merge_from_dict({
            k: dict(v, _delete_=True) if isinstance(v, dict) else v
            for k, v in options.items()
        })
    if img_size:
        set_input_size(cfg, img_size)
    return cfg


def missing_classes(cfg: Config) -> List[str]:
    """Registered types a config needs that are not registered."""
    from mmpretrain.registry import MODELS
    parts = [cfg.model] + [cfg.model.get(k) for k in ('backbone', 'neck',
                                                      'head')]
    return [p['type'] for p in parts
            if p is not None and MODELS.get(p['type']) is None]
