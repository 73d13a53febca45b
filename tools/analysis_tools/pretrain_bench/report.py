"""Machine description, ratios, targets, the table and the plot."""
import os
import platform
import subprocess
from typing import Dict, List, Optional

from .variants import PRESETS, REPO_ROOT

#: (numerator, denominator) pairs reported per preset; the baseline pair
#: is added per preset (``ummae`` over its ``baseline``).
_PAIRS = (('ummae', 'simmim-stock'), ('simmim', 'simmim-stock'))
#: time ratio may exceed the FLOP ratio by this much (UM-MAE target)
FLOP_SLACK = 0.03


def _first_line(path: str, prefix: str) -> Optional[str]:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return None


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                             cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(['git', 'status', '--porcelain', '--',
                                'mmumae', 'configs', 'tools'],
                               cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return (out.stdout.strip() + ('+uncommitted' if dirty else '')
                or None)
    except (OSError, subprocess.SubprocessError):
        return None


def loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info(device: str) -> dict:
    """CPU model, cores, memory, versions, device, commit and load."""
    import mmengine
    import mmpretrain
    import torch
    mem = _first_line('/proc/meminfo', 'MemTotal')
    info = dict(
        cpu_model=(_first_line('/proc/cpuinfo', 'model name')
                   or platform.processor() or platform.machine()),
        cpu_cores=os.cpu_count(),
        cpu_cores_usable=len(os.sched_getaffinity(0)),
        mem_total_gib=mem and round(int(mem.split()[0]) / 2**20, 1),
        python=platform.python_version(),
        torch=torch.__version__,
        mmpretrain=mmpretrain.__version__,
        mmengine=mmengine.__version__,
        torch_threads=torch.get_num_threads(),
        git_commit=_git_commit(),
        loadavg_start=loadavg())
    if device == 'cuda' and torch.cuda.is_available():
        info['device_name'] = torch.cuda.get_device_name(0)
    else:
        info['device_name'] = f'CPU: {info["cpu_model"]}'
    return info


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or not b else a / b


def compute_ratios(results: List[dict]) -> Dict[str, dict]:
    """Ratios of step time, CPU time, memory and FLOPs per preset."""
    by = {(r['model'], r['variant']): r for r in results
          if r.get('status') == 'ok'}
    out = {}
    for model in dict.fromkeys(r['model'] for r in results):
        pairs = (('ummae', PRESETS[model]['baseline']), ) + _PAIRS
        for num, den in pairs:
            a, b = by.get((model, num)), by.get((model, den))
            if a is None or b is None:
                continue
            out[f'{model}: {num}/{den}'] = dict(
                model=model, numerator=num, denominator=den,
                time=_ratio(a['median_s'], b['median_s']),
                cpu_time=_ratio(a['median_cpu_s'], b['median_cpu_s']),
                memory=_ratio(a['peak_mem_bytes'], b['peak_mem_bytes']),
                memory_above_baseline=_ratio(
                    a.get('peak_mem_above_baseline_bytes'),
                    b.get('peak_mem_above_baseline_bytes')),
                flops=_ratio(a.get('flops_per_image'),
                             b.get('flops_per_image')))
    return out


def check_targets(ratios: Dict[str, dict]) -> List[dict]:
    """The benchmark's targets, each with its measured value and verdict.

    - UM-MAE / SimMIM step time <= forward-FLOP ratio + ``FLOP_SLACK``.
    - our SimMIM step no slower than mmpretrain's stock SimMIM.

    ``met`` judges the wall-time ratio, ``met_cpu`` the ratio of the CPU
    time of the process, which other load on the machine disturbs less.
    """
    out = []
    for key, r in ratios.items():
        if r['time'] is None:
            continue
        pair = (r['numerator'], r['denominator'])
        if pair in (('ummae', 'simmim'), ('ummae', 'mae')):
            if r['flops'] is None:
                continue
            limit, what = r['flops'] + FLOP_SLACK, 'FLOP ratio + 0.03'
        elif pair == ('simmim', 'simmim-stock'):
            limit, what = 1.0, 'no slower than stock'
        else:
            continue
        cpu = r['cpu_time']
        out.append(dict(ratio=key, time=r['time'], cpu_time=cpu,
                        limit=limit, target=f'time ratio <= {what}',
                        met=r['time'] <= limit,
                        met_cpu=cpu is not None and cpu <= limit))
    return out


def _fmt(v, spec: str) -> str:
    if v is None:
        width = ''.join(c for c in spec.split('.')[0] if c.isdigit())
        return format('-', '>' + (width or '1'))
    return format(v, spec)


def _result_line(r: dict) -> str:
    if r.get('status') != 'ok':
        return (f'{r["model"]:<8} {r["variant"]:<13} '
                f'{r.get("status", "?").upper()}: {r.get("reason")}')
    above = r.get('peak_mem_above_baseline_bytes')
    flops = r.get('flops_per_image')
    return (f'{r["model"]:<8} {r["variant"]:<13} {r["img_size"]:>4} '
            f'{r["batch_size"]:>3} {r["median_s"]:>9.3f} {r["min_s"]:>7.3f} '
            f'{r["max_s"]:>7.3f} {r["images_per_s"]:>7.2f} '
            f'{r["median_cpu_s"]:>7.2f} {r["peak_mem_bytes"] / 2**30:>9.2f} '
            f'{_fmt(above and above / 2**30, ">10.2f")} '
            f'{_fmt(flops and flops / 1e9, ">10.2f")} '
            f'{r["params"] / 1e6:>8.1f}')


def format_table(results: List[dict], ratios: Dict[str, dict],
                 targets: List[dict], device: str) -> str:
    """Results, ratios and targets as plain text."""
    mem = 'peak GiB' if device == 'cuda' else 'RSS GiB'
    head = (f'{"model":<8} {"variant":<13} {"img":>4} {"bs":>3} '
            f'{"median s":>9} {"min s":>7} {"max s":>7} {"img/s":>7} '
            f'{"CPU s":>7} {mem:>9} {"above base":>10} {"GFLOPs/img":>10} '
            f'{"params M":>8}')
    lines = [head, '-' * len(head)] + [_result_line(r) for r in results]
    if ratios:
        lines += ['', f'{"ratio":<30} {"time":>6} {"CPU time":>8} '
                  f'{"memory":>7} {"mem above base":>14} {"FLOPs":>6}']
        lines += [f'{k:<30} {_fmt(v["time"], ">6.3f")} '
                  f'{_fmt(v["cpu_time"], ">8.3f")} '
                  f'{_fmt(v["memory"], ">7.2f")} '
                  f'{_fmt(v["memory_above_baseline"], ">14.2f")} '
                  f'{_fmt(v["flops"], ">6.3f")}' for k, v in ratios.items()]
    verdict = {True: 'met', False: 'NOT met'}
    for t in targets:
        lines.append(f'target {t["ratio"]}: {t["target"]} ({t["limit"]:.3f})'
                     f': wall {t["time"]:.3f} {verdict[t["met"]]}, CPU '
                     f'{_fmt(t["cpu_time"], ".3f")} {verdict[t["met_cpu"]]}')
    for r in results:
        if r.get('status') != 'ok':
            continue
        name = f'{r["model"]}/{r["variant"]}'
        if r.get('compile'):
            lines.append(
                f'compile {name}: {", ".join(r.get("compiled_parts", []))}; '
                f'first step {r["first_step_s"]:.2f} s, graph breaks '
                f'{r.get("graph_breaks", "?")}, graphs '
                f'{r.get("unique_graphs", "?")}')
        found = r.get('max_batch')
        if found:
            peak = found.get('peak_mem_bytes')
            lines.append(
                f'max batch {name}: {found["max_batch"]}'
                f'{" (capped by the limit)" if found["capped"] else ""}'
                f'{f", peak {peak / 2**30:.2f} GiB" if peak else ""}; '
                f'trials {found["trials"]}')
    notes = [(r, n) for r in results for n in r.get('notes', [])]
    lines += [f'note ({r["model"]}/{r["variant"]}): {n}' for r, n in notes]
    for r in results:
        prof = r.get('profile')
        if prof:
            lines += ['', f'profile {r["model"]}/{r["variant"]}: one step, '
                      f'{prof["step_s"]:.3f} s under the profiler (table: '
                      f'{prof["table_file"]})']
            lines += [f'  {e["name"][:44]:<44} {e["calls"]:>6} '
                      f'{e["self_cpu_ms"]:>9.1f} ms {e["self_cpu_pct"]:>5.1f}%'
                      for e in prof['top'][:15]]
    return '\n'.join(lines)


def plot(results: List[dict], path: str, device: str) -> None:
    """Bar charts of step time (median, min-max) and peak memory."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ok = [r for r in results if r.get('status') == 'ok']
    colors = {'ummae': 'tab:green', 'simmim': 'tab:blue',
              'simmim-stock': 'tab:gray', 'mae': 'tab:orange'}
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(ok) + 4), 4.5))
    xs = list(range(len(ok)))
    col = [colors[r['variant']] for r in ok]
    med = [r['median_s'] for r in ok]
    err = [[r['median_s'] - r['min_s'] for r in ok],
           [r['max_s'] - r['median_s'] for r in ok]]
    axes[0].bar(xs, med, yerr=err, color=col, capsize=4)
    axes[0].set_ylabel('training step, s (median, min-max)')
    mem = [r['peak_mem_bytes'] / 2**30 for r in ok]
    axes[1].bar(xs, mem, color=col)
    axes[1].set_ylabel('peak GPU memory, GiB' if device == 'cuda' else
                       'peak RSS, GiB')
    for ax in axes:
        ax.set_xticks(xs)
        ax.set_xticklabels([f'{r["model"]}\n{r["variant"]}' for r in ok],
                           fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
