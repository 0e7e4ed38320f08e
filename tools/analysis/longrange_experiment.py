#!/usr/bin/env python
"""Long-range experiment: train Femto-sized MambaOut / VMamba / hybrid backbones on both variants.

Separates "long sequence" from "long-range dependency" (MambaOut, arXiv 2405.07992): on the
synthetic task of mambaout_dense.datasets.synthetic.longrange a blob's class is decided by a cue
far away ('far') or inside the blob ('local', the control; same images). Each (backbone, variant)
run trains UperNet through tools/train.py for a wall-clock budget: a short calibration run per
backbone measures seconds per iteration and the fixed cost (start-up, validation), and max_iters
is set so the run fits --minutes. Writes results.json and results.md (mIoU per variant and
backbone, per-class IoU, and the score of a cue-blind oracle) into --work-dir.

    python tools/analysis/longrange_experiment.py --generate                      # 20 min each
    python tools/analysis/longrange_experiment.py --generate --minutes 1 --size 128 \\
        --num-train 64 --num-val 16 --batch-size 2 --work-dir work_dirs/longrange_tiny
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BACKBONES = ('mambaout', 'vmamba', 'hybrid')
CLASSES = ('cue_a', 'cue_b', 'background')


def config_path(backbone: str) -> str:
    return osp.join(REPO_ROOT, 'configs', f'upernet_longrange_{backbone}_femto.py')


def ensure_data(args: argparse.Namespace, variant: str) -> Dict[str, Any]:
    """Generate (or reuse, when its metadata matches) the set of one variant."""
    from mambaout_dense.datasets.synthetic.longrange import generate_longrange
    root = osp.join(args.data_root, variant)
    meta_file = osp.join(root, 'longrange_meta.json')
    wanted = dict(variant=variant, size=args.size, seed=args.seed, num_train=args.num_train,
                  num_val=args.num_val)
    if osp.isfile(meta_file):
        with open(meta_file) as f:
            meta = json.load(f)
        meta.pop('images', None)
        same = all(meta.get(k) == v for k, v in wanted.items())
        if args.min_cue_distance is not None:
            same = same and meta.get('requested_min_cue_distance') == args.min_cue_distance
        if same:
            return dict(meta, root=osp.abspath(root))
        if not args.generate:
            raise SystemExit(f'error: {root} holds another set ({meta_file}); pass --generate '
                             'to rewrite it')
    elif not args.generate:
        raise SystemExit(f'error: no dataset at {root}; pass --generate (or make it with '
                         'tools/make_synthetic.py longrange)')
    print(f'generating {variant}: {args.num_train}+{args.num_val} images of {args.size}px '
          f'in {root}', flush=True)
    info = generate_longrange(root, args.num_train, args.num_val, args.size, args.seed, variant,
                              args.min_cue_distance, overwrite=True)
    return {k: v for k, v in info.items() if k != 'images'}


def schedule_options(iters: int) -> List[str]:
    warmup = min(50, max(1, iters // 10))
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'param_scheduler.0.end={warmup}', f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.end={max(iters, warmup + 1)}',
            f'default_hooks.checkpoint.interval={iters}']


def data_options(args: argparse.Namespace, root: str) -> List[str]:
    opts = [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]
    opts += [f'model.data_preprocessor.size=({args.size},{args.size})',
             f'train_dataloader.batch_size={args.batch_size}']
    workers = args.workers
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.num_workers={workers}',
                 f'{split}_dataloader.persistent_workers={workers > 0}']
    return opts


def run_train(args: argparse.Namespace, backbone: str, root: str, iters: int, work_dir: str,
              log_interval: int, timeout: float) -> Dict[str, Any]:
    """Run tools/train.py once; returns wall time, return code and the parsed metrics."""
    os.makedirs(work_dir, exist_ok=True)
    cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'), config_path(backbone),
           '--work-dir', work_dir, '--cfg-options', *schedule_options(iters),
           *data_options(args, root), f'default_hooks.logger.interval={log_interval}',
           f'randomness.seed={args.seed}', *(args.cfg_options or [])]
    env = dict(os.environ)
    if args.threads:
        env['OMP_NUM_THREADS'] = str(args.threads)
    start = time.perf_counter()
    with open(osp.join(work_dir, 'train_stdout.log'), 'w') as log:
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  timeout=timeout, cwd=REPO_ROOT)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = 124
    wall = time.perf_counter() - start
    return dict(rc=rc, wall_s=wall, **parse_run(work_dir))


def parse_run(work_dir: str) -> Dict[str, Any]:
    """Last train 'time', final validation metrics and per-class IoU of a run's newest log."""
    runs = sorted(d for d in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    out: Dict[str, Any] = {}
    if not runs:
        return out
    train_times = []
    with open(runs[-1]) as f:
        for line in f:
            rec = json.loads(line)
            if 'mIoU' in rec:
                out.update(mIoU=rec['mIoU'], mAcc=rec.get('mAcc'), aAcc=rec.get('aAcc'))
            elif 'loss' in rec and 'time' in rec:
                train_times.append(rec['time'])
                out['final_loss'] = rec['loss']
    if train_times:
        out['sec_per_iter'] = train_times[-1]
    logs = glob.glob(osp.join(osp.dirname(osp.dirname(runs[-1])), '*.log'))
    if logs:
        with open(logs[0]) as f:
            text = f.read()
        iou = {}
        for name in CLASSES:
            found = re.findall(rf'\|\s*{name}\s*\|\s*([\d.]+|nan)\s*\|', text)
            if found:
                iou[name] = float(found[-1])
        out['iou'] = iou
    return out


def calibrate(args: argparse.Namespace, backbone: str, root: str) -> Dict[str, float]:
    """Seconds per iteration and fixed cost (start-up + validation) of one backbone."""
    iters = args.calib_iters
    work_dir = osp.join(args.work_dir, f'calibrate_{backbone}')
    res = run_train(args, backbone, root, iters, work_dir, log_interval=1,
                    timeout=max(600.0, 10 * 60 * args.minutes))
    if res['rc'] != 0 or 'sec_per_iter' not in res:
        raise SystemExit(f'error: calibration of {backbone} failed (rc {res["rc"]}); see '
                         f'{osp.join(work_dir, "train_stdout.log")}')
    fixed = max(0.0, res['wall_s'] - iters * res['sec_per_iter'])
    return dict(sec_per_iter=res['sec_per_iter'], fixed_s=fixed)


def backbone_params(backbone: str) -> Dict[str, int]:
    from mmengine.config import Config

    from mambaout_dense.builder import build_model
    model = build_model(Config.fromfile(config_path(backbone)))
    return dict(params=sum(p.numel() for p in model.parameters()),
                backbone_params=sum(p.numel() for p in model.backbone.parameters()))


def results_markdown(rows: List[Dict[str, Any]], refs: Dict[str, Dict[str, float]],
                     data: Dict[str, Dict[str, Any]], minutes: float,
                     max_iters: Optional[int] = None) -> str:
    variants = list(dict.fromkeys(r['variant'] for r in rows))
    backbones = list(dict.fromkeys(r['backbone'] for r in rows))
    budget = (f'a fixed {max_iters} iterations per run' if max_iters else
              f'a budget of {minutes:g} min per run (start-up and validation included)')
    lines = [f'UperNet (no pyramid pooling), Femto-sized backbones from scratch, CPU, {budget}.',
             '']
    for v in variants:
        d = data.get(v, {})
        lines.append(f"- `{v}`: {d.get('num_train')} train / {d.get('num_val')} val images of "
                     f"{d.get('size')}px; realised distance from the deciding cue to the pixels it "
                     f"labels: {'>=' if v == 'far' else '<='} {d.get('cue_distance', 0):.1f} px")
    lines += ['', '| backbone | backbone params | ' + ' | '.join(
        f'mIoU {v}' for v in variants) + ' | ' + ' | '.join(
        f'IoU cue_a / cue_b / bg ({v})' for v in variants) + ' | iterations | s/iter |',
        '|' + '---|' * (4 + 2 * len(variants))]
    for b in backbones:
        by_v = {r['variant']: r for r in rows if r['backbone'] == b}
        first = next(iter(by_v.values()))

        def miou(r: Optional[Dict[str, Any]]) -> str:
            return '' if not r or r.get('mIoU') is None else f"{r['mIoU']:.1f}"

        def ious(r: Optional[Dict[str, Any]]) -> str:
            iou = (r or {}).get('iou') or {}
            return ' / '.join(f'{iou[c]:.1f}' if c in iou else '-' for c in CLASSES)

        lines.append(f"| {b} | {first['backbone_params'] / 1e6:.2f} M | " +
                     ' | '.join(miou(by_v.get(v)) for v in variants) + ' | ' +
                     ' | '.join(ious(by_v.get(v)) for v in variants) +
                     f" | {'/'.join(str(by_v[v]['iters']) for v in variants if v in by_v)} | "
                     f"{first.get('sec_per_iter', float('nan')):.2f} |")
    lines.append('| cue-blind oracle (perfect blobs, one class) | - | ' +
                 ' | '.join(f"{refs[v]['mIoU']:.1f}" for v in variants) + ' | ' +
                 ' | '.join(' / '.join(f'{refs[v][c]:.1f}' for c in CLASSES)
                            for v in variants) + ' | - | - |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 2)[2])
    parser.add_argument('--minutes', type=float, default=20.0,
                        help='wall-clock budget per (backbone, variant) run (default 20)')
    parser.add_argument('--max-iters', type=int,
                        help='fixed iteration count instead of the time budget')
    parser.add_argument('--backbones', nargs='+', choices=BACKBONES, default=list(BACKBONES))
    parser.add_argument('--variants', nargs='+', choices=('far', 'local'),
                        default=['far', 'local'])
    parser.add_argument('--generate', action='store_true',
                        help='write the datasets (reused when their metadata already matches)')
    parser.add_argument('--data-root', default='data/synthetic_longrange',
                        help='datasets go to DATA_ROOT/{far,local}')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--size', type=int, default=192, help='image side in pixels')
    parser.add_argument('--min-cue-distance', type=float,
                        help='far variant: least cue-to-blob distance (default size / 2)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--workers', type=int, default=2, help='dataloader workers')
    parser.add_argument('--threads', type=int, help='OMP_NUM_THREADS of the training runs')
    parser.add_argument('--calib-iters', type=int, default=5,
                        help='iterations of the calibration run per backbone')
    parser.add_argument('--work-dir', default='work_dirs/longrange')
    parser.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE',
                        help='passed on to tools/train.py')
    args = parser.parse_args(argv)
    args.data_root = osp.abspath(args.data_root)
    args.work_dir = osp.abspath(args.work_dir)
    os.makedirs(args.work_dir, exist_ok=True)

    from mambaout_dense.datasets.synthetic.longrange import reference_miou
    data = {v: ensure_data(args, v) for v in args.variants}
    refs = {v: reference_miou(osp.join(data[v]['root'], 'annotations', 'validation'))
            for v in args.variants}
    rows: List[Dict[str, Any]] = []
    budget = 60.0 * args.minutes
    for backbone in args.backbones:
        params = backbone_params(backbone)
        if args.max_iters:
            iters, calib = args.max_iters, {}
        else:
            calib = calibrate(args, backbone, data[args.variants[0]]['root'])
            iters = max(1, int((budget - calib['fixed_s']) / calib['sec_per_iter']))
            print(f'{backbone}: {calib["sec_per_iter"]:.2f} s/iter, fixed cost '
                  f'{calib["fixed_s"]:.0f} s -> {iters} iterations per {args.minutes:g} min',
                  flush=True)
        for variant in args.variants:
            work_dir = osp.join(args.work_dir, f'{backbone}_{variant}')
            print(f'training {backbone} on {variant} for {iters} iterations -> {work_dir}',
                  flush=True)
            res = run_train(args, backbone, data[variant]['root'], iters, work_dir,
                            log_interval=max(1, min(10, iters // 5)),
                            timeout=max(3 * budget, 600.0))
            row = dict(backbone=backbone, variant=variant,
                       config=osp.relpath(config_path(backbone), REPO_ROOT), iters=iters,
                       calibration=calib, reference_mIoU=refs[variant]['mIoU'],
                       work_dir=work_dir, **params, **res)
            row['status'] = 'ok' if res['rc'] == 0 and 'mIoU' in res else 'failed'
            rows.append(row)
            print(f"  {row['status']}: mIoU {row.get('mIoU')} in {row['wall_s']:.0f} s",
                  flush=True)
            with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
                json.dump(dict(minutes=args.minutes, max_iters=args.max_iters, data=data,
                               reference=refs, runs=rows), f, indent=1)
    md = results_markdown(rows, refs, data, args.minutes, args.max_iters)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(md + '\n')
    print('\n' + md)
    print(f'\nwrote {osp.join(args.work_dir, "results.json")} and results.md')
    return 0 if all(r['status'] == 'ok' for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
