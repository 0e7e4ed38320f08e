#!/usr/bin/env python
"""Long-range probe: which token mixer learns a selective dependency beyond a Gated CNN's field?

Tests the long-sequence hypothesis of MambaOut (Yu & Wang, arXiv 2405.07992) against VMamba's SS2D
(Liu et al., arXiv 2401.10166). The probe network (mambaout_dense.analysis.probe: a 4x4 patch stem
and DEPTH blocks of width D at one stage) differs only in its token mixer: gated_cnn (MambaOut's
block), gated_cnn_dilated (the same, dilated: same parameters and FLOPs, a wider field), ss2d
(VMamba v2 block), hybrid (SS2D, then Gated CNN), attention (global, with 2-D sin-cos positions)
and the shortcut baseline gated_cnn_gap (Gated CNN + a global-average-pool branch). The task
(mambaout_dense.datasets.synthetic.longrange): two target-marker pairs per image, one red and one
blue marker; each target takes the colour of its own marker exactly d tokens away, every other
marker is farther; so no image-level statistic labels a target. Each run trains on batches half
at the control distances (3 and 5, inside every field), half at d, and is scored on held-out
targets drawn for its seed; a run below --learned-threshold at a control is "not learned" and
left out of the statistics.

Axes (--axes), each changing one variable: d (distance at a fixed grid and width), L (grid at a
fixed distance and width), D (width at a fixed grid and distance), shortcut (the earlier single-cue
task, Gated CNN and shortcut baseline only), factorial (every width x grid x distance that fits).
Every finished cell is appended to WORK_DIR/cells.jsonl; a rerun with the same settings skips the
cells already there (a killed sweep continues). At the end WORK_DIR/results.{json,md} and the
plots are written; tools/analysis/report.py --only longrange copies them into docs/ and
docs/results.md.

    python tools/analysis/longrange_experiment.py                   # axes d and L (~40 min)
    python tools/analysis/longrange_experiment.py --axes D shortcut # the D axis (~25 min)
    python tools/analysis/longrange_experiment.py --seeds 3 4 5     # three other seeds
    python tools/analysis/longrange_experiment.py --dry-run         # plan, fields, cost
    python tools/analysis/longrange_experiment.py --preset gpu --work-dir work_dirs/longrange_gpu
    python tools/analysis/longrange_experiment.py --arm upernet     # the dense arms, UperNet and
    python tools/analysis/longrange_experiment.py --arm maskrcnn    # Mask R-CNN: longrange_dense.py
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Dict, List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: The dense arms (mambaout_dense.analysis.dense_longrange): UperNet and Mask R-CNN.
DENSE_ARMS = ('upernet', 'maskrcnn')
#: Seeds of the reported runs; 100 and 101 were the tuning seeds (docs/longrange.md).
DEFAULT_SEEDS = (0, 1, 2)
#: Preset overrides (explicit flags win).
PRESETS: Dict[str, Dict[str, Any]] = {
    'gpu': dict(axes=['d', 'L', 'D', 'shortcut', 'factorial'], d_grid=24, l_grids=[16, 20, 24, 32],
                distances=[9, 12, 16], dims=[32, 48, 64], device='cuda', jobs=8),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return '?'
    seconds = int(round(seconds))
    return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def build_parser() -> argparse.ArgumentParser:
    from mambaout_dense.analysis.longrange import DEFAULT_MIXERS, ProbeSettings
    from mambaout_dense.analysis.longrange.settings import AXES
    from mambaout_dense.analysis.probe import MIXERS
    d = ProbeSettings()
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
    g = parser.add_argument_group('sweep')
    g.add_argument('--work-dir', default='work_dirs/longrange',
                   help='results (default: %(default)s)')
    g.add_argument('--preset', choices=sorted(PRESETS),
                   help='scale-up defaults (explicit flags win)')
    g.add_argument('--axes', nargs='+', choices=AXES + ('factorial', ), default=['d', 'L'],
                   help='axes to run (default: d L)')
    g.add_argument('--mixers', nargs='+', choices=MIXERS, default=list(DEFAULT_MIXERS))
    g.add_argument('--seeds', type=int, nargs='+', default=list(DEFAULT_SEEDS),
                   help='seeds (default 0 1 2; 100 and 101 were used for tuning)')
    g.add_argument('--seed-offset', type=int, default=0,
                   help='added to every seed: --seed-offset 3 runs 3 4 5 (default 0)')
    g.add_argument('--dim', type=int, default=48, help='width D of the d, L and shortcut axes '
                   '(default 48, MambaOut-Femto\'s first stage)')
    g.add_argument('--d-grid', type=int, default=20, help='grid of the d axis (default 20)')
    g.add_argument('--distances', type=int, nargs='+', default=[9, 12],
                   help='distances of the d axis besides the controls (default 9 12: just beyond '
                   'the Gated CNN\'s radius 6 and the dilated one\'s 9)')
    g.add_argument('--l-grids', type=int, nargs='+', default=[16, 20, 24],
                   help='grids of the L axis (default 16 20 24: L/(6D) 0.89, 1.39, 2.0 at D 48)')
    g.add_argument('--l-distance', type=int, default=9,
                   help='distance of the L, D and shortcut axes (default 9)')
    g.add_argument('--dims', type=int, nargs='+', default=[32, 48, 64],
                   help='widths of the D axis (default 32 48 64)')
    g.add_argument('--dim-grid', type=int, default=16, help='grid of the D axis (default 16)')
    g.add_argument('--pairs', type=int, default=2, help='target-marker pairs per image')
    g.add_argument('--jobs', type=int, default=2, help='training processes (default 2)')
    g.add_argument('--threads', type=int, default=1, help='torch threads per process (default 1)')
    g.add_argument('--device', default='cpu', help='torch device of the training (default cpu)')
    g.add_argument('--dry-run', action='store_true',
                   help='print the plan, fields, parameters and cost, then stop')
    g.add_argument('--no-cost', action='store_true',
                   help='skip the FLOP count and the latency measurement')
    g.add_argument('--arm', choices=('probe', ) + DENSE_ARMS, default='probe',
                   help='probe: the probe network (default); upernet, maskrcnn: the dense arms '
                   '(UperNet / Mask R-CNN with Femto backbones through tools/train.py; their '
                   'own options: --arm upernet --help)')
    p = parser.add_argument_group('probe and training (every cell)')
    for name, typ, help_ in (
            ('depth', int, 'blocks'), ('patch', int, 'pixels per token side'),
            ('target', int, 'target side in tokens'), ('marker', int, 'marker side in tokens'),
            ('clearance', int, 'other markers at least d + CLEARANCE from a target'),
            ('d_state', int, 'SSM state size of SS2D'),
            ('dt_min', float, 'SS2D initial step, low end'),
            ('dt_max', float, 'SS2D initial step, high end'),
            ('dilation', int, 'dilation factor of gated_cnn_dilated'),
            ('iters', int, 'iterations'), ('batch', int, 'images per iteration'),
            ('lr', float, 'peak AdamW lr'), ('weight_decay', float, 'AdamW weight decay'),
            ('warmup', float, 'warm-up fraction'),
            ('control_fraction', float, 'fraction of each batch at the controls'),
            ('eval_samples', int, 'held-out images per distance and seed'),
            ('curve_every', int, 'iterations between learning-curve points'),
            ('curve_samples', int, 'held-out images per curve point'),
            ('learned_threshold', float, 'accuracy at every control for a run to count')):
        default = getattr(d, name)
        p.add_argument('--' + name.replace('_', '-'), type=typ, default=default,
                       help=f'{help_} (default {default:g})' if isinstance(default, float)
                       else f'{help_} (default {default})')
    p.add_argument('--controls', type=int, nargs='+', default=list(d.controls),
                   help=f'control distances (default {" ".join(map(str, d.controls))})')
    p.add_argument('--background', choices=('noise', 'clean'), default=d.background)
    p.add_argument('--scan-backend', help='selective-scan backend (default: per device)')
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    from mambaout_dense.cli import apply_preset
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.preset:  # preset values replace defaults, not flags given on the command line
        apply_preset(parser, args, argv, PRESETS[args.preset])
    args.seeds = [s + args.seed_offset for s in args.seeds]
    return args


def settings_from(args: argparse.Namespace):
    import dataclasses

    from mambaout_dense.analysis.longrange import ProbeSettings
    names = {f.name for f in dataclasses.fields(ProbeSettings)}
    return ProbeSettings(**{k: (tuple(v) if k == 'controls' else v) for k, v in vars(args).items()
                            if k in names})


def plan_from(args: argparse.Namespace):
    from mambaout_dense.analysis.longrange import SweepPlan
    return SweepPlan(mixers=args.mixers, seeds=args.seeds, axes=args.axes, dim=args.dim,
                     d_grid=args.d_grid, distances=args.distances, l_grids=args.l_grids,
                     l_distance=args.l_distance, dims=args.dims, dim_grid=args.dim_grid,
                     pairs=args.pairs, target=args.target, marker=args.marker)


def local_fields(settings, mixers) -> Dict[str, Optional[float]]:
    """Radius (tokens) within which each mixer resolves positions; None: global."""
    from mambaout_dense.analysis.probe import local_field
    out = {}
    for m in mixers:
        r = local_field(m, settings.depth, dilation=settings.dilation)
        out[m] = r if math.isfinite(r) else None
    return out


def cost_of(settings, cells, work_dir: str, device: str, flops: bool) -> Dict[str, Any]:
    """Params, FLOPs and latency per (mixer, D, grid), cached in WORK_DIR/cost.json."""
    import torch

    from mambaout_dense.analysis.longrange import measure_cost
    from mambaout_dense.analysis.measure import environment
    path = osp.join(work_dir, 'cost.json')
    key = dict(depth=settings.depth, patch=settings.patch, d_state=settings.d_state,
               dilation=settings.dilation, device=device, flops=flops)
    cache = {}
    if osp.isfile(path):
        with open(path) as f:
            stored = json.load(f)
        if stored.get('key') == key:
            cache = {tuple(json.loads(k)): v for k, v in stored['rows'].items()}
            env = stored.get('environment')
    configs = sorted({(c.mixer, c.dim, c.grid) for c in cells})
    todo = [c for c in configs if tuple(c) not in cache]
    if todo:
        torch.set_num_threads(1)
        log(f'[longrange] measuring the cost of {len(todo)} configurations (1 thread, '
            f'{device})')
        cache.update({tuple(k): v for k, v in measure_cost(settings, todo, device,
                                                           flops=flops).items()})
        env = environment(device)
        from mambaout_dense.analysis.tables import write_json
        write_json(path, dict(key=key, environment=env,
                              rows={json.dumps(list(k)): v for k, v in cache.items()}))
    rows = [dict(mixer=m, dim=D, grid=g, **cache[(m, D, g)]) for m, D, g in configs]
    return dict(rows=rows, environment=env if configs else None)


def cost_markdown(rows: List[Dict[str, Any]], fields: Dict[str, Optional[float]]) -> str:
    lines = ['| mixer | D | grid | field | params | MFLOPs / image | latency ms / image |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        f = fields.get(r['mixer'])
        field = 'global' if f is None else f'{f:g}'
        flops = '' if r.get('flops') is None else f"{r['flops'] / 1e6:.1f}"
        lines.append(f"| {r['mixer']} | {r['dim']} | {r['grid']} | {field} | {r['params']:,} | "
                     f"{flops} | {r['latency_ms']:.2f} |")
    return '\n'.join(lines)


class Eta:
    """Predicts the seconds of a cell from the cells finished so far."""

    def __init__(self) -> None:
        self.done: Dict[tuple, List[float]] = {}

    def add(self, rec: Dict[str, Any]) -> None:
        self.done.setdefault((rec['mixer'], rec['dim'], rec['grid']), []).append(
            rec['train_s'] + rec['eval_s'])

    def predict(self, cell) -> float:
        key = (cell.mixer, cell.dim, cell.grid)
        if key in self.done:
            return sum(self.done[key]) / len(self.done[key])
        pool = [(k, sum(v) / len(v)) for k, v in self.done.items() if k[0] == cell.mixer] or \
            [(k, sum(v) / len(v)) for k, v in self.done.items()]
        if not pool:
            return math.nan
        # nearest measured configuration, scaled linearly in tokens and width
        (m, dim, g), secs = min(pool, key=lambda p: abs(p[0][2] - cell.grid)
                                + abs(p[0][1] - cell.dim) / 16)
        return secs * cell.grid**2 / g**2 * cell.dim / dim


def write_results(work_dir: str, settings, plan, records: List[Dict[str, Any]],
                  cost: Dict[str, Any], fields, wall_s: float, cells_run: int,
                  argv: List[str]) -> str:
    """results.json, results.md and the plots of the records so far; returns the md path.

    ``sessions`` lists every invocation that trained cells for these settings (command, cells,
    wall time, provenance), carried over from an earlier results.json of the same settings.
    """
    from mambaout_dense.analysis import longrange as lr
    from mambaout_dense.analysis.tables import write_json, write_text
    command = ' '.join(['python tools/analysis/longrange_experiment.py', *argv])
    sessions: List[Dict[str, Any]] = []
    plan_points: Dict[str, Any] = {}
    prev_planned: List[str] = []
    path = osp.join(work_dir, 'results.json')
    if osp.isfile(path):
        with open(path) as f:
            prev = json.load(f)
        if prev.get('settings_key') == settings.key():
            sessions = prev.get('sessions', [])
            plan_points = prev.get('plan', {}).get('points', {})
            prev_planned = prev.get('planned_cells', [])
    if cells_run:
        sessions.append(dict(command=command, cells_run=cells_run, wall_s=wall_s,
                             provenance=lr.provenance()))
    plan_d = plan.to_dict()
    # the axes of earlier sessions stay in the plan, so their tables remain
    points = {**plan_points, **plan_d['points']}
    plan_d['points'] = points
    plan_d['axes'] = list(points)
    planned = sorted(set(prev_planned) | {c.key() for c in plan.cells()})
    res = dict(settings=settings.to_dict(), settings_key=settings.key(), plan=plan_d,
               fields=fields, cost=cost['rows'], cost_environment=cost['environment'],
               planned_cells=planned, cells_planned=len(planned), records=records,
               summary=lr.summarise(records), sessions=sessions, provenance=lr.provenance(),
               command=command)
    write_json(path, res)
    write_text(osp.join(work_dir, 'results.md'), lr.render_markdown(res))
    if records:
        lr.plot_results(res, work_dir)
    return osp.join(work_dir, 'results.md')


def run_probe(args: argparse.Namespace, argv: List[str]) -> int:
    """The probe arm: plan, cost, training pool with progress and ETA, results."""
    from mambaout_dense.analysis import longrange as lr
    from mambaout_dense.errors import UsageError
    settings = settings_from(args)
    plan = plan_from(args)
    cells = plan.cells()  # a distance that does not fit its grid is a UsageError
    if args.jobs < 1 or not args.seeds:
        raise UsageError('--jobs must be >= 1 and --seeds must name at least one seed')
    work_dir = osp.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    store = lr.ResultStore(osp.join(work_dir, 'cells.jsonl'))
    done = store.load(settings.key())
    todo = [c for c in cells if c.key() not in done]
    points = plan.points()
    log(f'[longrange] axes {", ".join(points)}: {len(cells)} cells ('
        + ', '.join(f'{a}: {len(p)} point(s)' for a, p in points.items())
        + f'; seeds {" ".join(map(str, plan.seeds))}), {len(done)} done in {store.path}, '
        f'{len(todo)} to run; settings {settings.key()}')
    # the report covers every finished cell of these settings, also those of axes run by
    # earlier commands: fields and cost are for all of them, computed once
    earlier = [lr.Cell(r['mixer'], r['dim'], r['grid'], r['distance'], r['pairs'], r['seed'])
               for r in done.values()]
    fields = local_fields(settings, dict.fromkeys(
        [*plan.mixers, *plan.shortcut_mixers, *(c.mixer for c in earlier)]))
    if args.no_cost:
        cost = dict(rows=[], environment=None)
    else:
        cost = cost_of(settings, cells + earlier, work_dir, args.device, flops=True)
        log('[longrange] fields (radius in tokens), parameters, FLOPs and latency:\n'
            + cost_markdown(cost['rows'], fields))
    if args.dry_run:
        for axis, pts in points.items():
            log(f'[longrange] axis {axis}: ' + ', '.join(
                f'(D {D}, grid {g}, L {g * g}, L/6D {g * g / (6 * D):.2f}, d {d}, {p} pair(s))'
                for D, g, d, p in pts))
        return 0

    records = [r for r in done.values()]
    eta = Eta()
    for r in records:
        eta.add(r)
    start = time.perf_counter()
    n_total = len(records) + len(todo)
    if todo:
        payload = settings.to_dict()
        import multiprocessing as mp
        ctx = mp.get_context('spawn')  # fresh interpreters: no inherited thread pools
        with ProcessPoolExecutor(max_workers=min(args.jobs, len(todo)), mp_context=ctx,
                                 initializer=lr.exit_with_parent,
                                 initargs=(os.getpid(), )) as pool:
            pending = {}
            queue = list(todo)

            def submit():
                while queue and len(pending) < args.jobs:
                    c = queue.pop(0)
                    fut = pool.submit(lr.run_cell_job, payload,
                                      (c.mixer, c.dim, c.grid, c.distance, c.pairs, c.seed),
                                      args.threads, args.device)
                    pending[fut] = (c, time.perf_counter())

            submit()
            last_beat = time.perf_counter()
            while pending:
                finished, _ = wait(list(pending), timeout=60, return_when=FIRST_COMPLETED)
                now = time.perf_counter()
                for fut in finished:
                    c, t0 = pending.pop(fut)
                    try:
                        rec = fut.result()
                    except Exception as err:  # a failed cell is reported, the sweep goes on
                        log(f'[longrange] {c.key()} FAILED: {type(err).__name__}: {err}')
                        continue
                    store.append(rec)
                    records.append(rec)
                    eta.add(rec)
                    left = sum(eta.predict(x) for x in queue) + sum(
                        max(0.0, eta.predict(x) - (now - t)) for x, t in pending.values())
                    log(f"[longrange] [{len(records)}/{n_total}] {c.key()}: acc at d "
                        f"{rec['acc']:.3f} (controls "
                        + ', '.join(f"{rec['acc_by_distance'][str(d)]:.3f}"
                                    for d in rec['controls'])
                        + f"{'' if rec['learned'] else ', NOT LEARNED'}) "
                        f"{rec['train_s']:.0f}+{rec['eval_s']:.0f} s, "
                        f"{rec['s_per_iter']:.3f} s/it | elapsed {_fmt_time(now - start)}, ETA "
                        f"{_fmt_time(left / max(1, min(args.jobs, len(queue) + len(pending))))}")
                submit()
                if not finished and now - last_beat >= 60:
                    last_beat = now
                    running = ', '.join(f'{c.key()} ({now - t:.0f} s)'
                                        for c, t in pending.values())
                    log(f'[longrange] running: {running}; elapsed {_fmt_time(now - start)}')
    wall = time.perf_counter() - start
    all_cells = {c.key() for c in cells}
    md = write_results(work_dir, settings, plan, records, cost, fields, wall,
                       sum(1 for r in records if r['cell'] in all_cells and r['cell'] not in done),
                       argv)
    finished = sum(1 for r in records if r['cell'] in all_cells)
    log(f'[longrange] {finished}/{len(cells)} cells of this plan; wrote {md}, results.json and '
        f'the plots in {work_dir} ({_fmt_time(wall)} this session)')
    print(open(md).read())
    return 0 if finished == len(cells) else 1


def _arm_of(argv: List[str]) -> str:
    for i, a in enumerate(argv):
        if a == '--arm' and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith('--arm='):
            return a.split('=', 1)[1]
    return 'probe'


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _arm_of(argv) in DENSE_ARMS:
        from longrange_dense import run_dense  # tools/analysis/longrange_dense.py, beside this
        return run_dense(argv)
    args = parse_args(argv)
    return run_probe(args, argv)


if __name__ == '__main__':
    from mambaout_dense.cli import run_main
    sys.exit(run_main(main))
