"""Helpers shared by the benchmarks (not a test utility).

Timing, peak memory and the environment line come from :mod:`mambaout_dense.analysis.measure`,
tables and results sections from :mod:`mambaout_dense.analysis.tables`, models from
:mod:`mambaout_dense.builder`: the benchmarks hold no copy of them. :func:`publish` writes a
section of docs/results.md and refreshes README.md's headlines (``tools/update_readme.py``).
"""
import os.path as osp
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Tuple

import torch

from mambaout_dense.analysis.measure import (
    environment,
    interleaved_median_seconds,
    median_seconds,
    peak_memory_mb,
)
from mambaout_dense.analysis.tables import markdown_table, update_section

__all__ = ['median_seconds', 'peak_memory_mb', 'markdown_table', 'environment', 'publish',
           'RESULTS', 'build_model_from_config', 'task_speed_main']

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: The file that holds every generated result section.
RESULTS = osp.join(REPO_ROOT, 'docs', 'results.md')


def publish(section: str, text: str, path: str = RESULTS) -> None:
    """Rewrite ``section`` of docs/results.md (or ``path``), then README.md's headlines."""
    if not update_section(path, section, text):
        raise FileNotFoundError(f'no results file at {path}')
    print(f'section "{section}" of {osp.relpath(path, REPO_ROOT)} rewritten')
    if osp.abspath(path) == RESULTS:
        subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'update_readme.py')],
                       check=True)


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


#: Parts of a training iteration in the breakdown, in order.
PARTS = ('preprocess', 'backbone fwd', 'neck fwd', 'heads fwd + losses', 'backward',
         'optimizer step')


def breakdown_step(model, data: dict, lr: float = 1e-4) -> Callable[[], Dict[str, float]]:
    """A closure running one training iteration and returning the seconds of each part.

    The parts are :data:`PARTS`. The backbone's and the neck's forward are timed by forward
    hooks; the heads' share is the rest of the forward with the losses; backward and the AdamW
    step are timed around the calls (what ``model.train_step`` does, step by step).
    """
    import time
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, foreach=True)
    spans: Dict[str, float] = {}

    def hooked(name):
        def pre(module, args):
            spans[name + ' start'] = time.perf_counter()

        def post(module, args, out):
            spans[name] = spans.get(name, 0.0) + time.perf_counter() - spans[name + ' start']
        return pre, post

    def step() -> Dict[str, float]:
        hooks = []
        for name in ('backbone', 'neck'):
            module = getattr(model, name, None)
            if module is not None:
                pre, post = hooked(name)
                hooks += [module.register_forward_pre_hook(pre),
                          module.register_forward_hook(post)]
        spans.clear()
        model.train()
        try:
            t0 = time.perf_counter()
            batch = model.data_preprocessor(data, True)
            t1 = time.perf_counter()
            loss, _ = model.parse_losses(model(**batch, mode='loss'))
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad()
            t4 = time.perf_counter()
        finally:
            for h in hooks:
                h.remove()
        backbone, neck = spans.get('backbone', 0.0), spans.get('neck', 0.0)
        return dict(zip(PARTS, (t1 - t0, backbone, neck, t2 - t1 - backbone - neck, t3 - t2,
                                t4 - t3)))
    return step


def compare_train_steps(named_models: Dict[str, Callable[[], object]], data_fn, device: str,
                        repeat: int, reference: str,
                        breakdown: bool = True) -> Tuple[List[Dict[str, object]], List[dict]]:
    """Time one training iteration of each model; ratios are against ``reference``.

    All models are built first and timed in turns (one iteration of each per round, see
    :func:`~mambaout_dense.analysis.measure.interleaved_median_seconds`), so a host whose speed
    drifts slows every model of a round alike; the breakdown is taken in turns as well.

    Returns:
        tuple[list[dict], list[dict]]: The timing rows, and (with ``breakdown``) one row per
        model with the seconds of each part of :data:`PARTS`.
    """
    import statistics
    models, steps = {}, {}
    for name, build in named_models.items():
        torch.manual_seed(0)
        models[name] = build().to(device)
        steps[name] = train_step_fn(models[name], data_fn())
    seconds = interleaved_median_seconds(steps, device, warmup=1, repeat=repeat)
    rows = []
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        rows.append({'model': name, 'params (M)': round(params, 1), 's/iter': seconds[name],
                     'peak MiB': peak_memory_mb(steps[name], device)})
    parts = []
    if breakdown:
        runners = {name: breakdown_step(model, data_fn()) for name, model in models.items()}
        runs = {name: [] for name in runners}
        for it in range(repeat + 1):  # the first round is a warm-up
            for name, run in runners.items():
                split = run()
                if it:
                    runs[name].append(split)
        for name, splits in runs.items():
            split = {p: statistics.median(s[p] for s in splits) for p in PARTS}
            parts.append({'model': name, **{f'{p} (s)': v for p, v in split.items()},
                          'backbone share': split['backbone fwd'] / sum(split.values())})
    ref = next(r for r in rows if r['model'] == reference)
    for r in rows:
        r['time ratio (vs ' + reference + ')'] = r['s/iter'] / ref['s/iter']
        r['memory ratio'] = r['peak MiB'] / max(ref['peak MiB'], 1e-9)
    return rows, parts


#: Target of issue 13: MambaOut-T's training iteration at most this fraction of Swin-T's.
TIME_RATIO_TARGET = 0.9


def task_speed_main(description: str, models: Dict[str, str], scope: str, make_batch,
                    section: str, title: str, default_shape=None, cpu_shape=None,
                    overrides: Optional[dict] = None, note: str = '', default_repeat: int = 3,
                    argv=None) -> None:
    """Command line of detector_speed / segmentor_speed: one training iteration per model.

    ``models`` maps a name to a config path; the first one is the reference of the ratios.
    The input is ``--shape``, else ``default_shape`` (``cpu_shape`` on the CPU when given).
    Prints the table, a breakdown of an iteration per model, and the target (MambaOut-T at most
    :data:`TIME_RATIO_TARGET` of the reference's time) met or missed; rewrites the results section
    ``section`` unless ``--no-results``. ``note`` (what the comparison holds equal) is printed
    under the environment line.
    """
    import argparse
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    parser.add_argument('--repeat', type=int, default=default_repeat,
                        help='timed rounds (one iteration of each model per round)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--no-results', action='store_true', help='print only')
    args = parser.parse_args(argv)
    if args.shape:
        shape = tuple(args.shape)
    else:
        shape = tuple(cpu_shape if cpu_shape and args.device == 'cpu' else default_shape)
    reference = next(iter(models))
    builders = {name: (lambda p=path: build_model_from_config(p, scope, overrides))
                for name, path in models.items()}
    rows, parts = compare_train_steps(builders, lambda: make_batch(shape), args.device,
                                      args.repeat, reference=reference)
    for r in rows:
        r['input'] = f'2 x {shape[0]}x{shape[1]}'
    ratio_key = f'time ratio (vs {reference})'
    table = markdown_table(rows, ['model', 'input', 'params (M)', 's/iter', 'peak MiB',
                                  ratio_key, 'memory ratio'])
    ours = [r for r in rows if r['model'] != reference]
    met = all(r[ratio_key] <= TIME_RATIO_TARGET for r in ours)
    verdict = (f"Target: MambaOut-T at most {TIME_RATIO_TARGET}x {reference}'s time: "
               + ('met' if met else '**missed**') + ' ('
               + ', '.join(f"{r['model']} {r[ratio_key]:.2f}x" for r in ours) + ').')
    text = '\n'.join([
        f'### {title}', '', environment(args.device) + f', repeat {args.repeat}; the models are '
        'timed in turns, one iteration of each per round.' + (f' {note}' if note else ''), '',
        table, '',
        verdict, '', "Where an iteration goes (median seconds; the heads' share is the rest of "
        'the forward, losses included):', '',
        markdown_table(parts, ['model'] + [f'{p} (s)' for p in PARTS] + ['backbone share'])])
    print(text)
    if not args.no_results:
        publish(section, text)
