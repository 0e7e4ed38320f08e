#!/usr/bin/env python
"""The main job, measured: the quickstart Mask R-CNN on the synthetic COCO set.

Two measurements, both through ``tools/train.py`` as a user runs it:

1. **Time per iteration against a baseline checkout** (``--baseline-tree DIR``, e.g. a
   ``git worktree`` of the commit before the speed work): the same config name, the same data,
   ``--compare-iters`` iterations per run, the two trees run in turns (``--rounds`` each), and
   the median seconds per iteration of each (mmengine's per-iteration ``time``, the first 5
   iterations skipped). Both trees compute the same numbers (the parallel RoIAlign equals mmcv's,
   the Gated CNN block equals the official formula), so AP at equal iterations is unchanged by
   construction; the test suite checks those equalities.
2. **Time to AP**: the full schedule of the config with validation every ``--val-interval``
   iterations; each evaluation is placed at the wall-clock time of its iteration (evaluation time
   excluded from the training clock, reported separately). Writes ``docs/main_job/`` (JSON, PNG)
   and the results section ``main-job``, with the AP reached within ``--budget-min`` minutes
   against the target (bbox and segm AP >= 0.5; mIoU >= 80 for ``--task seg``).
3. **The old recipe beside it** (``--old-tree DIR``, a ``git worktree`` of the commit before the
   recipe sweep of ``benchmarks/main_job_sweep.py``): the same config name run in that tree on
   this tree's data, drawn on the same time axis.

    git worktree add /tmp/old <commit before the sweep>
    python benchmarks/main_job.py --task det --val-interval 200 --old-tree /tmp/old
    python benchmarks/main_job.py --task seg --val-interval 200 --old-tree /tmp/old
    python benchmarks/main_job.py --skip-curve --baseline-tree /tmp/baseline   # speed only
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: The quickstart's two jobs (``bash tools/quickstart.sh [det|seg]``): config, data, generator
#: arguments (the quickstart's own), metrics as (log key, column), results section.
TASKS = {
    'det': dict(config='configs/mask_rcnn_mambaout_femto_synthetic.py',
                data='data/synthetic_coco',
                gen=['coco', '--train', '2000', '--val', '200', '--size', '320', '--seed', '0'],
                metrics=(('coco/bbox_mAP', 'bbox AP'), ('coco/bbox_mAP_50', 'bbox AP50'),
                         ('coco/segm_mAP', 'segm AP'), ('coco/segm_mAP_50', 'segm AP50')),
                targets={'coco/bbox_mAP': 0.5, 'coco/segm_mAP': 0.5},
                section='main-job', title='Mask R-CNN MambaOut-Femto from scratch on the embedded '
                'synthetic COCO set (2000 train / 200 val images of 320 px, resized to 256, '
                'batch 4)'),
    'seg': dict(config='configs/upernet_mambaout_femto_synthetic.py',
                data='data/synthetic_ade',
                gen=['ade', '--train', '1000', '--val', '100', '--size', '256', '--seed', '0'],
                metrics=(('mIoU', 'mIoU'), ('mAcc', 'mAcc'), ('aAcc', 'aAcc')),
                targets={'mIoU': 80.0},
                section='main-job-seg', title='UperNet MambaOut-Femto from scratch on the embedded '
                'synthetic ADE20K set (1000 train / 100 val images of 256 px, batch 4)'),
}
CONFIG = TASKS['det']['config']
DATA = TASKS['det']['data']


def ensure_data(python: str, task: str) -> None:
    """Generate the quickstart's data set once (the quickstart's own command line)."""
    spec = TASKS[task]
    if not osp.isfile(osp.join(ROOT, spec['data'], '.complete')):
        gen = spec['gen'][:1] + ['--out', spec['data']] + spec['gen'][1:]
        subprocess.run([python, osp.join(ROOT, 'tools', 'make_synthetic.py'), *gen], cwd=ROOT,
                       check=True)
        open(osp.join(ROOT, spec['data'], '.complete'), 'w').close()


def records(work_dir: str) -> List[dict]:
    """Every record of the newest run in ``work_dir``."""
    from mambaout_dense.analysis.run_logs import scalar_records
    return scalar_records(work_dir, newest_only=True)


def data_options(task: str = 'det') -> List[str]:
    """The task config's data paths made absolute (for a run from another tree)."""
    root = osp.join(ROOT, TASKS[task]['data'])
    options = [f'{split}_dataloader.dataset.data_root={root}/' for split in ('train', 'val',
                                                                              'test')]
    if task == 'det':
        options += [f'{split}_evaluator.ann_file={root}/annotations/instances_val2017.json'
                    for split in ('val', 'test')]
    return options


def train(tree: str, config: str, work_dir: str, options: List[str],
          env: Dict[str, str]) -> float:
    """Run tools/train.py of ``tree`` on ``config``; returns the wall time."""
    cmd = [sys.executable, osp.join(tree, 'tools', 'train.py'), osp.join(tree, config),
           '--work-dir', work_dir] + (['--cfg-options', *options] if options else [])
    start = time.perf_counter()
    with open(osp.join(work_dir + '.log'), 'w') as log:
        subprocess.run(cmd, cwd=tree, env=dict(env, PYTHONPATH=tree), stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def seconds_per_iteration(work_dir: str, skip: int = 5) -> float:
    times = [r['time'] for r in records(work_dir) if 'time' in r and r.get('iter', 0) > skip]
    return statistics.median(times)


def compare(baseline: str, iters: int, rounds: int, out: str) -> dict:
    """Median s/iter of the baseline tree and of this one, run in turns."""
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    options = data_options('det') + [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters + 1}',
        'default_hooks.logger.interval=1', f'default_hooks.checkpoint.interval={iters + 1}']
    per: Dict[str, List[float]] = {'baseline': [], 'this tree': []}
    for r in range(rounds):
        for name, tree in (('baseline', baseline), ('this tree', ROOT)):
            work = osp.join(out, f'compare_{name.replace(" ", "_")}_{r}')
            train(tree, CONFIG, work, options, env)
            per[name].append(seconds_per_iteration(work))
            print(f'[main_job] {name} round {r + 1}: {per[name][-1]:.3f} s/iter', flush=True)
    base, ours = statistics.median(per['baseline']), statistics.median(per['this tree'])
    commit = subprocess.run(['git', '-C', baseline, 'rev-parse', '--short', 'HEAD'],
                            capture_output=True, text=True).stdout.strip()
    return dict(baseline_commit=commit, iters=iters, rounds=rounds, baseline_s=base,
                ours_s=ours, speedup=base / ours, runs=per,
                date=time.strftime('%Y-%m-%d'), recipe_commit=subprocess.run(
                    ['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True,
                    text=True).stdout.strip())


def curve(task: str, val_interval: int, out: str, tree: str = ROOT, name: str = 'curve') -> dict:
    """The full schedule of ``task`` in ``tree`` with validation every ``val_interval``
    iterations (another tree reads this tree's data)."""
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    work = osp.join(out, f'{name}_{task}')
    options = [f'train_cfg.val_interval={val_interval}', 'default_hooks.logger.interval=10']
    if tree != ROOT:
        options += data_options(task)
    wall = train(tree, TASKS[task]['config'], work, options, env)
    result = parse_curve(task, work, wall)
    result['commit'] = subprocess.run(['git', '-C', tree, 'rev-parse', '--short', 'HEAD'],
                                      capture_output=True, text=True).stdout.strip()
    result['date'] = time.strftime('%Y-%m-%d %H:%M')
    return result


def parse_curve(task: str, work: str, wall_s: float) -> dict:
    """Scores against training time from a run's log records.

    Training records carry ``iter`` and ``time`` (seconds per iteration over the logging
    window); a validation record follows the training records of its iteration, so it is placed
    at the last iteration seen and at the training time summed up to there.
    """
    keys = [k for k, _ in TASKS[task]['metrics']]
    points, losses, times = [], [], []
    elapsed, last_iter = 0.0, 0
    for r in records(work):
        if 'time' in r and 'iter' in r:
            elapsed += r['time'] * (r['iter'] - last_iter)
            last_iter = r['iter']
            times.append(r['time'])
            if 'loss' in r:
                losses.append((r['iter'], r['loss']))
        elif keys[0] in r:
            points.append(dict(iter=last_iter, train_min=elapsed / 60,
                               **{k: r.get(k) for k in keys}))
            per_class = {k[len('IoU.'):]: v for k, v in r.items() if k.startswith('IoU.')}
            if per_class:  # mambaout_dense.ClassIoUMetric's IoU.<class>
                points[-1]['per_class_iou'] = per_class
    return dict(points=points, wall_min=wall_s / 60, train_min=elapsed / 60,
                s_per_iter=statistics.median(times), losses=losses)


def plot(result: dict, task: str, path: str) -> None:
    """Headline scores against training minutes: this recipe, and the old one (dashed) when
    it was run, on the same time axis."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for which, style in (('curve', 'o-'), ('old_curve', 's--')):
        cur = result.get(which)
        if not cur:
            continue
        tag = 'this recipe' if which == 'curve' else f"old recipe ({cur.get('commit', '?')})"
        pts = cur['points']
        for key, label in TASKS[task]['metrics']:
            if label.endswith(('AP', 'mIoU')):  # the headline metrics
                ax.plot([p['train_min'] for p in pts], [p[key] for p in pts], style,
                        label=f'{label}, {tag}')
    ax.set_xlabel('training minutes (evaluation excluded)')
    ax.set_ylabel('score on the synthetic val set')
    ax.set_title(f'Quickstart ({task}): {osp.basename(TASKS[task]["config"])}', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def score_at(points: List[dict], minutes: float) -> Optional[dict]:
    """The last evaluation reached within ``minutes`` of training."""
    within = [p for p in points if p['train_min'] <= minutes]
    return within[-1] if within else None


def readme_text(task: str, result: dict, budget_min: float) -> str:
    """The results section of ``task`` from the stored results."""
    from mambaout_dense.analysis.measure import environment
    from mambaout_dense.analysis.tables import markdown_table
    spec = TASKS[task]
    command = 'bash tools/quickstart.sh' + (' seg' if task == 'seg' else '')
    lines = [f'### Quickstart {"detection" if task == "det" else "segmentation"} '
             '(`benchmarks/main_job.py`)', '',
             f"`{command}`: {spec['title']}, `{spec['config']}`; {environment('cpu')}.", '',
             'The recipe was chosen on images held out from the training split '
             '(`benchmarks/main_job_sweep.py`, [docs/main_job/sweep.md](main_job/sweep.md)).', '']
    cmp_ = result.get('compare')
    if cmp_:
        met = 'met' if cmp_['speedup'] >= 2 else '**missed**'
        lines += [f"Time per iteration against the code before the speed work (commit "
                  f"`{cmp_['baseline_commit']}`), same data, {cmp_['iters']} iterations per run, "
                  f"{cmp_['rounds']} runs each in turns: **{cmp_['baseline_s']:.2f} s -> "
                  f"{cmp_['ours_s']:.2f} s per iteration, {cmp_['speedup']:.2f}x faster** "
                  f'(target: half the time, {met}; measured '
                  + (f"on {cmp_['date']} at commit `{cmp_['recipe_commit']}`"
                     if 'date' in cmp_ else 'in an earlier session, on that machine, with the '
                     'recipe of that time') + '). Both compute the same numbers (the parallel '
                  "RoIAlign equals mmcv's, the Gated CNN block the official formula; both "
                  'tested), so the AP at equal iterations is unchanged.', '']
    cur = result.get('curve')
    if cur:
        best = score_at(cur['points'], budget_min)
        lines += [f"Full schedule: {cur['s_per_iter']:.2f} s per iteration, "
                  f"{cur['train_min']:.1f} training minutes ({cur['wall_min']:.1f} minutes of "
                  'wall time with the evaluations and start-up).', '',
                  markdown_table([dict({'iteration': p['iter'],
                                        'training min': round(p['train_min'], 1)},
                                       **{label: p[key] for key, label in spec['metrics']})
                                  for p in cur['points']]), '']
        if best:
            scores = ', '.join(f'{label} {best[key]:.3f}' for key, label in spec['metrics'])
            met = all(best[k] is not None and best[k] >= v for k, v in spec['targets'].items())
            goal = ' and '.join(f'{dict(spec["metrics"])[k]} >= {v:g}'
                                for k, v in spec['targets'].items())
            lines.append(f'Reached within {budget_min:g} training minutes: {scores} (iteration '
                         f"{best['iter']}); target {goal}: **{'met' if met else 'missed'}**.")
            if best.get('per_class_iou'):
                lines += ['', f"IoU per class at iteration {best['iter']}: " + ', '.join(
                    f'{name} {value:.1f}' for name, value in best['per_class_iou'].items())
                    + '.']
        old = result.get('old_curve')
        if old:
            end = old['points'][-1]
            same = score_at(cur['points'], old['train_min'])
            head = ', '.join(f'{label} {end[key]:.3f}' for key, label in spec['metrics'][:2])
            when = f"on {old['date']}" if old.get('date') else 'in an earlier session'
            lines += ['', f"The old recipe (commit `{old['commit']}`, the same config name), run "
                      f"on this 2-core machine {when}: {old['s_per_iter']:.2f} s per "
                      f"iteration; it ends after {old['train_min']:.1f} training minutes "
                      f"(iteration {end['iter']}) at {head}."
                      + (f" This recipe at the same training time ({same['train_min']:.1f} min, "
                         f"iteration {same['iter']}): " + ', '.join(
                             f'{label} {same[key]:.3f}' for key, label in spec['metrics'][:2])
                         + '.' if same else '')]
        lines += ['', f'![time to score](main_job/time_to_score_{task}.png)']
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=sorted(TASKS), default='det')
    parser.add_argument('--baseline-tree', help='checkout of the code to compare against (det)')
    parser.add_argument('--compare-iters', type=int, default=40)
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--val-interval', type=int, default=100)
    parser.add_argument('--budget-min', type=float, default=15.0)
    parser.add_argument('--old-tree', help='checkout of the recipe before the sweep: its curve '
                        'is run and drawn beside this one')
    parser.add_argument('--skip-curve', action='store_true')
    parser.add_argument('--reparse', action='store_true',
                        help='re-read the stored run of the curve instead of training again')
    parser.add_argument('--out', default=osp.join(ROOT, 'work_dirs', 'main_job'))
    parser.add_argument('--no-results', action='store_true')
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    os.makedirs(args.out, exist_ok=True)
    ensure_data(sys.executable, args.task)
    docs = osp.join(ROOT, 'docs', 'main_job')
    path = osp.join(docs, f'main_job_{args.task}.json')
    result = {}
    if osp.isfile(path):
        with open(path) as f:
            result = json.load(f)
    if args.baseline_tree and args.task == 'det':
        result['compare'] = compare(osp.abspath(args.baseline_tree), args.compare_iters,
                                    args.rounds, args.out)
    if args.reparse and 'curve' in result:
        result['curve'] = parse_curve(args.task, osp.join(args.out, f'curve_{args.task}'),
                                      result['curve']['wall_min'] * 60)
    elif not args.skip_curve:
        result['curve'] = curve(args.task, args.val_interval, args.out)
    if args.old_tree:
        result['old_curve'] = curve(args.task, args.val_interval, args.out,
                                    osp.abspath(args.old_tree), 'old_curve')
    if 'curve' in result:
        os.makedirs(docs, exist_ok=True)
        plot(result, args.task, osp.join(docs, f'time_to_score_{args.task}.png'))
    from common import publish

    from mambaout_dense.analysis.tables import write_json
    write_json(path, result)
    text = readme_text(args.task, result, args.budget_min)
    print(text)
    if not args.no_results:
        publish(TASKS[args.task]['section'], text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
