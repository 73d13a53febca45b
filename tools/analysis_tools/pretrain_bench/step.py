"""Model, optimizer wrapper and batches from a config; the timed step.

The step is what mmengine's ``BaseModel.train_step`` does after the data
preprocessor: forward and loss under the optimizer wrapper's context,
``parse_losses``, ``OptimWrapper.update_params`` (backward, optimizer step,
zero_grad). Images are random; the masks come from the config's own
pipeline (its mask generator and ``PackInputs``), the batch from its
``collate_fn`` and data preprocessor, all made once, outside the clock, and
reused by every step.
"""
import contextlib
import copy
import statistics
import time
from typing import Callable, ContextManager, Dict, List, Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper, build_optim_wrapper

#: ``--amp`` choices: ``none`` is fp32
AMP = ('none', 'bf16', 'fp16')
_DTYPES = {'bf16': 'bfloat16', 'fp16': 'float16'}
#: parts of an mmpretrain self-supervised algorithm that ``--compile``
#: compiles (``head.loss``: the algorithms call the head's loss method)
COMPILED_PARTS = ('backbone', 'neck', 'head.loss')


def check_amp(amp: str, device: str) -> None:
    """Refuse what mmengine cannot run: fp16 autocast on a CPU."""
    if amp not in AMP:
        raise ValueError(f'--amp {amp!r}: use one of {", ".join(AMP)}.')
    if amp == 'fp16' and device != 'cuda':
        raise ValueError(
            '--amp fp16 needs --device cuda: mmengine runs fp16 only through '
            'AmpOptimWrapper, which needs a GPU, and its CPU autocast '
            'supports bfloat16 only; use --amp bf16 or --amp none on a CPU.')


def optim_wrapper_cfg(cfg: Config, amp: str, device: str) -> dict:
    """The config's optimizer wrapper, set to the benchmark's precision.

    The optimizer and its ``paramwise_cfg`` (weight-decay exemptions) stay
    as configured; ``accumulative_counts`` becomes 1, so every timed step
    updates the weights. ``none`` (fp32) and bf16 on a CPU use a plain
    ``OptimWrapper`` (bf16 on a CPU autocasts the forward through
    :func:`autocast_context`: bf16 has fp32's range and needs no loss
    scaling); bf16/fp16 on CUDA an ``AmpOptimWrapper`` of that dtype with a
    dynamic loss scale, as the configs train.
    """
    check_amp(amp, device)
    wrapper = copy.deepcopy(cfg.optim_wrapper.to_dict())
    wrapper.pop('accumulative_counts', None)
    if amp == 'none' or device != 'cuda':
        wrapper['type'] = 'OptimWrapper'
        wrapper.pop('loss_scale', None)
        wrapper.pop('dtype', None)
    else:
        wrapper['type'] = 'AmpOptimWrapper'
        wrapper['dtype'] = _DTYPES[amp]
        wrapper.setdefault('loss_scale', 'dynamic')
    return wrapper


def autocast_context(amp: str, device: str) -> Callable[[], ContextManager]:
    """Extra autocast around the forward: bf16 on a CPU only.

    On CUDA the ``AmpOptimWrapper``'s ``optim_context`` autocasts; on a CPU
    mmengine's :func:`mmengine.runner.autocast` does, in bfloat16.
    """
    if amp == 'bf16' and device == 'cpu':
        from mmengine.runner import autocast
        return lambda: autocast(device_type='cpu', dtype=torch.bfloat16)
    return contextlib.nullcontext


def build(cfg: Config, amp: str, device: torch.device
          ) -> Tuple[torch.nn.Module, OptimWrapper, dict]:
    """Model (initialised, on ``device``, train mode), its wrapper and the
    wrapper's config (to build a fresh one later)."""
    from mmpretrain.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
    wrapper_cfg = optim_wrapper_cfg(cfg, amp, device.type)
    wrapper = build_optim_wrapper(model, copy.deepcopy(wrapper_cfg))
    return model, wrapper, wrapper_cfg


def _leaf_blocks(part: torch.nn.Module, prefix: str) -> List[tuple]:
    """(name, module) of the elements of every innermost ``ModuleList``
    (the repeated transformer blocks), in ``part``."""
    out = []
    for name, m in part.named_modules(prefix=prefix):
        if not isinstance(m, torch.nn.ModuleList):
            continue
        inner = any(isinstance(c, torch.nn.ModuleList)
                    for c in m.modules() if c is not m)
        if not inner:
            out += [(f'{name}.{i}', c) for i, c in enumerate(m)]
    return out


def compile_parts(model: torch.nn.Module, backend: str = 'inductor',
                  mode: Optional[str] = None, fullgraph: bool = False,
                  scope: str = 'parts') -> List[str]:
    """``torch.compile`` the backbone, the neck and the head's loss.

    ``scope='parts'``: each part becomes its own graph, forward and
    (AOTAutograd) backward. ``scope='blocks'`` (regional compilation): the
    repeated blocks of the backbone and the neck (the elements of their
    innermost ``ModuleList``s) are compiled one by one instead, so that
    identical blocks share compiled code and compilation takes a fraction
    of the time; what lies between them stays eager. The algorithm's glue
    (stacking the masks of the data samples, the kept-patch ids) stays
    eager in both, so no graph depends on the number of data samples.
    Returns the names of what was compiled.
    """
    if scope not in ('parts', 'blocks'):
        raise ValueError(f'--compile-scope {scope!r}: use parts or blocks.')
    torch.compiler.reset()
    kwargs = dict(backend=backend, mode=mode, fullgraph=fullgraph)
    done = []
    for name in ('backbone', 'neck'):
        part = getattr(model, name, None)
        if not isinstance(part, torch.nn.Module):
            continue
        blocks = _leaf_blocks(part, name) if scope == 'blocks' else []
        for block_name, block in blocks or [(name, part)]:
            block.compile(**kwargs)
            done.append(block_name)
    head = getattr(model, 'head', None)
    if head is not None and hasattr(head, 'loss'):
        head.loss = torch.compile(head.loss, **kwargs)
        done.append('head.loss')
    return done


def dynamo_counts(since: Optional[dict] = None) -> Dict[str, object]:
    """Graph breaks (reason -> count) and graphs compiled by dynamo.

    The process's totals, or those since an earlier return value ``since``
    (the counters are process-wide). A reason is its first line.
    """
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - torch without dynamo
        return {}
    breaks: Dict[str, int] = {}
    for k, v in counters['graph_break'].items():
        key = (str(k).strip().splitlines() or [''])[0][:200]
        breaks[key] = breaks.get(key, 0) + int(v)
    graphs = int(counters['stats'].get('unique_graphs', 0))
    if since:
        old = since.get('graph_break_reasons', {})
        breaks = {k: v - old.get(k, 0) for k, v in breaks.items()
                  if v - old.get(k, 0) > 0}
        graphs -= since.get('unique_graphs', 0)
    return dict(graph_breaks=sum(breaks.values()),
                graph_break_reasons=breaks, unique_graphs=graphs)


class BatchMaker:
    """Batches of random images through the tail of the config's pipeline.

    The tail starts at the first mask generator (a transform whose type
    ends with ``MaskGenerator``), or is the last transform (``PackInputs``)
    when the model draws its own mask (MAE); the loading, cropping and
    flipping before it are replaced by a random ``img x img`` image.

    Args:
        cfg (Config): The variant's config.
        img (int): Image size.
        seed (int): Seed of the images. Defaults to 0.
        pool (int): At most this many distinct samples (image and masks);
            a larger batch repeats them, which a step's cost does not see
            and which keeps building a batch of thousands cheap. Defaults
            to 64.
    """

    def __init__(self, cfg: Config, img: int, seed: int = 0,
                 pool: int = 64) -> None:
        from mmengine.registry import FUNCTIONS
        from mmpretrain.registry import TRANSFORMS
        pipeline = cfg.train_dataloader.dataset.pipeline
        starts = [i for i, t in enumerate(pipeline)
                  if t['type'].endswith('MaskGenerator')]
        tail = pipeline[starts[0]:] if starts else pipeline[-1:]
        self.transforms = [TRANSFORMS.build(copy.deepcopy(t)) for t in tail]
        self.mask_kind = tail[0]['type'] if starts else 'inside the model'
        collate = cfg.train_dataloader.get('collate_fn',
                                           dict(type='default_collate'))
        self.collate = FUNCTIONS.get(collate['type'])
        self.img = img
        self.rng = np.random.default_rng(seed)
        self.pool = max(1, pool)
        self._items: List[dict] = []

    def _sample(self) -> dict:
        img = self.rng.integers(0, 256, (self.img, self.img, 3),
                                dtype=np.uint8)
        results = dict(img=img, img_shape=img.shape[:2],
                       ori_shape=img.shape[:2])
        for t in self.transforms:
            results = t(results)
        return results

    def __call__(self, batch: int) -> dict:
        while len(self._items) < min(batch, self.pool):
            self._items.append(self._sample())
        items = self._items
        return self.collate([items[i % len(items)] for i in range(batch)])


def prepare(model, batches: BatchMaker, batch: int) -> dict:
    """One batch through the model's data preprocessor (on its device)."""
    return model.data_preprocessor(batches(batch), True)


def make_step(model, wrapper: OptimWrapper, data: dict, device: torch.device,
              autocast: Callable[[], ContextManager] = contextlib.nullcontext
              ) -> Callable[[], Tuple[float, float, float]]:
    """A function running one timed step on ``data``: (wall s, CPU s,
    loss)."""

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    def step() -> Tuple[float, float, float]:
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        with wrapper.optim_context(model), autocast():
            losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        wrapper.update_params(loss)
        sync()
        return (time.perf_counter() - t0, time.process_time() - c0,
                float(loss.detach()))

    return step


def time_steps(step: Callable, warmup: int, steps: int,
               label: str) -> dict:
    """Run ``warmup`` untimed and ``steps`` timed steps; the statistics.

    ``first_step_s`` is the first warm-up step (with ``--compile``: the
    compilation).
    """
    times: List[float] = []
    cpu: List[float] = []
    first = None
    loss = float('nan')
    for i in range(warmup + steps):
        dt, dc, loss = step()
        first = dt if first is None else first
        kind = 'warm-up' if i < warmup else 'timed'
        print(f'  {label} step {i + 1}/{warmup + steps} ({kind}): '
              f'{dt:.3f} s, loss {loss:.4f}', flush=True)
        if i >= warmup:
            times.append(round(dt, 5))
            cpu.append(round(dc, 5))
    return dict(step_stats(times, cpu), loss_last=loss,
                first_step_s=round(first, 5))


def step_stats(times: List[float], cpu: List[float]) -> dict:
    """Median, min, max and mean of step times; median CPU time."""
    return dict(
        step_times_s=times,
        step_cpu_times_s=cpu,
        median_s=statistics.median(times),
        min_s=min(times),
        max_s=max(times),
        mean_s=statistics.fmean(times),
        median_cpu_s=statistics.median(cpu))


def merge_rounds(rounds: List[dict]) -> dict:
    """One result from the same variant run in several rounds.

    The timed steps of all rounds are pooled for the statistics; the peak
    memory is the largest of the rounds; ``round_medians_s`` keeps each
    round's median.
    """
    ok = [r for r in rounds if r.get('status') == 'ok']
    if len(ok) < len(rounds):
        return next(r for r in rounds if r.get('status') != 'ok')
    out = dict(ok[-1])
    times = [t for r in ok for t in r['step_times_s']]
    cpu = [t for r in ok for t in r['step_cpu_times_s']]
    out.update(step_stats(times, cpu), rounds=len(ok),
               round_medians_s=[r['median_s'] for r in ok],
               peak_mem_bytes=max(r['peak_mem_bytes'] for r in ok))
    out['images_per_s'] = out['batch_size'] / out['median_s']
    above = [r.get('peak_mem_above_baseline_bytes') for r in ok]
    if None not in above:
        out['peak_mem_above_baseline_bytes'] = max(above)
    return out


def optimizer_summary(wrapper: OptimWrapper) -> dict:
    """Optimizer type and how many parameters are exempt from decay."""
    opt = wrapper.optimizer
    decay = no_decay = 0
    for group in opt.param_groups:
        n = sum(p.numel() for p in group['params'])
        if group.get('weight_decay', 0) == 0:
            no_decay += n
        else:
            decay += n
    return dict(
        wrapper=type(wrapper).__name__,
        optimizer=type(opt).__name__,
        fused=bool(opt.defaults.get('fused')),
        param_groups=len(opt.param_groups),
        params_decay=decay,
        params_no_decay=no_decay)
