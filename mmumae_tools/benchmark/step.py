"""One training step of a variant (a config in ``configs/``), timed, and
what it costs. The step is mmengine's ``train_step`` after the data
preprocessor (forward and loss, backward, optimizer step) with the config's
optimizer wrapper, on random images through the config's mask generator."""
import ast
import contextlib
import copy
import gc
import os.path as osp
import statistics
import time
from argparse import Namespace
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.optim import build_optim_wrapper

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _cfg(name: str, px: int = 256) -> str:
    return f'configs/{name.split("_")[0]}/{name}_in1k-{px}px.py'


_SWIN_SM = _cfg('simmim_swin-tiny-w16_8xb64-accum8-amp-coslr-200e')
#: preset -> variant -> (config, cfg-options); SimMIM at the reference
#: geometry (Swin window 16, PVT sr 8-4-2-1; configs/simmim/README.md)
PRESETS: Dict[str, Dict[str, Tuple[str, dict]]] = {
    'swin-t': dict(
        ummae=(_cfg('ummae_swin-tiny-w8_8xb512-amp-coslr-200e'), {}),
        simmim=(_SWIN_SM, {}), **{'simmim-stock': (_cfg(
            'simmim_stock-swin-tiny-w16_8xb64-accum8-amp-coslr-200e'), {})}),
    'swin-l': dict(  # no Swin-L SimMIM config: the Swin-T one, made large
        ummae=(_cfg('ummae_swin-large-w8_8xb512-amp-coslr-800e'), {}),
        simmim=(_SWIN_SM, {'model.backbone.arch': 'large',
                           'model.neck.in_channels': 1536})),
    'pvt-s': dict(
        ummae=(_cfg('ummae_pvt-small_8xb512-amp-coslr-200e'), {}),
        simmim=(_cfg('simmim_pvt-small_8xb64-accum8-amp-coslr-200e'), {})),
    # the ELPV study's miniatures (128 px, batch 32; docs/study.md)
    **{f'{net}-mini': dict(
        ummae=(f'configs/studies/elpv/ummae_{net}-mini_elpv-128px.py', {}),
        simmim=(f'configs/studies/elpv/simmim_{net}-mini_elpv-128px.py', {}))
       for net in ('swin', 'pvt')},
    'vit-b': dict(
        ummae=(_cfg('ummae_vit-base-p16_8xb512-amp-coslr-200e', 224), {}),
        mae=('configs/ummae/mae_vit-base-p16_8xb512-amp-coslr-200e_'
             'in1k-224px.py', {})),
}
VARIANTS = ('ummae', 'simmim', 'simmim-stock', 'mae')
AMP = {'none': None, 'bf16': 'bfloat16', 'fp16': 'float16'}
FP16_CPU = ('--amp fp16 needs --device cuda: mmengine runs fp16 through '
            'AmpOptimWrapper (GPU only); use bf16 or none on a CPU')


class CfgOptionsAction(DictAction):
    """mmengine's ``--cfg-options KEY=VALUE``, where a value written as a
    Python literal (``{...}``, ``[...]``, ``(...)``) is that literal;
    ``VARIANT:KEY=VALUE`` applies to that variant only."""

    def __call__(self, parser, namespace, values, option_string=None):
        options, plain = dict(getattr(namespace, self.dest, None) or {}), []
        for kv in values:
            key, _, val = kv.partition('=')
            try:
                options[key] = ast.literal_eval(val)
                if val[:1] in '{[(':
                    continue
            except (ValueError, SyntaxError):
                pass
            plain.append(kv)  # the rest as mmengine parses it
        setattr(namespace, self.dest, options)
        super().__call__(parser, namespace, plain, option_string)


def load_variant(preset: str, variant: str, options: dict,
                 img_size: Optional[int] = None) -> Config:
    """The variant's config with the preset's and then the user's
    cfg-options (a dict value replaces the config's whole), and
    ``img_size`` set wherever the config states an input size."""
    path, own = PRESETS[preset][variant]
    cfg, own = Config.fromfile(osp.join(REPO, path)), dict(own)
    for key, val in options.items():
        name, sep, rest = key.rpartition(':')
        if not sep or name == variant:
            own[rest] = val
    cfg.merge_from_dict({k: dict(v, _delete_=True) if isinstance(v, dict)
                         else v for k, v in own.items()})
    if img_size:
        for t in cfg.train_dataloader.dataset.pipeline:
            if 'input_size' in t:
                t['input_size'] = img_size
        for part, key in (('neck', 'input_size'), ('backbone', 'img_size')):
            if key in (cfg.model.get(part) or {}):
                cfg.model[part][key] = img_size
    return cfg


def batches(cfg: Config, img: int, pool: int = 64
            ) -> Tuple[Callable[[int], dict], str]:
    """``make(batch)``: random images through the config's pipeline from
    its mask generator on (its last transform where the model masks, as
    MAE does), collated as its dataloader does; at most ``pool`` distinct
    samples, repeated in a larger batch. And the mask generator's name."""
    from mmengine.registry import FUNCTIONS
    from mmpretrain.registry import TRANSFORMS
    pipe = cfg.train_dataloader.dataset.pipeline
    first = next((i for i, t in enumerate(pipe)
                  if t['type'].endswith('MaskGenerator')), len(pipe) - 1)
    transforms = [TRANSFORMS.build(copy.deepcopy(t)) for t in pipe[first:]]
    collate = FUNCTIONS.get(cfg.train_dataloader.get(
        'collate_fn', {'type': 'default_collate'})['type'])
    rng, items = np.random.default_rng(0), []

    def make(batch: int) -> dict:
        while len(items) < min(batch, pool):
            x = rng.integers(0, 256, (img, img, 3), np.uint8)
            item = dict(img=x, img_shape=x.shape[:2], ori_shape=x.shape[:2])
            for t in transforms:
                item = t(item)
            items.append(item)
        return collate([items[i % len(items)] for i in range(batch)])

    return make, ('drawn by the model' if first == len(pipe) - 1 else
                  pipe[first]['type'])


def optim_wrapper_cfg(cfg: Config, amp: str, device: str) -> dict:
    """The config's optimizer wrapper (its AdamW and ``paramwise_cfg``) at
    the benchmark's precision, ``accumulative_counts`` 1: fp32, and bf16
    on a CPU (see :func:`make_step`), a plain ``OptimWrapper``; bf16/fp16
    on CUDA an ``AmpOptimWrapper`` of that dtype, as the configs train."""
    if amp == 'fp16' and device != 'cuda':
        raise ValueError(FP16_CPU)
    wrapper = copy.deepcopy(cfg.optim_wrapper.to_dict())
    wrapper.pop('accumulative_counts', None)
    if amp != 'none' and device == 'cuda':
        wrapper.setdefault('loss_scale', 'dynamic')
        return dict(wrapper, type='AmpOptimWrapper', dtype=AMP[amp])
    return dict({k: v for k, v in wrapper.items()
                 if k not in ('loss_scale', 'dtype')}, type='OptimWrapper')


def make_step(model, wrapper, data: dict, amp: str, device: torch.device
              ) -> Callable[[], Tuple[float, float, float]]:
    """One training step on ``data``: wall s, process CPU s, loss. bf16 on
    a CPU autocasts through mmengine (on CUDA the wrapper's context does)."""
    from mmengine.runner import autocast
    sync = torch.cuda.synchronize if device.type == 'cuda' else lambda: None
    cpu_bf16 = amp == 'bf16' and device.type == 'cpu'

    def step() -> Tuple[float, float, float]:
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        with wrapper.optim_context(model), autocast(
                device_type='cpu', dtype=torch.bfloat16, enabled=cpu_bf16):
            losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        wrapper.update_params(loss)
        sync()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        return dt, dc, float(loss.detach())

    return step


def stats(times: List[float], cpu: List[float], batch: int) -> dict:
    """Min, median, max step time, images/s and median CPU time."""
    med = statistics.median(times)
    return dict(min_s=min(times), median_s=med, max_s=max(times),
                images_per_s=batch / med, median_cpu_s=statistics.median(cpu))


def cpu_attention_flops() -> dict:
    """``custom_mapping`` for torch's ``FlopCounterMode``: the CPU's fused
    attention kernel, which it does not count (``q @ k^T``, ``attn @ v``;
    2 FLOPs per multiply-add, as the counter counts)."""

    def flop(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
        *batch, q_len, dims = query_shape
        return 2 * int(np.prod(batch)) * q_len * key_shape[-2] * (
            dims + value_shape[-1])

    op = getattr(torch.ops.aten,
                 '_scaled_dot_product_flash_attention_for_cpu', None)
    return {} if op is None else {op: flop}


def count_flops(model, data: dict) -> Tuple[int, Dict[str, Dict[str, int]]]:
    """Forward FLOPs of the loss on a batch-1 ``data``: the total, and per
    top-level module (backbone, neck, head) per operator."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False,
                              custom_mapping=cpu_attention_flops())
    with torch.no_grad(), counter:
        model(**data, mode='loss')
    return int(counter.get_total_flops()), {
        name.split('.')[1]: {str(k).split('.')[-1]: int(v)
                             for k, v in ops.items()}
        for name, ops in counter.get_flop_counts().items()
        if name.count('.') == 1}


def compile_parts(model, backend: str = 'inductor',
                  scope: str = 'parts') -> List[str]:
    """``torch.compile`` the backbone, the neck and the head's loss, each
    its own graph forward and backward; ``scope='blocks'`` compiles the
    elements of their innermost ``ModuleList`` (the repeated blocks) one
    by one instead, so that identical blocks share compiled code. The
    algorithm's glue stays eager. Returns what was compiled."""
    from torch._dynamo.utils import counters
    torch.compiler.reset()
    counters.clear()  # graph breaks and graphs of this model only
    done: List[str] = []
    for name in ('backbone', 'neck'):
        part = getattr(model, name, None)
        if part is None:
            continue
        lists = [(n, m) for n, m in part.named_modules(prefix=name)
                 if isinstance(m, torch.nn.ModuleList) and not any(
                     isinstance(c, torch.nn.ModuleList)
                     for c in list(m.modules())[1:])]
        blocks = [(f'{n}.{i}', b) for n, m in lists for i, b in enumerate(m)]
        for block_name, block in (blocks if scope == 'blocks' and blocks
                                  else [(name, part)]):
            block.compile(backend=backend)
            done.append(block_name)
    if hasattr(getattr(model, 'head', None), 'loss'):
        model.head.loss = torch.compile(model.head.loss, backend=backend)
        done.append('head.loss')
    return done


def graph_counts() -> dict:
    """Dynamo's graph breaks (by the first line of the reason) and graphs
    since :func:`compile_parts`."""
    from torch._dynamo.utils import counters
    breaks = {str(k)[:300]: int(v) for k, v in counters['graph_break'].items()}
    return dict(graph_breaks=sum(breaks.values()), graph_break_reasons=breaks,
                graphs=int(counters['stats']['unique_graphs']))


def find_max_batch(fits: Callable[[int], bool], start: int, limit: int,
                   step: int = 1) -> Tuple[int, List[list]]:
    """The largest multiple of ``step`` up to ``limit`` that ``fits``
    (monotone): doubling from ``start``, then bisecting between the largest
    batch that fitted and the smallest that did not. Returns it (0: not
    even ``step``) and the trials, ``[batch, fitted]`` in order."""
    if min(start, limit, step) < 1 or limit < step:
        raise ValueError(f'largest batch: need 1 <= step <= limit and start '
                         f'>= 1 (start {start}, limit {limit}, step {step})')
    limit, trials = limit // step * step, []

    def trial(n: int) -> bool:
        trials.append([n, bool(fits(n))])
        return trials[-1][1]

    lo, hi, n = 0, None, min(-(-start // step) * step, limit)
    while hi is None and lo < limit:
        lo, hi, n = (n, None, min(2 * n, limit)) if trial(n) else (lo, n, n)
    while hi is not None and hi - lo > step:
        mid = lo + (hi - lo) // (2 * step) * step
        lo, hi = (mid, hi) if trial(mid) else (lo, mid)
    return lo, trials


def _peak_rss(reset: bool = False, key: str = 'VmHWM') -> Optional[int]:
    """This process's peak RSS (Linux ``VmHWM``; ``reset``: start it
    afresh first) or, with ``key='VmRSS'``, its current RSS."""
    if reset:
        with contextlib.suppress(OSError), open('/proc/self/clear_refs',
                                                'w') as f:
            f.write('5')
    with contextlib.suppress(OSError), open('/proc/self/status') as f:
        return next((int(ln.split()[1]) * 1024 for ln in f
                     if ln.startswith(key + ':')), None)
    return None


def profile_step(step: Callable, device: torch.device, path: str,
                 top: int = 10) -> List[list]:
    """One more step under ``torch.profiler``: the operator table (by self
    device time on CUDA, else self CPU time) to ``path``; the top rows as
    ``[operator, calls, self ms]``."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == 'cuda'
    with profile(activities=[ProfilerActivity.CPU] +
                 [ProfilerActivity.CUDA] * cuda) as prof:
        step()
    events = prof.key_averages()
    key = 'self_device_time_total' if cuda else 'self_cpu_time_total'
    with open(path, 'w') as f:
        f.write(events.table(sort_by=key, row_limit=30))
    rows = sorted(events, key=lambda e: getattr(e, key), reverse=True)
    return [[e.key, e.count, getattr(e, key) / 1e3] for e in rows[:top]]


def run_variant(preset: str, variant: str, args: Namespace) -> dict:
    """Build one variant and measure it as the parsed command line
    ``args`` asks; a failure is the result's one-line ``reason``."""
    out = dict(model=preset, variant=variant, amp=args.amp,
               compile=args.compile)
    try:
        out.update(_measure(preset, variant, args), status='ok')
    except Exception as e:  # noqa: BLE001 - reported, one line
        first = (str(e).strip().splitlines() or [''])[0][:300]
        out.update(status='failed', reason=f'{type(e).__name__}: {first}')
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def _measure(preset: str, variant: str, args: Namespace) -> dict:
    from mmengine.logging import MMLogger
    from mmpretrain.registry import MODELS
    device, cuda = torch.device(args.device), args.device == 'cuda'
    torch.set_num_threads(args.threads or torch.get_num_threads())
    torch.manual_seed(0)
    base = _peak_rss(reset=True, key='VmRSS')
    cfg = load_variant(preset, variant, args.cfg_options, args.img_size)
    pipe = cfg.train_dataloader.dataset.pipeline
    img = args.img_size or next(int(np.ravel(t['scale'])[0]) for t in pipe
                                if t['type'] == 'RandomResizedCrop')
    MMLogger.get_current_instance().setLevel('WARNING')  # init messages
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
    wrapper_cfg = optim_wrapper_cfg(cfg, args.amp, args.device)
    wrapper = build_optim_wrapper(model, copy.deepcopy(wrapper_cfg))
    make, mask = batches(cfg, img)
    res = dict(config=PRESETS[preset][variant][0], img_size=img, mask=mask,
               batch_size=args.batch_size, threads=torch.get_num_threads(),
               params=sum(p.numel() for p in model.parameters()
                          if p.requires_grad))

    def prepare(n: int) -> dict:
        return model.data_preprocessor(make(n), True)

    if not args.no_flops:  # eager fp32, before any compilation
        res['flops_per_image'], res['flops_by_module'] = count_flops(
            model, prepare(1))
    if args.compile:
        res['compiled'] = compile_parts(model, args.compile_backend,
                                        args.compile_scope)
    data = prepare(args.batch_size)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    step = make_step(model, wrapper, data, args.amp, device)
    runs = [step() for _ in range(args.warmup + args.steps)]
    res.update(first_step_s=runs[0][0], loss=runs[-1][2],
               step_times_s=[r[0] for r in runs[args.warmup:]],
               step_cpu_times_s=[r[1] for r in runs[args.warmup:]],
               peak_mem_bytes=(torch.cuda.max_memory_allocated(device)
                               if cuda else _peak_rss()))
    res.update(stats(res['step_times_s'], res['step_cpu_times_s'],
                     args.batch_size))
    if not cuda and base and res['peak_mem_bytes']:
        res['peak_above_base_bytes'] = res['peak_mem_bytes'] - base
    if args.profile:
        tag = (f'_{args.amp}' * (args.amp != 'none') +
               '_compile' * args.compile)
        res['profile'] = profile_step(step, device, osp.join(
            args.out_dir, f'profile_{preset}_{variant}{tag}.txt'))
    del step, data

    def fits(n: int) -> bool:
        nonlocal wrapper
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        _peak_rss(reset=True)
        try:
            make_step(model, wrapper, prepare(n), args.amp, device)()
            ok = cuda or (_peak_rss() or 0) <= args.max_batch_rss_gib * 2**30
        except (torch.cuda.OutOfMemoryError, MemoryError):
            ok = False
        if not ok:  # an interrupted AMP step leaves its loss scaler mid-way
            model.zero_grad(set_to_none=True)
            wrapper = build_optim_wrapper(model, copy.deepcopy(wrapper_cfg))
        return ok

    if args.max_batch:
        res['max_batch'], res['max_batch_trials'] = find_max_batch(
            fits, args.batch_size, args.max_batch_limit, args.max_batch_step)
        res['max_batch_capped'] = all(t[1] for t in res['max_batch_trials'])
    return dict(res, **graph_counts()) if args.compile else res
