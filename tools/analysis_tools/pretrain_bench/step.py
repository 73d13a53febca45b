"""Model, optimizer wrapper and batches from a config; the timed step.

The step is what mmengine's ``BaseModel.train_step`` does after the data
preprocessor: forward and loss under the optimizer wrapper's context,
``parse_losses``, ``OptimWrapper.update_params`` (backward, optimizer step,
zero_grad). Images are random; the masks come from the config's own
pipeline (its mask generator and ``PackInputs``), the batch from its
``collate_fn`` and data preprocessor, all outside the clock.
"""
import copy
import statistics
import time
from typing import Callable, List, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper, build_optim_wrapper

PRECISIONS = ('fp32', 'bf16', 'fp16')


def optim_wrapper_cfg(cfg: Config, precision: str, device: str) -> dict:
    """The config's optimizer wrapper, set to the benchmark's precision.

    The optimizer and its ``paramwise_cfg`` (weight-decay exemptions) stay
    as configured; ``accumulative_counts`` becomes 1, so every timed step
    updates the weights; fp32 uses a plain ``OptimWrapper``, bf16/fp16 an
    ``AmpOptimWrapper`` of that dtype (CUDA only).
    """
    wrapper = copy.deepcopy(cfg.optim_wrapper.to_dict())
    wrapper.pop('accumulative_counts', None)
    if precision == 'fp32':
        wrapper['type'] = 'OptimWrapper'
        wrapper.pop('loss_scale', None)
        wrapper.pop('dtype', None)
    elif device != 'cuda':
        raise ValueError(f'--precision {precision} needs --device cuda '
                         f'(mmengine AMP runs on GPUs); use fp32 on a CPU.')
    else:
        wrapper['type'] = 'AmpOptimWrapper'
        wrapper['dtype'] = 'float16' if precision == 'fp16' else 'bfloat16'
        wrapper.setdefault('loss_scale', 'dynamic')
    return wrapper


def build(cfg: Config, precision: str,
          device: torch.device) -> Tuple[torch.nn.Module, OptimWrapper]:
    """Model (initialised, on ``device``, train mode) and its wrapper."""
    from mmpretrain.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
    wrapper = build_optim_wrapper(
        model, optim_wrapper_cfg(cfg, precision, device.type))
    return model, wrapper


class BatchMaker:
    """Batches of random images through the tail of the config's pipeline.

    The tail starts at the first mask generator (a transform whose type
    ends with ``MaskGenerator``), or is the last transform (``PackInputs``)
    when the model draws its own mask (MAE); the loading, cropping and
    flipping before it are replaced by a random ``img x img`` image.
    """

    def __init__(self, cfg: Config, img: int, seed: int = 0) -> None:
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

    def __call__(self, batch: int) -> dict:
        items = []
        for _ in range(batch):
            img = self.rng.integers(0, 256, (self.img, self.img, 3),
                                    dtype=np.uint8)
            results = dict(img=img, img_shape=img.shape[:2],
                           ori_shape=img.shape[:2])
            for t in self.transforms:
                results = t(results)
            items.append(results)
        return self.collate(items)


def make_step(model, wrapper: OptimWrapper, batches: BatchMaker, batch: int,
              device: torch.device) -> Callable[[], Tuple[float, float,
                                                          float]]:
    """A function running one timed step: (wall s, CPU s, loss)."""

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    def step() -> Tuple[float, float, float]:
        data = model.data_preprocessor(batches(batch), True)
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        with wrapper.optim_context(model):
            losses = model._run_forward(data, mode='loss')
        loss, _ = model.parse_losses(losses)
        wrapper.update_params(loss)
        sync()
        return (time.perf_counter() - t0, time.process_time() - c0,
                float(loss.detach()))

    return step


def time_steps(step: Callable, warmup: int, steps: int,
               label: str) -> dict:
    """Run ``warmup`` untimed and ``steps`` timed steps; the statistics."""
    times: List[float] = []
    cpu: List[float] = []
    loss = float('nan')
    for i in range(warmup + steps):
        dt, dc, loss = step()
        kind = 'warm-up' if i < warmup else 'timed'
        print(f'  {label} step {i + 1}/{warmup + steps} ({kind}): '
              f'{dt:.3f} s, loss {loss:.4f}', flush=True)
        if i >= warmup:
            times.append(round(dt, 5))
            cpu.append(round(dc, 5))
    return dict(step_stats(times, cpu), loss_last=loss)


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
