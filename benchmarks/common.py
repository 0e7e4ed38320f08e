"""Helpers shared by the benchmarks: timing, tables, model building (not a test utility).

Timing and peak memory come from :mod:`mambaout_dense.analysis.measure` (median of warm runs
with CUDA synchronisation; peak memory from CUDA's allocator or a forked child's peak RSS).
"""
import os.path as osp
import platform
from typing import Callable, Dict, List, Optional, Sequence

import torch

from mambaout_dense.analysis.measure import median_seconds as _median_and_runs
from mambaout_dense.analysis.measure import peak_memory_mb

__all__ = ['median_seconds', 'peak_memory_mb', 'markdown_table', 'environment', 'set_threads',
           'task_speed_main']


def set_threads(n: int) -> None:
    torch.set_num_threads(n)


def median_seconds(fn: Callable[[], object], device: str = 'cpu', warmup: int = 1,
                   repeat: int = 5) -> float:
    """Median wall time of ``fn()`` in seconds after ``warmup`` calls."""
    return _median_and_runs(fn, device, warmup=warmup, repeat=repeat)[0]


def environment(device: str) -> str:
    """One line naming the device, threads and versions."""
    if device.startswith('cuda'):
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine()
        try:
            with open('/proc/cpuinfo') as f:
                name = next(line.split(':', 1)[1].strip() for line in f
                            if line.startswith('model name'))
        except (OSError, StopIteration):
            pass
    return (f'device: {device} ({name}), threads: {torch.get_num_threads()}, '
            f'torch {torch.__version__}')


def markdown_table(rows: List[Dict[str, object]], columns: Sequence[str]) -> str:
    """Render rows (dicts) as a GitHub markdown table with the given column order."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f'{v:.3g}' if abs(v) < 100 else f'{v:.0f}'
        return str(v)
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(fmt(r.get(c, '')) for c in columns) + ' |' for r in rows]
    return '\n'.join(lines)


def build_model_from_config(path: str, scope: str, overrides: Optional[dict] = None):
    """Build ``cfg.model`` of a config (``mmdet::``/``mmseg::`` paths allowed), no pretrained."""
    from mmengine.config import Config

    from mambaout_dense.analysis.flops import build_task_model
    if '::' in path:  # a config shipped inside an installed package (mmdet::, mmseg::)
        import importlib
        package, rel = path.split('::', 1)
        path = osp.join(osp.dirname(importlib.import_module(package).__file__), '.mim',
                        'configs', rel)
    cfg = Config.fromfile(path)
    cfg.default_scope = scope
    backbone = cfg.model.get('backbone', {})
    backbone.pop('init_cfg', None)
    backbone.pop('pretrained', None)
    cfg.model.pop('pretrained', None)
    if overrides:
        cfg.merge_from_dict(overrides)
    return build_task_model(cfg)


def train_step_fn(model, data: dict, lr: float = 1e-4):
    """A closure running one full training iteration (forward, backward, AdamW step)."""
    from mmengine.optim import OptimWrapper
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, foreach=True)
    wrapper = OptimWrapper(optimizer)
    model.train()

    def step():
        model.train_step(data, wrapper)
    return step


def compare_train_steps(named_models: Dict[str, Callable[[], object]], data_fn, device: str,
                        repeat: int, reference: str) -> List[Dict[str, object]]:
    """Time one training iteration of each model; ratios are against ``reference``."""
    rows = []
    for name, build in named_models.items():
        torch.manual_seed(0)
        model = build().to(device)
        step = train_step_fn(model, data_fn())
        seconds = median_seconds(step, device, warmup=1, repeat=repeat)
        memory = peak_memory_mb(step, device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        rows.append({'model': name, 'params (M)': round(params, 1), 's/iter': seconds,
                     'peak MiB': memory})
        del model, step
    ref = next(r for r in rows if r['model'] == reference)
    for r in rows:
        r['time ratio (vs ' + reference + ')'] = r['s/iter'] / ref['s/iter']
        r['memory ratio'] = r['peak MiB'] / max(ref['peak MiB'], 1e-9)
    return rows


def task_speed_main(description: str, models: Dict[str, str], scope: str, make_batch,
                    default_shape=None, cpu_shape=None, overrides: Optional[dict] = None,
                    argv=None) -> None:
    """Command line of detector_speed / segmentor_speed: one training iteration per model.

    ``models`` maps a name to a config path; the first one is the reference of the ratios.
    The input is ``--shape``, else ``default_shape`` (``cpu_shape`` on the CPU when given).
    """
    import argparse
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    if args.shape:
        shape = tuple(args.shape)
    else:
        shape = tuple(cpu_shape if cpu_shape and args.device == 'cpu' else default_shape)
    reference = next(iter(models))
    builders = {name: (lambda p=path: build_model_from_config(p, scope, overrides))
                for name, path in models.items()}
    rows = compare_train_steps(builders, lambda: make_batch(shape), args.device, args.repeat,
                               reference=reference)
    for r in rows:
        r['input'] = f'2 x {shape[0]}x{shape[1]}'
    print(environment(args.device))
    print(markdown_table(rows, ['model', 'input', 'params (M)', 's/iter', 'peak MiB',
                                f'time ratio (vs {reference})', 'memory ratio']))
