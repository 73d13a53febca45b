"""Benchmark one pre-training step: UM-MAE against SimMIM (and MAE on ViT).

What is timed is the whole training step as a real run performs it::

    forward (+ loss) -> backward -> AdamW step -> zero_grad

on random, normalised input images, with fresh masks drawn for every step
(mask drawing and batch creation are data-pipeline work and stay outside the
timed region). The optimizer is the paper's ``torch.optim.AdamW`` (betas
0.9/0.95, weight decay 0.05, none on norms, biases and tokens; ``--adamw``
picks torch's implementation). Each variant first runs ``--warmup`` untimed
steps, then ``--steps`` timed ones; the table reports the median, min and max
step time, images/s = batch / median and the median CPU time per step.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` over the warm-up and
timed steps; on the CPU the peak resident set size (``ru_maxrss``) of a fresh
subprocess that runs only that variant, so variants do not share a peak
(``--no-subprocess`` runs everything in this process; the CPU peak is then
the process's running maximum and is flagged as not isolated).

FLOPs: forward FLOPs per image of the training loss (encoder, decoder and
loss) counted by :class:`torch.utils.flop_counter.FlopCounterMode` on one
batch-1 forward (a multiply-add counts as 2 FLOPs), with a formula added for
the CPU's fused attention kernel, which torch's counter does not know.

Variants, per model:

* ``ummae``: mmumae's ``UMMAE`` (``UMSwinTransformer`` / ``UMPVT`` on the
  compact 25% grid, ``UMMAEPretrainDecoder``, ``MAEPretrainHead`` with
  ``norm_pix``), masks from ``UniformMaskGenerator`` (US + SM 0.25). On ViT-B
  it needs mmumae's ``UMMAEViT`` backbone and is skipped while that class
  does not exist.
* ``simmim``: mmpretrain's ``SimMIM`` algorithm, ``SimMIMLinearDecoder`` and
  ``SimMIMHead`` on the *same* mmumae backbone class (full grid, mask tokens)
  with a 16-px random mask from ``RandomPatchMaskGenerator`` (ratio 0.75).
* ``simmim-stock``: mmpretrain's own ``SimMIMSwinTransformer`` (window 8)
  with a token-level ``SimMIMMaskGenerator`` mask: the reference SimMIM
  (Swin families only).
* ``mae``: mmpretrain's stock ``MAE`` (``MAEViT``, random sampling of 25% of
  the patches), the reference for ViT-B only.

Usage::

    python tools/analysis_tools/benchmark_pretrain.py --model swin-t pvt-s \\
        --batch-size 8 --steps 5 --warmup 2 --out-dir work_dirs/benchmark

Outputs: a table on stdout, ``benchmark.json`` and ``benchmark.png`` (step
time and peak memory per variant) in ``--out-dir``.
"""
import argparse
import contextlib
import datetime
import inspect
import json
import os
import os.path as osp
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

_REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

VARIANTS = ('ummae', 'simmim', 'simmim-stock', 'mae')
PRECISIONS = ('fp32', 'bf16', 'fp16')

# Paper / reference geometry: 16-px mask patches, 75% removed.
MASK_PATCH = 16
MASK_RATIO = 0.75


# --------------------------------------------------------------------------
# Model definitions
# --------------------------------------------------------------------------
def _mae_head(patch_size: int = MASK_PATCH) -> dict:
    return dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=patch_size,
        loss=dict(type='PixelReconstructionLoss', criterion='L2'))


def _simmim_head(patch_size: int) -> dict:
    return dict(
        type='SimMIMHead',
        patch_size=patch_size,
        loss=dict(type='PixelReconstructionLoss', criterion='L1', channel=3))


def _um_decoder(in_channels: int, img: int, embed_dims: int = 512,
                depth: int = 2, num_heads: int = 16, upscale: int = 2) -> dict:
    return dict(
        type='UMMAEPretrainDecoder',
        in_channels=in_channels,
        embed_dims=embed_dims,
        depth=depth,
        num_heads=num_heads,
        upscale=upscale,
        input_size=img,
        patch_size=MASK_PATCH)


def _pyramid_variants(um_backbone: dict, last_dims: int, img: int,
                      dec: dict, stock_backbone: Optional[dict]) -> dict:
    """UM-MAE, SimMIM (same backbone) and optionally stock SimMIM configs."""
    out = {
        'ummae': (dict(
            type='UMMAE',
            backbone=dict(um_backbone),
            neck=_um_decoder(last_dims, img, **dec),
            head=_mae_head()), 'um'),
        'simmim': (dict(
            type='SimMIM',
            backbone=dict(um_backbone),
            neck=dict(
                type='SimMIMLinearDecoder',
                in_channels=last_dims,
                encoder_stride=32),
            head=_simmim_head(MASK_PATCH)), 'random16'),
    }
    if stock_backbone is not None:
        out['simmim-stock'] = (dict(
            type='SimMIM',
            backbone=stock_backbone,
            neck=dict(
                type='SimMIMLinearDecoder',
                in_channels=last_dims,
                encoder_stride=32),
            head=_simmim_head(4)), 'simmim-token')
    return out


def _swin(arch_um, arch_stock, last_dims: int, dec: dict) -> Callable:

    def build(img: int) -> dict:
        um = dict(type='UMSwinTransformer', arch=arch_um, window_size=8)
        # Window 8, shrunk to the map where a stage is smaller (only the
        # tiny test model at 64 px), as the UM backbone does.
        windows = [min(8, img // 4 // 2**i) for i in range(4)]
        if len(set(windows)) == 1:
            stage_cfgs = dict(block_cfgs=dict(window_size=windows[0]))
        else:
            stage_cfgs = [dict(block_cfgs=dict(window_size=w))
                          for w in windows]
        stock = dict(
            type='SimMIMSwinTransformer',
            arch=arch_stock,
            img_size=img,
            stage_cfgs=stage_cfgs)
        return _pyramid_variants(um, last_dims, img, dec, stock)

    return build


def _pvt(arch, last_dims: int, dec: dict) -> Callable:

    def build(img: int) -> dict:
        um = dict(type='UMPVT', arch=arch, sr_ratios=(4, 2, 1, 1))
        return _pyramid_variants(um, last_dims, img, dec, None)

    return build


def _vit_b(img: int) -> dict:
    patches = (img // MASK_PATCH)**2
    return {
        'ummae': (dict(
            type='UMMAE',
            backbone=dict(
                type='UMMAEViT', arch='b', img_size=img,
                patch_size=MASK_PATCH),
            neck=_um_decoder(768, img, depth=8, upscale=1),
            head=_mae_head()), 'um'),
        'mae': (dict(
            type='MAE',
            backbone=dict(
                type='MAEViT', arch='b', img_size=img,
                patch_size=MASK_PATCH, mask_ratio=MASK_RATIO),
            neck=dict(
                type='MAEPretrainDecoder',
                num_patches=patches,
                patch_size=MASK_PATCH,
                in_chans=3,
                embed_dim=768,
                decoder_embed_dim=512,
                decoder_depth=8,
                decoder_num_heads=16,
                mlp_ratio=4.),
            head=_mae_head()), 'none'),
    }


_TINY_SWIN = dict(embed_dims=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
_TINY_PVT = dict(
    embed_dims=[16, 32, 64, 128],
    depths=[1, 1, 1, 1],
    num_heads=[1, 1, 2, 4],
    mlp_ratios=[2, 2, 2, 2])
_TINY_DEC = dict(embed_dims=32, depth=1, num_heads=2)

#: name -> (description, default image size, variant builder, baseline)
MODEL_ZOO: Dict[str, Tuple[str, int, Callable, str]] = {
    'swin-t': ('Swin-T', 256,
               _swin('tiny', 'T', 768, dict(depth=2)), 'simmim'),
    'swin-l': ('Swin-L', 256,
               _swin('large', 'L', 1536, dict(depth=8)), 'simmim'),
    'pvt-s': ('PVT-S', 256, _pvt('small', 512, dict(depth=2)), 'simmim'),
    'vit-b': ('ViT-B/16', 224, _vit_b, 'mae'),
    # Tiny models for the smoke test (seconds per step on a CPU).
    'swin-tiny-test': ('tiny Swin (test)', 64,
                       _swin(_TINY_SWIN, _TINY_SWIN, 256, _TINY_DEC),
                       'simmim'),
    'pvt-tiny-test': ('tiny PVT (test)', 64,
                      _pvt(_TINY_PVT, 128, _TINY_DEC), 'simmim'),
}

VARIANT_TITLES = {
    'ummae': 'UM-MAE (mmumae)',
    'simmim': 'SimMIM (same backbone)',
    'simmim-stock': 'SimMIM (mmpretrain Swin)',
    'mae': 'MAE random (mmpretrain)',
}


# --------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> Optional[float]:
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemTotal:'):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                             cwd=_REPO_ROOT,
                             capture_output=True,
                             text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: str) -> dict:
    """CPU model, cores, memory, library versions, device name, load."""
    import mmengine
    import mmpretrain
    import torch
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = dict(
        cpu_model=_cpu_model(),
        cpu_cores=os.cpu_count(),
        cpu_cores_usable=usable,
        mem_total_gib=_mem_total_gib(),
        python=platform.python_version(),
        torch=torch.__version__,
        mmpretrain=mmpretrain.__version__,
        mmengine=mmengine.__version__,
        torch_threads=torch.get_num_threads(),
        git_commit=_git_commit(),
        loadavg_start=_loadavg(),
    )
    if device == 'cuda' and torch.cuda.is_available():
        info['device_name'] = torch.cuda.get_device_name(0)
        info['cuda'] = torch.version.cuda
    else:
        info['device_name'] = f'CPU: {info["cpu_model"]}'
    return info


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------
# One variant (runs in the worker process, or in-process)
# --------------------------------------------------------------------------
def _rss_bytes() -> Optional[int]:
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError):
        return None


def _peak_rss_bytes() -> int:
    """Peak RSS of this process (``ru_maxrss`` is KiB on Linux, B on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024


def _import_mmumae() -> None:
    try:
        import mmumae  # noqa: F401
    except ImportError:  # a checkout that is not pip-installed
        sys.path.insert(0, _REPO_ROOT)
        import mmumae  # noqa: F401


def variant_config(model: str, variant: str,
                   img: int) -> Tuple[Optional[dict], str, Optional[str]]:
    """Config and mask kind of a variant, or the reason it is skipped."""
    _import_mmumae()
    from mmpretrain.registry import MODELS
    title, _, build, _ = MODEL_ZOO[model]
    variants = build(img)
    if variant not in variants:
        if variant == 'simmim-stock':
            why = ('mmpretrain has a stock SimMIM backbone for Swin only '
                   '(SimMIMSwinTransformer)')
        elif variant == 'mae':
            why = 'the MAE (random sampling) reference is defined for ViT only'
        else:
            why = ('SimMIM on ViT is not part of this comparison; the '
                   "ViT reference is 'mae'")
        return None, '', f'{title} has no {variant!r} variant: {why}.'
    cfg, mask_kind = variants[variant]
    missing = [
        c['type'] for c in (cfg, cfg['backbone'], cfg['neck'], cfg['head'])
        if MODELS.get(c['type']) is None
    ]
    if missing:
        return None, mask_kind, (
            f'{", ".join(missing)} is not registered (mmumae does not provide '
            f'it yet); {title} {variant} skipped.')
    return cfg, mask_kind, None


class _MaskSampler:
    """Fresh masks for a batch, packed into DataSamples as PackInputs would."""

    def __init__(self, kind: str, img: int) -> None:
        from mmpretrain.registry import TRANSFORMS
        self.kind = kind
        if kind == 'um':
            self.gen = TRANSFORMS.build(
                dict(type='UniformMaskGenerator', input_size=img,
                     mask_patch_size=MASK_PATCH, mask_ratio=MASK_RATIO,
                     sm_ratio=0.25))
        elif kind == 'random16':
            self.gen = TRANSFORMS.build(
                dict(type='RandomPatchMaskGenerator', input_size=img,
                     mask_patch_size=MASK_PATCH, mask_ratio=MASK_RATIO))
        elif kind == 'simmim-token':
            self.gen = TRANSFORMS.build(
                dict(type='SimMIMMaskGenerator', input_size=img,
                     mask_patch_size=MASK_PATCH, model_patch_size=4,
                     mask_ratio=MASK_RATIO))
        else:
            self.gen = None

    def __call__(self, batch: int, device) -> list:
        import torch
        from mmpretrain.structures import DataSample
        samples = []
        for _ in range(batch):
            ds = DataSample()
            if self.kind == 'um':
                mask, sm_mask = self.gen.generate()
                ds.set_field(torch.from_numpy(mask).to(device), 'mask')
                ds.set_field(torch.from_numpy(sm_mask).to(device), 'sm_mask')
            elif self.kind == 'random16':
                ds.set_field(
                    torch.from_numpy(self.gen.generate()).to(device), 'mask')
            elif self.kind == 'simmim-token':
                mask = self.gen.transform({})['mask']
                ds.set_field(torch.from_numpy(mask).to(device), 'mask')
            samples.append(ds)
        return samples


def _param_groups(model, weight_decay: float) -> list:
    """No weight decay on norms, biases and tokens (paper recipe)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or 'token' in name or 'pos_embed' in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        dict(params=decay, weight_decay=weight_decay),
        dict(params=no_decay, weight_decay=0.)
    ]


def _set_with_cp(cfg: dict) -> Optional[str]:
    """Turn on gradient checkpointing in the backbone if it supports it."""
    from mmpretrain.registry import MODELS
    bb = cfg['backbone']
    cls = MODELS.get(bb['type'])
    if 'with_cp' in inspect.signature(cls.__init__).parameters:
        bb['with_cp'] = True
        return None
    return (f'{bb["type"]} has no with_cp argument; running it without '
            f'gradient checkpointing.')


def _attention_flop(query_shape, key_shape, value_shape, *args,
                    out_shape=None, **kwargs) -> int:
    """``q @ k^T`` and ``attn @ v`` of a fused attention kernel (2/MAC)."""
    *batch, q_len, dims = query_shape
    k_len, v_dims = key_shape[-2], value_shape[-1]
    n = 1
    for d in batch:
        n *= d
    return 2 * n * q_len * k_len * (dims + v_dims)


def _extra_flop_formulas() -> dict:
    """FLOP formulas torch's counter lacks.

    torch (2.14) counts the CUDA fused attention kernels but not the CPU one
    (``_scaled_dot_product_flash_attention_for_cpu``), which
    ``F.scaled_dot_product_attention`` uses on the CPU whenever it can (e.g.
    mmpretrain's ``MultiheadAttention`` in every decoder and ViT block): the
    attention matmuls would silently count as 0 FLOPs on the CPU and not on
    a GPU.
    """
    import torch
    ops = []
    for name in ('_scaled_dot_product_flash_attention_for_cpu', ):
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            ops.append(op)
    return {op: _attention_flop for op in ops}


def count_forward_flops(model, sampler: _MaskSampler, img: int,
                        device) -> Tuple[int, Dict[str, int]]:
    """Forward FLOPs of the training loss for one image, total and per
    top-level module (backbone, decoder, head)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(1, 3, img, img, device=device)
    samples = sampler(1, device)
    counter = FlopCounterMode(
        display=False, custom_mapping=_extra_flop_formulas())
    with torch.no_grad(), counter:
        model.loss(x, samples)
    parts = {
        name: int(sum(ops.values()))
        for name, ops in counter.get_flop_counts().items()
        if name != 'Global' and '.' not in name
    }
    return int(counter.get_total_flops()), parts


def profile_step(run_step: Callable, device, path: str,
                 row_limit: int = 30) -> dict:
    """Run one more training step under :mod:`torch.profiler`.

    Writes the operator table (sorted by self CPU time, or self device time
    on CUDA) to ``path`` and returns the top operators.
    """
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=False) as prof:
        step_s, _ = run_step()
    events = prof.key_averages()
    sort_by = ('self_device_time_total'
               if device.type == 'cuda' else 'self_cpu_time_total')
    table = events.table(sort_by=sort_by, row_limit=row_limit)
    with open(path, 'w') as f:
        f.write(table)
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(
        events, key=lambda e: e.self_cpu_time_total, reverse=True)[:row_limit]
    return dict(
        step_s=step_s,
        table_file=path,
        total_self_cpu_ms=total / 1e3,
        top=[
            dict(
                name=e.key,
                calls=e.count,
                self_cpu_ms=e.self_cpu_time_total / 1e3,
                self_cpu_pct=100 * e.self_cpu_time_total / max(total, 1),
                cpu_total_ms=e.cpu_time_total / 1e3) for e in top
        ])


def run_variant(spec: dict) -> dict:
    """Build one variant and time it; returns a result dict.

    ``spec`` holds model, variant, img_size, batch_size, device, precision,
    warmup, steps, with_cp, compile, adamw, threads, seed, isolated and
    profile_dir.
    """
    _import_mmumae()
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # silence per-module init messages
    try:
        return _run_variant(spec)
    finally:
        logger.setLevel(level)


def _run_variant(spec: dict) -> dict:
    import numpy as np
    import torch
    from mmpretrain.registry import MODELS

    # RSS of the interpreter with torch and OpenMMLab imported, before any
    # model exists (about 1 GiB with the CUDA build of torch): part of
    # every CPU peak, so ratios of peak RSS understate the model's savings.
    rss_baseline = _rss_bytes()

    model_name, variant = spec['model'], spec['variant']
    img, batch = spec['img_size'], spec['batch_size']
    result = dict(
        model=model_name,
        variant=variant,
        title=VARIANT_TITLES[variant],
        img_size=img,
        batch_size=batch,
        device=spec['device'],
        precision=spec['precision'],
        warmup=spec['warmup'],
        steps=spec['steps'],
        notes=[])
    cfg, mask_kind, skip = variant_config(model_name, variant, img)
    if skip:
        result.update(status='skipped', reason=skip)
        return result
    result['config'] = cfg

    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    result['threads'] = torch.get_num_threads()
    torch.manual_seed(spec.get('seed', 0))
    np.random.seed(spec.get('seed', 0))
    device = torch.device(spec['device'])
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True

    with_cp = False
    if spec.get('with_cp'):
        note = _set_with_cp(cfg)
        with_cp = note is None
        if note:
            result['notes'].append(note)
    result['with_cp'] = with_cp

    model = MODELS.build(cfg)
    model.init_weights()
    model.to(device).train()
    result['params'] = sum(p.numel() for p in model.parameters()
                           if p.requires_grad)

    impl = spec.get('adamw', 'default')
    impl_kw = dict(foreach=dict(foreach=True), fused=dict(fused=True)).get(
        impl, {})
    optimizer = torch.optim.AdamW(
        _param_groups(model, 0.05), lr=1.5e-4 * batch / 256,
        betas=(0.9, 0.95), **impl_kw)
    result['adamw'] = impl
    sampler = _MaskSampler(mask_kind, img)

    precision = spec['precision']
    amp_dtype = dict(bf16=torch.bfloat16, fp16=torch.float16).get(precision)
    scaler = None
    if precision == 'fp16':
        scaler = torch.amp.GradScaler(device.type)

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    loss_fn = model.loss
    compiled = False
    if spec.get('compile'):
        try:
            loss_fn = torch.compile(model.loss)
            compiled = True
        except Exception as e:  # noqa: BLE001
            result['notes'].append(f'torch.compile failed ({e!r}); eager.')

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    def step(fn):
        inputs = torch.randn(batch, 3, img, img, device=device)
        samples = sampler(batch, device)
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        with autocast():
            losses = fn(inputs, samples)
        loss = sum(v for k, v in losses.items() if k.startswith('loss'))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        cpu_times.append(time.process_time() - c0)
        return time.perf_counter() - t0, float(loss.detach())

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    result['rss_baseline_bytes'] = rss_baseline
    result['rss_after_build_bytes'] = _rss_bytes()

    label = f'{model_name}/{variant}'
    times, loss_val = [], float('nan')
    cpu_times: List[float] = []  # CPU time of all threads, per step
    total = spec['warmup'] + spec['steps']
    for i in range(total):
        try:
            dt, loss_val = step(loss_fn)
        except Exception as e:  # noqa: BLE001
            if not compiled:
                raise
            first = str(e).splitlines()[0] if str(e) else ''
            msg = (f'torch.compile failed ({type(e).__name__}: {first}); '
                   f'falling back to eager mode.')
            print(f'  {label}: {msg}', flush=True)
            result['notes'].append(msg)
            loss_fn, compiled = model.loss, False
            dt, loss_val = step(loss_fn)
        kind = 'warm-up' if i < spec['warmup'] else 'timed'
        print(f'  {label} step {i + 1}/{total} ({kind}): {dt:.3f} s, '
              f'loss {loss_val:.4f}', flush=True)
        if i >= spec['warmup']:
            times.append(dt)
    result['compiled'] = compiled
    timed_cpu = cpu_times[-len(times):]

    if device.type == 'cuda':
        result['peak_mem_bytes'] = int(torch.cuda.max_memory_allocated(device))
        result['peak_mem_kind'] = 'torch.cuda.max_memory_allocated'
    else:
        result['peak_mem_bytes'] = _peak_rss_bytes()
        if spec.get('isolated') and rss_baseline:
            result['peak_mem_above_baseline_bytes'] = (
                result['peak_mem_bytes'] - rss_baseline)
        result['peak_mem_kind'] = (
            'peak RSS of a fresh process' if spec.get('isolated') else
            'peak RSS of this process so far (not isolated: --no-subprocess)')

    # FLOPs after timing: batch 1 needs far less memory than the timed steps.
    try:
        result['flops_per_image'], result['flops_by_module'] = \
            count_forward_flops(model, sampler, img, device)
    except Exception as e:  # noqa: BLE001
        result['flops_per_image'] = None
        result['notes'].append(f'FLOP count failed: {e!r}')

    if spec.get('profile_dir'):  # after timing and memory: it adds overhead
        os.makedirs(spec['profile_dir'], exist_ok=True)
        path = osp.join(spec['profile_dir'],
                        f'profile_{model_name}_{variant}.txt')
        result['profile'] = profile_step(lambda: step(loss_fn), device, path)
        print(f'  {label}: profiled one step '
              f'({result["profile"]["step_s"]:.3f} s under the profiler), '
              f'operator table in {path}', flush=True)

    med = statistics.median(times)
    result.update(
        status='ok',
        step_times_s=[round(t, 5) for t in times],
        step_cpu_times_s=[round(t, 5) for t in timed_cpu],
        median_cpu_s=statistics.median(timed_cpu),
        median_s=med,
        min_s=min(times),
        max_s=max(times),
        mean_s=statistics.fmean(times),
        images_per_s=batch / med,
        loss_last=loss_val)
    return result


# --------------------------------------------------------------------------
# Orchestration, report
# --------------------------------------------------------------------------
def _run_in_subprocess(spec: dict, tmpdir: str) -> dict:
    name = f'{spec["model"]}_{spec["variant"]}'
    spec_file = osp.join(tmpdir, f'{name}_spec.json')
    out_file = osp.join(tmpdir, f'{name}_result.json')
    with open(spec_file, 'w') as f:
        json.dump(dict(spec, isolated=True), f)
    cmd = [
        sys.executable,
        osp.abspath(__file__), '--worker', spec_file, '--result-file',
        out_file
    ]
    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not osp.exists(out_file):
        tail = '\n'.join(proc.stderr.strip().splitlines()[-15:])
        print(tail, file=sys.stderr, flush=True)
        last = tail.splitlines()[-1] if tail else f'exit {proc.returncode}'
        return dict(
            model=spec['model'],
            variant=spec['variant'],
            title=VARIANT_TITLES[spec['variant']],
            status='failed',
            reason=f'worker exited with {proc.returncode}: {last}')
    with open(out_file) as f:
        return json.load(f)


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or not b:
        return None
    return a / b


def compute_ratios(results: List[dict]) -> Dict[str, dict]:
    """UM-MAE / baseline (and our SimMIM / stock SimMIM) per model."""
    by = {(r['model'], r['variant']): r for r in results
          if r.get('status') == 'ok'}
    out = {}
    for model in dict.fromkeys(r['model'] for r in results):
        baseline = MODEL_ZOO[model][3]
        pairs = [('ummae', baseline), ('ummae', 'simmim-stock'),
                 ('simmim', 'simmim-stock')]
        for num, den in pairs:
            a, b = by.get((model, num)), by.get((model, den))
            if a is None or b is None or num == den:
                continue
            out[f'{model}: {num}/{den}'] = dict(
                model=model,
                numerator=num,
                denominator=den,
                time=_ratio(a['median_s'], b['median_s']),
                cpu_time=_ratio(a.get('median_cpu_s'), b.get('median_cpu_s')),
                memory=_ratio(a['peak_mem_bytes'], b['peak_mem_bytes']),
                memory_above_baseline=_ratio(
                    a.get('peak_mem_above_baseline_bytes'),
                    b.get('peak_mem_above_baseline_bytes')),
                flops=_ratio(a['flops_per_image'], b['flops_per_image']))
    return out


def _giga(v: Optional[float]) -> Optional[float]:
    return None if v is None else v / 1e9


def _fmt(v, spec: str, none: str = '-') -> str:
    if v is None:
        width = ''.join(c for c in spec.split('.')[0] if c.isdigit())
        return format(none, '>' + width)
    return format(v, spec)


def format_table(results: List[dict], ratios: Dict[str, dict],
                 device: str) -> str:
    mem_head = 'peak mem GiB' if device == 'cuda' else 'peak RSS GiB'
    head = (f'{"model":<15} {"variant":<13} {"img":>4} {"bs":>3} '
            f'{"median s":>9} {"min s":>7} {"max s":>7} {"img/s":>7} '
            f'{"CPU s":>7} '
            f'{mem_head:>13} {"above base":>10} {"GFLOPs/img":>10} '
            f'{"params M":>8}')
    lines = [head, '-' * len(head)]
    for r in results:
        if r.get('status') != 'ok':
            lines.append(f'{r["model"]:<15} {r["variant"]:<13} '
                         f'{r.get("status", "?").upper()}: {r.get("reason")}')
            continue
        above = r.get('peak_mem_above_baseline_bytes')
        lines.append(
            f'{r["model"]:<15} {r["variant"]:<13} {r["img_size"]:>4} '
            f'{r["batch_size"]:>3} {r["median_s"]:>9.3f} {r["min_s"]:>7.3f} '
            f'{r["max_s"]:>7.3f} {r["images_per_s"]:>7.2f} '
            f'{r["median_cpu_s"]:>7.2f} '
            f'{r["peak_mem_bytes"] / 2**30:>13.2f} '
            f'{_fmt(above and above / 2**30, ">10.2f")} '
            f'{_fmt(_giga(r.get("flops_per_image")), ">10.3g")} '
            f'{r["params"] / 1e6:>8.1f}')
    if ratios:
        lines += [
            '', f'{"ratio":<36} {"time":>6} {"CPU time":>8} {"memory":>7} '
            f'{"mem above base":>14} {"FLOPs":>6}'
        ]
        for key, v in ratios.items():
            lines.append(f'{key:<36} {_fmt(v["time"], ">6.2f")} '
                         f'{_fmt(v.get("cpu_time"), ">8.2f")} '
                         f'{_fmt(v["memory"], ">7.2f")} '
                         f'{_fmt(v.get("memory_above_baseline"), ">14.2f")} '
                         f'{_fmt(v["flops"], ">6.2f")}')
    notes = [(r, n) for r in results for n in r.get('notes', [])]
    if notes:
        lines.append('')
        lines += [f'note ({r["model"]}/{r["variant"]}): {n}' for r, n in notes]
    for r in results:
        prof = r.get('profile')
        if not prof:
            continue
        lines += [
            '', f'profile {r["model"]}/{r["variant"]}: one step '
            f'{prof["step_s"]:.3f} s under the profiler, top operators by '
            f'self CPU time (full table: {prof["table_file"]})',
            f'  {"operator":<44} {"calls":>6} {"self CPU ms":>11} {"%":>6}'
        ]
        for e in prof['top'][:15]:
            lines.append(f'  {e["name"][:44]:<44} {e["calls"]:>6} '
                         f'{e["self_cpu_ms"]:>11.1f} '
                         f'{e["self_cpu_pct"]:>6.1f}')
    if any(r.get('peak_mem_above_baseline_bytes') for r in results):
        lines += [
            '', '"above base": peak RSS minus the RSS of the worker after its '
            'imports, before the model was built.'
        ]
    lines += [
        '"CPU s": median CPU time of the process (all threads) per timed '
        'step; less sensitive to other load than wall time.'
    ]
    return '\n'.join(lines)


def plot(results: List[dict], path: str, device: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.get('status') == 'ok']
    labels = [f'{r["model"]}\n{r["variant"]}' for r in ok]
    colors = {
        'ummae': 'tab:green',
        'simmim': 'tab:blue',
        'simmim-stock': 'tab:gray',
        'mae': 'tab:orange'
    }
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(ok) + 4), 4.5))
    xs = range(len(ok))
    med = [r['median_s'] for r in ok]
    err = [[r['median_s'] - r['min_s'] for r in ok],
           [r['max_s'] - r['median_s'] for r in ok]]
    col = [colors.get(r['variant'], 'tab:purple') for r in ok]
    axes[0].bar(xs, med, yerr=err, color=col, capsize=4)
    axes[0].set_ylabel('training step time, s (median, min-max)')
    mem = [r['peak_mem_bytes'] / 2**30 for r in ok]
    axes[1].bar(xs, mem, color=col)
    axes[1].set_ylabel('peak GPU memory allocated, GiB' if device == 'cuda'
                       else 'peak RSS, GiB')
    tops = ([r['max_s'] for r in ok], mem)  # labels above the error bars
    for ax, vals, top in zip(axes, (med, mem), tops):
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=8)
        for x, v, t in zip(xs, vals, top):
            ax.annotate(f'{v:.2f}', (x, t), ha='center', va='bottom',
                        fontsize=8, xytext=(0, 2), textcoords='offset points')
    if ok:
        r = ok[0]
        fig.suptitle(f'pre-training step, {r["device"]} {r["precision"]}, '
                     f'batch {r["batch_size"]}', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time a full UM-MAE / SimMIM / MAE pre-training step '
        '(forward, backward, AdamW step, zero_grad) and report step time, '
        'peak memory, forward FLOPs and UM-MAE/baseline ratios.')
    parser.add_argument(
        '--model', nargs='+', default=['swin-t'], choices=list(MODEL_ZOO),
        metavar='MODEL',
        help='one or more of swin-t, swin-l, pvt-s, vit-b (swin-tiny-test '
        'and pvt-tiny-test are tiny models for the smoke test). '
        'Default: swin-t')
    parser.add_argument(
        '--img-size', type=int, default=None,
        help='input size (default: 256; 224 for vit-b; 64 for the test '
        'models)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='fp16/bf16 run the forward under torch.autocast; '
                        'fp16 scales the loss with a GradScaler')
    parser.add_argument('--steps', type=int, default=5,
                        help='timed steps (default 5)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed warm-up steps (default 2)')
    parser.add_argument(
        '--variants', nargs='+', choices=VARIANTS, default=None,
        help='subset of ummae, simmim, simmim-stock, mae (default: all that '
        'a model defines: ummae, simmim, simmim-stock for Swin; ummae, '
        'simmim for PVT; ummae, mae for ViT-B)')
    parser.add_argument('--with-cp', action='store_true',
                        help='gradient checkpointing (backbone with_cp=True)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the loss (falls back to eager '
                        'with a message if compilation fails)')
    parser.add_argument(
        '--adamw', choices=['default', 'foreach', 'fused'], default='fused',
        help="torch.optim.AdamW implementation: 'fused' (single kernel) is "
        "what mmumae's schedules use (fused=True); 'default' is torch's "
        'default (per-parameter loop on the CPU, foreach on CUDA)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (default: torch default)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--profile', action='store_true',
        help='after timing, profile one more step of each variant with '
        'torch.profiler and write the operator table (by self CPU time) to '
        'OUT_DIR/profile_MODEL_VARIANT.txt')
    parser.add_argument('--out-dir', default='work_dirs/benchmark_pretrain',
                        help='where benchmark.json and benchmark.png go')
    parser.add_argument(
        '--no-subprocess', action='store_true',
        help='run all variants in this process (faster; the CPU peak RSS '
        'is then not per variant)')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--result-file', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error('--steps must be at least 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    if args.batch_size < 1:
        parser.error('--batch-size must be at least 1')
    return args


def _default_variants(model: str) -> List[str]:
    baseline = MODEL_ZOO[model][3]
    out = ['ummae', baseline]
    if model.startswith('swin'):
        out.append('simmim-stock')
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:  # one variant, in a fresh process
        with open(args.worker) as f:
            spec = json.load(f)
        result = run_variant(spec)
        with open(args.result_file, 'w') as f:
            json.dump(result, f)
        return result

    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available.')
    if args.threads:
        torch.set_num_threads(args.threads)
    command = shlex.join(['python'] + sys.argv) if argv is None else \
        shlex.join(['python', osp.relpath(__file__)] + list(argv))
    machine = machine_info(args.device)
    print(f'command: {command}')
    print('machine: ' + ', '.join(f'{k}={v}' for k, v in machine.items()),
          flush=True)

    specs = []
    for model in args.model:
        img = args.img_size or MODEL_ZOO[model][1]
        for variant in (args.variants or _default_variants(model)):
            specs.append(
                dict(model=model, variant=variant, img_size=img,
                     batch_size=args.batch_size, device=args.device,
                     precision=args.precision, warmup=args.warmup,
                     steps=args.steps, with_cp=args.with_cp,
                     compile=args.compile, threads=args.threads,
                     adamw=args.adamw,
                     seed=args.seed, isolated=False,
                     profile_dir=args.out_dir if args.profile else None))

    results = []
    with tempfile.TemporaryDirectory(prefix='bench_pretrain_') as tmp:
        for i, spec in enumerate(specs):
            label = f'{spec["model"]}/{spec["variant"]}'
            _, _, skip = variant_config(spec['model'], spec['variant'],
                                        spec['img_size'])
            if skip:
                print(f'[{i + 1}/{len(specs)}] {label}: SKIPPED: {skip}',
                      flush=True)
                results.append(
                    dict(model=spec['model'], variant=spec['variant'],
                         title=VARIANT_TITLES[spec['variant']],
                         status='skipped', reason=skip))
                continue
            print(f'[{i + 1}/{len(specs)}] {label} ...', flush=True)
            if args.no_subprocess:
                res = run_variant(spec)
            else:
                res = _run_in_subprocess(spec, tmp)
            results.append(res)

    machine['loadavg_end'] = _loadavg()
    ratios = compute_ratios(results)
    table = format_table(results, ratios, args.device)
    print()
    print(table)
    print()
    print(f'command: {command}')
    print('machine: ' + ', '.join(f'{k}={v}' for k, v in machine.items()))

    os.makedirs(args.out_dir, exist_ok=True)
    report = dict(
        command=command,
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        machine=machine,
        args={k: v for k, v in vars(args).items()
              if k not in ('worker', 'result_file')},
        results=results,
        ratios=ratios,
        table=table)
    json_path = osp.join(args.out_dir, 'benchmark.json')
    with open(json_path, 'w') as f:
        json.dump(report, f, indent=2)
    png_path = osp.join(args.out_dir, 'benchmark.png')
    plot(results, png_path, args.device)
    print(f'wrote {json_path} and {png_path}')
    return report


if __name__ == '__main__':
    main()
