#!/usr/bin/env python
"""Long-range task through UperNet and Mask R-CNN: does SS2D's edge survive the real stack?

Tests the long-sequence hypothesis of MambaOut (Yu & Wang, arXiv 2405.07992) with the toolkit's
own detectors and segmentors. Three Femto backbones of matched parameter count (MambaOut-Femto,
a VMamba of its widths, the hybrid with SS2D in stages 1-2) are trained from scratch through
tools/train.py (configs/{upernet,mask_rcnn}_longrange_{mambaout,vmamba,hybrid}_femto.py) on the
shortcut-free task (mambaout_dense.datasets.synthetic.longrange_dense: two target-marker pairs per
image, one red and one blue marker; each target takes its own marker's colour). Every run trains
on a mix of a near group (the local control, d = --near scene tokens) and a far group (d from
--distances) and is scored on each group apart: UperNet on the labelled pixels (accuracy and
mIoU), Mask R-CNN by AP, recall and the colour accuracy of the found targets. A run whose near
score misses --learned-threshold is "not learned" and not scored. --sizes renders the same scenes
at several image sizes (the length axis) with the model fixed; the report gives the cue in pixels
and in each stage's tokens, L and L/(6D). Also reachable as longrange_experiment.py --arm ...

The UperNet arm also has a shortcut baseline, --backbones local
(configs/upernet_longrange_local_femto.py: one MambaOut stage under a global-pool UperNet head),
which sees image-level statistics and local context but no far target's own marker (its reach is
measured by autograd when the report is written). It is trained, stored and gated like the
backbones, and reported in a table and verdict lines of its own, outside the comparisons.

Finished runs are stored in WORK_DIR/{arm}_cells.jsonl; a rerun with the same settings skips
them (a killed sweep continues; --learned-threshold and --min-recall may change without
retraining). WORK_DIR/{arm}_results.{json,md} hold every run's scores, learning curve, pace and
provenance (commit, versions, argv), the summary and the generated verdict; --results-md FILE
rewrites the section between <!-- longrange-{arm}:begin/end --> of FILE.

    python tools/analysis/longrange_dense.py --arm upernet             # 3 backbones x 3 seeds
    python tools/analysis/longrange_dense.py --arm upernet --sizes 128 256   # + the length axis
    python tools/analysis/longrange_dense.py --arm upernet --backbones local  # shortcut baseline
    python tools/analysis/longrange_dense.py --arm maskrcnn --seeds 0
    python tools/analysis/longrange_dense.py --arm upernet --dry-run   # plan, lengths, cost
    python tools/analysis/longrange_dense.py --arm both --preset gpu   # GPU: both arms, sizes
    ... --results-md docs/results.md                                   # the report section
"""
import os
import os.path as osp
import sys
from typing import List

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: Preset overrides (flags given on the command line win). gpu: both sizes, 3 seeds, several
#: runs at once on one GPU (tools/train.py takes the GPU when there is one).
PRESETS = {'gpu': dict(sizes=[128, 256], seeds=[0, 1, 2], jobs=6, threads=2)}


def build_parser():
    from mambaout_dense.analysis.dense_longrange import ARMS, BACKBONES, BASELINES, DenseSettings
    from mambaout_dense.cli import doc_parser
    d = DenseSettings(arm='upernet')
    parser = doc_parser(__doc__)
    parser.add_argument('--arm', choices=sorted(ARMS) + ['both'], required=True,
                        help='upernet, maskrcnn, or both (one after the other)')
    parser.add_argument('--preset', choices=sorted(PRESETS),
                        help='gpu: --sizes 128 256 --seeds 0 1 2 --jobs 6 --threads 2 (flags '
                        'given win)')
    parser.add_argument('--work-dir', default=None,
                        help='results and runs (default work_dirs/longrange_{arm})')
    parser.add_argument('--backbones', nargs='+', choices=BACKBONES + BASELINES,
                        default=list(BACKBONES),
                        help=f'contenders (default {" ".join(BACKBONES)}) and, UperNet arm only, '
                        f'the shortcut baseline {" ".join(BASELINES)}')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                        help='seeds (default 0 1 2)')
    parser.add_argument('--seed-offset', type=int, default=0, help='added to every seed')
    parser.add_argument('--sizes', type=int, nargs='+', default=[128],
                        help='image sides in pixels, the same scenes (default 128)')
    parser.add_argument('--distances', type=int, nargs='+', default=[20],
                        help='far distances in scene tokens (default 20: 80 px at 128 px)')
    for name, typ, help_ in (
            ('iters', int, 'training iterations'), ('batch', int, 'images per iteration'),
            ('lr', float, 'peak AdamW lr'), ('scene_grid', int, 'scene tokens per side'),
            ('near', int, 'distance of the local control, scene tokens'),
            ('num_train', int, 'training images per group'),
            ('num_val', int, 'validation images per group'),
            ('curve_points', int, 'validations during training (the learning curve)')):
        default = getattr(d, name)
        parser.add_argument('--' + name.replace('_', '-'), type=typ, default=default,
                            help=f'{help_} (default {default:g})')
    parser.add_argument('--background', choices=('noise', 'clean'), default=d.background)
    parser.add_argument('--learned-threshold', type=float, default=0.9,
                        help='near score a run needs to count (default 0.9)')
    parser.add_argument('--min-recall', type=float, default=0.5,
                        help='Mask R-CNN: near recall at IoU 0.5 a run also needs (default 0.5)')
    parser.add_argument('--threads', type=int, default=1,
                        help='OpenMP threads per run (default 1)')
    parser.add_argument('--jobs', type=int, default=2,
                        help='runs at once, each its own process (default 2: one per core)')
    parser.add_argument('--no-cost', action='store_true',
                        help='skip the parameter, FLOP and latency measurement')
    parser.add_argument('--erf-images', type=int, default=8,
                        help='trained-model ERFs (beside random weights) of each backbone\'s '
                        'first scored run on N far validation images; 0 skips (default 8)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the plan, the lengths and the cost, then stop')
    parser.add_argument('--results-md', help='markdown file whose longrange-{arm} section is '
                        'rewritten (e.g. docs/results.md)')
    return parser


def run_dense(argv: List[str]) -> int:
    """Parse the dense arm's options, run the sweep, print the report."""
    import dataclasses

    from mambaout_dense.analysis import dense_longrange as dl
    from mambaout_dense.analysis.dense_longrange.cost import config_dims, measure_cost
    from mambaout_dense.analysis.dense_longrange.report import length_markdown
    from mambaout_dense.cli import apply_preset
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.preset:  # preset values replace defaults, not flags given on the command line
        apply_preset(parser, args, argv, PRESETS[args.preset])
    names = {f.name for f in dataclasses.fields(dl.DenseSettings)} - {'arm'}
    settings = {k: v for k, v in vars(args).items() if k in names}
    seeds = [x + args.seed_offset for x in args.seeds]
    arms = sorted(dl.ARMS, reverse=True) if args.arm == 'both' else [args.arm]
    # every arm's plan is checked before any run starts (the baseline is UperNet's only)
    plans = {arm: dl.plan_cells(dl.DenseSettings(arm=arm, **settings), args.backbones,
                                args.sizes, args.distances, seeds) for arm in arms}
    if args.arm == 'both':
        rcs = [run_dense([*argv, '--arm', arm]) for arm in arms]
        return max(rcs)
    s, cells = dl.DenseSettings(arm=args.arm, **settings), plans[args.arm]
    work_dir = osp.abspath(args.work_dir or f'work_dirs/longrange_{args.arm}')
    os.makedirs(work_dir, exist_ok=True)
    config_dir = osp.join(REPO_ROOT, 'configs')
    configs = {b: osp.join(config_dir, dl.DenseCell(args.arm, b, 0, 0, 0).config_name() + '.py')
               for b in args.backbones}
    # stage widths of the contenders (the length table), also when only the baseline runs
    ref = next((b for b in args.backbones if b in dl.BACKBONES), dl.BACKBONES[0])
    dims = config_dims(osp.join(config_dir,
                                dl.DenseCell(args.arm, ref, 0, 0, 0).config_name() + '.py'))
    lengths = dl.length_table(args.sizes, s.scene_grid, sorted({s.near, *args.distances}), dims)
    print(length_markdown(lengths), file=sys.stderr)
    cost = [] if args.no_cost else measure_cost(configs, args.sizes, args.arm)
    for c in cost:
        print(f"[longrange-dense] {c['backbone']} at {c['size']} px: backbone "
              f"{c['backbone_params'] / 1e6:.2f} M params, {c['backbone_flops'] / 1e9:.3f} "
              f"GFLOPs; model {c['params'] / 1e6:.2f} M, {c['flops'] / 1e9:.3f} GFLOPs, "
              f"{c['latency_ms']:.0f} ms / image", file=sys.stderr)
    if args.dry_run:
        print(f'[longrange-dense] {len(cells)} runs: ' + ', '.join(c.key() for c in cells),
              file=sys.stderr)
        return 0
    command = ' '.join(['python tools/analysis/longrange_dense.py', *argv])
    res = dl.run_sweep(s, cells, work_dir, [sys.executable, osp.join(REPO_ROOT, 'tools',
                                                                      'train.py')],
                       config_dir, dims, args.learned_threshold, args.min_recall, args.threads,
                       args.jobs, cost, command, args.results_md, args.erf_images)
    print(dl.render_dense_markdown(res))
    return 0 if res['cells_done'] == res['cells_planned'] and not res['failed'] else 1


if __name__ == '__main__':
    from mambaout_dense.cli import run_main
    sys.exit(run_main(lambda: run_dense(sys.argv[1:])))
