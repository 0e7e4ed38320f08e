"""Helpers shared by the benchmarks (not a test utility).

Timing, peak memory and the environment line come from :mod:`mambaout_dense.analysis.measure`,
tables and README sections from :mod:`mambaout_dense.analysis.tables`, models from
:mod:`mambaout_dense.builder`: the benchmarks hold no copy of them.
"""
from typing import Callable, Dict, List, Optional

import torch

from mambaout_dense.analysis.measure import environment, median_seconds, peak_memory_mb
from mambaout_dense.analysis.tables import markdown_table, update_readme_section

__all__ = ['median_seconds', 'peak_memory_mb', 'markdown_table', 'environment',
           'update_readme_section', 'build_model_from_config', 'task_speed_main']


def build_model_from_config(path: str, scope: str, overrides: Optional[dict] = None):
    """Build ``cfg.model`` of a config (``mmdet::``/``mmseg::`` paths allowed), no pretrained."""
    from mambaout_dense.builder import build_model, load_config
    cfg = load_config(path)
    cfg.default_scope = scope
    return build_model(cfg, overrides=overrides)


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
