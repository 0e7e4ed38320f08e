#!/usr/bin/env python
"""Long-range probe: does an SS2D mixer learn dependencies beyond a Gated CNN's receptive field?

Tests the long-sequence hypothesis of MambaOut (Yu & Wang, arXiv 2405.07992) against VMamba's SS2D
(Liu et al., arXiv 2401.10166). The probe network (mambaout_dense.analysis.probe: a 4x4 patch stem
and DEPTH blocks of width DIM at one stage) differs only in its token mixer: gated_cnn (MambaOut
block), ss2d (VMamba v2 block), hybrid (SS2D blocks, then Gated CNN blocks) and attention (global
self-attention), at matched parameters. The task (mambaout_dense.datasets.synthetic.longrange):
the tokens of a grey target take the colour (red/blue, balanced) of a marker exactly d tokens away.
Each run trains on half local (d = target side), half d, and is scored on the target tokens of
held-out sets at both distances; a run below --learned-threshold on the local set is flagged "not
learned" and left out of the statistics. Cells = mixer x (grid, d) x seed, where (grid, d) covers
a distance sweep on --d-grid and a far distance on every --l-grids grid (sequence-length axis).

Every finished cell is appended to WORK_DIR/cells.jsonl; a rerun with the same settings skips the
cells already there (a killed sweep continues). At the end, WORK_DIR/results.{json,md} and the
plots are written; tools/analysis/report.py --only longrange copies them into docs/ and README.

    python tools/analysis/longrange_experiment.py                 # the default sweep, 2 processes
    python tools/analysis/longrange_experiment.py --dry-run       # plan, fields, params, FLOPs
    python tools/analysis/longrange_experiment.py --preset gpu --work-dir work_dirs/longrange_gpu
    python tools/analysis/longrange_experiment.py --seeds 5 --iters 1000 --d-grid 32 \\
        --distances 6 12 18 24 30 --l-grids 8 16 32 64 --device cuda --jobs 4
"""
import argparse
import math
import os
import os.path as osp
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Dict, List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_MIXERS = ('gated_cnn', 'ss2d', 'hybrid', 'attention')
#: Backbones of the UperNet arm: configs/upernet_longrange_{name}_femto.py.
UPERNET_BACKBONES = ('mambaout', 'vmamba', 'hybrid')
#: Preset overrides for a GPU: larger images, more seeds, longer budgets.
PRESETS: Dict[str, Dict[str, Any]] = {
    'gpu': dict(d_grid=32, distances=[6, 9, 14, 20, 30], l_grids=[8, 16, 32, 64],
                seeds=5, iters=2000, batch=32, device='cuda', jobs=4),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return '?'
    seconds = int(round(seconds))
    return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def build_parser() -> argparse.ArgumentParser:
    from mambaout_dense.analysis.longrange import ProbeSettings
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
    g.add_argument('--mixers', nargs='+', choices=MIXERS, default=list(DEFAULT_MIXERS))
    g.add_argument('--seeds', type=int, default=3, help='seeds 0..N-1 per cell (default 3)')
    g.add_argument('--d-grid', type=int, default=12,
                   help='tokens per side of the distance sweep (default 12: 48-px images)')
    g.add_argument('--distances', type=int, nargs='+', default=[6, 8, 10],
                   help='distances of the distance sweep besides the local control, in tokens '
                   '(default 6 8 10)')
    g.add_argument('--l-grids', type=int, nargs='+', default=[8, 12, 16],
                   help='grids of the sequence-length sweep (default 8 12 16)')
    g.add_argument('--far-fraction', type=float, default=0.875,
                   help='far distance of an L-sweep grid g: round(FAR_FRACTION * g), at most '
                   'g - marker (default 0.875)')
    g.add_argument('--jobs', type=int, default=2, help='training processes (default 2)')
    g.add_argument('--threads', type=int, default=1, help='torch threads per process (default 1)')
    g.add_argument('--device', default='cpu', help='torch device of the training (default cpu)')
    g.add_argument('--dry-run', action='store_true',
                   help='print the plan, receptive fields, params and FLOPs, then stop')
    g.add_argument('--no-complexity', action='store_true', help='skip the FLOP count')
    g.add_argument('--arm', choices=('probe', 'upernet'), default='probe',
                   help='probe: the probe network (default); upernet: Femto-sized UperNet '
                   'backbones through tools/train.py on written data (slow on a CPU)')
    u = parser.add_argument_group('upernet arm (--arm upernet; --iters, --batch, --seeds, '
                                  '--distances, --threads, --learned-threshold apply too)')
    u.add_argument('--backbones', nargs='+', choices=UPERNET_BACKBONES,
                   default=list(UPERNET_BACKBONES))
    u.add_argument('--size', type=int, default=128,
                   help='image side in pixels (default 128: 32x32 stride-4 tokens)')
    u.add_argument('--num-train', type=int, default=2000, help='training images per distance')
    u.add_argument('--num-val', type=int, default=200, help='validation images per distance')
    p = parser.add_argument_group('probe and training (every cell)')
    p.add_argument('--dim', type=int, default=d.dim, help=f'width D (default {d.dim})')
    p.add_argument('--depth', type=int, default=d.depth, help=f'blocks (default {d.depth})')
    p.add_argument('--patch', type=int, default=d.patch, help='pixels per token side')
    p.add_argument('--target', type=int, default=d.target, help='target side in tokens')
    p.add_argument('--marker', type=int, default=d.marker, help='marker side in tokens')
    p.add_argument('--background', choices=('noise', 'clean'), default=d.background)
    p.add_argument('--d-state', type=int, default=d.d_state, help='SSM state size of SS2D')
    p.add_argument('--dt-min', type=float, default=d.dt_min, help='SS2D initial step, low end')
    p.add_argument('--dt-max', type=float, default=d.dt_max, help='SS2D initial step, high end')
    p.add_argument('--iters', type=int, default=d.iters, help=f'iterations (default {d.iters})')
    p.add_argument('--batch', type=int, default=d.batch, help=f'batch (default {d.batch})')
    p.add_argument('--lr', type=float, default=d.lr, help=f'peak AdamW lr (default {d.lr:g})')
    p.add_argument('--weight-decay', type=float, default=d.weight_decay)
    p.add_argument('--warmup', type=float, default=d.warmup, help='warm-up fraction')
    p.add_argument('--local-fraction', type=float, default=d.local_fraction,
                   help='fraction of each batch at the local distance (default 0.5)')
    p.add_argument('--curriculum', type=float, default=d.curriculum,
                   help='fraction of the iterations over which the far distance ramps up from '
                   'the local one (default 0: none)')
    p.add_argument('--eval-samples', type=int, default=d.eval_samples)
    p.add_argument('--learned-threshold', type=float, default=d.learned_threshold,
                   help='local accuracy a run must reach to count (default 0.9)')
    p.add_argument('--scan-backend', help='selective-scan backend (default: per device)')
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.preset:  # preset values replace defaults, not flags given on the command line
        given = {a.dest for a in parser._actions
                 if any(opt in (argv if argv is not None else sys.argv[1:])
                        or any(x.startswith(opt + '=') for x in
                               (argv if argv is not None else sys.argv[1:]))
                        for opt in a.option_strings)}
        for k, v in PRESETS[args.preset].items():
            if k not in given:
                setattr(args, k, v)
    return args


def settings_from(args: argparse.Namespace):
    from mambaout_dense.analysis.longrange import ProbeSettings
    return ProbeSettings(dim=args.dim, depth=args.depth, patch=args.patch, target=args.target,
                         marker=args.marker, background=args.background, d_state=args.d_state,
                         dt_min=args.dt_min, dt_max=args.dt_max, iters=args.iters,
                         batch=args.batch, lr=args.lr, weight_decay=args.weight_decay,
                         warmup=args.warmup, local_fraction=args.local_fraction,
                         curriculum=args.curriculum, eval_samples=args.eval_samples,
                         learned_threshold=args.learned_threshold,
                         scan_backend=args.scan_backend)


def plan_from(args: argparse.Namespace):
    from mambaout_dense.analysis.longrange import SweepPlan
    return SweepPlan(mixers=args.mixers, seeds=list(range(args.seeds)), d_grid=args.d_grid,
                     distances=args.distances, l_grids=args.l_grids,
                     far_fraction=args.far_fraction, target=args.target, marker=args.marker)


def complexity(settings, plan, grids: List[int], flops: bool) -> Dict[str, Any]:
    """Params (and FLOPs per image at each grid) of every mixer's probe."""
    import torch

    from mambaout_dense.analysis.probe import complexity_table, receptive_field
    kw = dict(dim=settings.dim, depth=settings.depth, patch=settings.patch,
              d_state=settings.d_state)
    out: Dict[str, Any] = dict(receptive_field={m: receptive_field(m, settings.depth)
                                                for m in plan.mixers}, rows=[])
    if not flops:
        from mambaout_dense.analysis.probe import ProbeNet
        ref = sum(p.numel() for p in ProbeNet('gated_cnn', **kw).parameters())
        for m in plan.mixers:
            n = sum(p.numel() for p in ProbeNet(m, **kw).parameters())
            out['rows'].append(dict(mixer=m, params=n, params_vs_gated=n / ref - 1.0))
        return out
    torch.set_num_threads(1)
    by_mixer: Dict[str, Dict[str, Any]] = {}
    for g in grids:
        for row in complexity_table(plan.mixers, g, **kw):
            r = by_mixer.setdefault(row['mixer'], dict(mixer=row['mixer'], params=row['params'],
                                                       params_vs_gated=row['params_vs_gated'],
                                                       flops={}))
            r['flops'][str(g)] = row['flops']
    out['rows'] = list(by_mixer.values())
    return out


class Eta:
    """Predicts the seconds of a cell from the cells finished so far."""

    def __init__(self) -> None:
        self.done: Dict[tuple, List[float]] = {}

    def add(self, rec: Dict[str, Any]) -> None:
        self.done.setdefault((rec['mixer'], rec['grid']), []).append(
            rec['train_s'] + rec['eval_s'])

    def predict(self, cell) -> float:
        key = (cell.mixer, cell.grid)
        if key in self.done:
            return sum(self.done[key]) / len(self.done[key])
        same_mixer = [(g, sum(v) / len(v)) for (m, g), v in self.done.items() if m == cell.mixer]
        pool = same_mixer or [(g, sum(v) / len(v)) for (m, g), v in self.done.items()]
        if not pool:
            return math.nan
        # nearest measured grid, scaled linearly in tokens
        g, secs = min(pool, key=lambda p: abs(p[0] - cell.grid))
        return secs * cell.grid**2 / g**2


def write_results(work_dir: str, settings, plan, records: List[Dict[str, Any]],
                  cx: Dict[str, Any], wall_s: float, cells_run: int, argv: List[str]) -> str:
    """results.json, results.md and the plots of the records so far; returns the md path.

    ``sessions`` lists every invocation that trained cells for these settings (command, cells,
    wall time), carried over from an earlier results.json of the same settings.
    """
    import json

    from mambaout_dense.analysis import longrange as lr
    from mambaout_dense.analysis.measure import environment
    from mambaout_dense.analysis.tables import write_json, write_text
    command = ' '.join(['python tools/analysis/longrange_experiment.py', *argv])
    sessions: List[Dict[str, Any]] = []
    path = osp.join(work_dir, 'results.json')
    if osp.isfile(path):
        with open(path) as f:
            prev = json.load(f)
        if prev.get('settings_key') == settings.key():
            sessions = prev.get('sessions', [])
    if cells_run:
        sessions.append(dict(command=command, cells_run=cells_run, wall_s=wall_s,
                             environment=environment()))
    rf = cx['receptive_field']
    far = {g: plan.far_distance(g) for g in plan.l_grids}
    res = dict(settings=settings.to_dict(), settings_key=settings.key(),
               plan=dict(mixers=list(plan.mixers), seeds=list(plan.seeds), d_grid=plan.d_grid,
                         distances=list(plan.distances), l_grids=list(plan.l_grids),
                         far_fraction=plan.far_fraction, far_by_grid=far),
               receptive_field={m: (v if math.isfinite(v) else None) for m, v in rf.items()},
               complexity=cx['rows'], cells_planned=len(plan.cells()), records=records,
               summary=lr.summarise(records), sessions=sessions, environment=environment(),
               command=sessions[-1]['command'] if sessions else command)
    write_json(osp.join(work_dir, 'results.json'), res)
    text = lr.render_markdown(res)
    write_text(osp.join(work_dir, 'results.md'), text)
    if records:
        lr.plot_results(records, settings, plan.d_grid, far, rf, work_dir)
    return osp.join(work_dir, 'results.md')


# ----------------------------------------------------------------------------- UperNet arm
def _upernet_options(args: argparse.Namespace, root: str, seed: int) -> List[str]:
    iters = args.iters
    warm = max(1, int(args.warmup * iters))
    opts = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'param_scheduler.0.end={warm}', f'param_scheduler.1.begin={warm}',
            f'param_scheduler.1.end={max(iters, warm + 1)}',
            f'default_hooks.checkpoint.interval={iters}',
            f'default_hooks.logger.interval={max(1, min(50, iters // 5))}',
            f'model.data_preprocessor.size=({args.size},{args.size})',
            f'train_dataloader.batch_size={args.batch}', f'randomness.seed={seed}']
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.dataset.data_root={root}',
                 f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    return opts


def _last_aacc(work_dir: str) -> Optional[float]:
    """aAcc (%) of the last validation in the newest run of a tools/train.py work dir."""
    from mambaout_dense.analysis.run_logs import scalar_records
    accs = [float(r['aAcc']) for r in scalar_records(work_dir, newest_only=True) if 'aAcc' in r]
    return accs[-1] if accs else None


def run_upernet_arm(args: argparse.Namespace, argv: List[str]) -> int:
    """UperNet + Femto backbones via tools/train.py, one set per distance, resumable."""
    import subprocess

    from mambaout_dense.analysis import longrange as lr
    from mambaout_dense.analysis.tables import write_json, write_text
    from mambaout_dense.datasets.synthetic.longrange import generate_longrange, min_distance
    work_dir = osp.abspath(args.work_dir)
    grid = args.size // args.patch
    local = min_distance(args.target, args.marker)
    distances = [local] + [d for d in args.distances if d != local]
    key = f'upernet-s{args.size}-i{args.iters}-b{args.batch}-n{args.num_train}-{args.num_val}'
    store = lr.ResultStore(osp.join(work_dir, 'upernet_cells.jsonl'))
    done = store.load(key)
    cells = [(b, d, s) for s in range(args.seeds) for d in distances for b in args.backbones]
    todo = [c for c in cells if f'upernet/{c[0]}/d{c[1]}/s{c[2]}' not in done]
    log(f'[longrange] UperNet arm: {len(cells)} cells, {len(done)} done, {len(todo)} to run '
        f'({args.size}-px images = {grid}x{grid} stride-4 tokens; d = {distances})')
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    start = time.perf_counter()
    for i, (backbone, d, seed) in enumerate(todo):
        root = osp.join(work_dir, 'data', f's{args.size}_d{d}_n{args.num_train}_{args.num_val}')
        if not osp.isfile(osp.join(root, 'longrange_meta.json')):
            generate_longrange(root, args.num_train, args.num_val, args.size, 0, d, args.patch,
                               args.target, args.marker, args.background, overwrite=True)
        cell_dir = osp.join(work_dir, 'upernet', f'{backbone}_d{d}_s{seed}')
        os.makedirs(cell_dir, exist_ok=True)
        cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'),
               osp.join(REPO_ROOT, 'configs', f'upernet_longrange_{backbone}_femto.py'),
               '--work-dir', cell_dir, '--cfg-options', *_upernet_options(args, root, seed)]
        t0 = time.perf_counter()
        with open(osp.join(cell_dir, 'train_stdout.log'), 'w') as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                cwd=REPO_ROOT).returncode
        acc = _last_aacc(cell_dir)
        wall = time.perf_counter() - t0
        if rc != 0 or acc is None:
            log(f'[longrange] upernet/{backbone}/d{d}/s{seed} FAILED (rc {rc}); see '
                f'{osp.join(cell_dir, "train_stdout.log")}')
            continue
        rec = dict(cell=f'upernet/{backbone}/d{d}/s{seed}', settings_key=key, mixer=backbone,
                   grid=grid, tokens=grid * grid, distance=d, seed=seed, acc=acc / 100,
                   wall_s=wall)
        store.append(rec)
        elapsed = time.perf_counter() - start
        log(f'[longrange] [{i + 1}/{len(todo)}] {rec["cell"]}: aAcc {acc:.1f}% in {wall:.0f} s'
            f' | ETA {_fmt_time(elapsed / (i + 1) * (len(todo) - i - 1))}')
    recs = list(store.load(key).values())
    by_local = {(r['mixer'], r['seed']): r['acc'] for r in recs if r['distance'] == local}
    for r in recs:  # a run counts when the local run of its backbone and seed learned
        r['acc_local'] = by_local.get((r['mixer'], r['seed']), math.nan)
        r['learned'] = bool(r['acc_local'] >= args.learned_threshold)
    rows = lr.summarise(recs)
    lines = ['| backbone | d (stride-4 tokens) | accuracy (learned/runs) |', '|---|---|---|']
    for r in sorted(rows, key=lambda r: (r['mixer'], r['distance'])):
        acc = r['acc']
        text = 'n/a' if not acc['n'] else f"{acc['mean']:.2f}" + (
            f" ± {acc['std']:.2f}" if acc['n'] > 1 else '')
        lines.append(f"| {r['mixer']} | {r['distance']} | {text} ({r['learned']}/{r['runs']}) |")
    table = '\n'.join(lines) if recs else 'no finished cells'
    write_json(osp.join(work_dir, 'upernet_results.json'), dict(
        key=key, size=args.size, distances=distances, records=recs,
        summary=lr.summarise(recs), command='python tools/analysis/longrange_experiment.py '
        + ' '.join(argv)))
    write_text(osp.join(work_dir, 'upernet_results.md'),
               f'UperNet arm: accuracy on the target pixels (aAcc), mean ± std over seeds whose '
               f'local run (d = {local}) reached {args.learned_threshold:g}.\n\n{table}\n')
    print(table)
    return 0 if len(recs) == len(cells) else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.arm == 'upernet':
        return run_upernet_arm(args, argv)
    from mambaout_dense.analysis import longrange as lr
    from mambaout_dense.errors import UsageError
    settings = settings_from(args)
    plan = plan_from(args)
    try:
        cells = plan.cells()
    except ValueError as err:
        log(f'error: {err}')
        return 2
    if args.jobs < 1 or args.seeds < 1:
        log('error: --jobs and --seeds must be >= 1')
        return 2
    work_dir = osp.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    store = lr.ResultStore(osp.join(work_dir, 'cells.jsonl'))
    done = store.load(settings.key())
    todo = [c for c in cells if c.key() not in done]
    grids = sorted({c.grid for c in cells})
    log(f'[longrange] {len(cells)} cells ({len(plan.mixers)} mixers x '
        f'{len(plan.grid_distances())} (grid, d) x {len(plan.seeds)} seeds), {len(done)} done in '
        f'{store.path}, {len(todo)} to run; settings {settings.key()}')
    try:
        cx = complexity(settings, plan, grids, flops=not args.no_complexity)
    except UsageError as err:
        log(f'error: {err}')
        return 2
    log('[longrange] receptive fields, parameters and FLOPs:\n'
        + lr.complexity_markdown(cx, settings.dim))
    log('[longrange] (grid, d): ' + ', '.join(
        f'({g}, {d}{"*" if d > cx["receptive_field"].get("gated_cnn", math.inf) else ""})'
        for g, d in plan.grid_distances()) + '   (* beyond the Gated-CNN radius)')
    if args.dry_run:
        return 0

    records = [r for c in cells for r in [done.get(c.key())] if r is not None]
    eta = Eta()
    for r in records:
        eta.add(r)
    start = time.perf_counter()
    n_total = len(cells)
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
                                      (c.mixer, c.grid, c.distance, c.seed), args.threads,
                                      args.device)
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
                    elapsed = now - start
                    log(f"[longrange] [{len(records)}/{n_total}] {c.key()}: acc "
                        f"{rec['acc']:.3f} (local {rec['acc_local']:.3f}"
                        f"{'' if rec['learned'] else ', NOT LEARNED'}) "
                        f"{rec['train_s']:.0f}+{rec['eval_s']:.0f} s, "
                        f"{rec['s_per_iter']:.3f} s/it | elapsed {_fmt_time(elapsed)}, ETA "
                        f"{_fmt_time(left / max(1, min(args.jobs, len(queue) + len(pending))))}")
                submit()
                if not finished and now - last_beat >= 60:
                    last_beat = now
                    running = ', '.join(f'{c.key()} ({now - t:.0f} s)'
                                        for c, t in pending.values())
                    log(f'[longrange] running: {running}; elapsed {_fmt_time(now - start)}')
    wall = time.perf_counter() - start
    md = write_results(work_dir, settings, plan, records, cx, wall, len(records) - len(done),
                       argv)
    log(f'[longrange] {len(records)}/{n_total} cells; wrote {md}, results.json and the plots '
        f'in {work_dir} ({_fmt_time(wall)} this session)')
    print(open(md).read())
    return 0 if len(records) == n_total else 1


if __name__ == '__main__':
    sys.exit(main())
