#!/usr/bin/env python
"""Latency and peak memory versus input size for backbones and single token mixers.

Whole backbones (MambaOut-T, VMamba-T, mmdet's Swin-T, a global-attention ViT-S) and single
mixers at one width (Gated CNN block, SS2D, global and 7x7 window attention) from 224² to
800x1280; writes scaling.csv, scaling_fit.csv, scaling.md and scaling.png (log-log, L = 6D
marked) into --out and prints the fitted growth exponent of each curve.

    python tools/analysis/scaling.py                                 # CPU (+ CUDA if present)
    python tools/analysis/scaling.py --sizes 224 512x512 800x1280 --device cuda
    python tools/analysis/scaling.py --quick --out /tmp/scaling      # tiny, for CI
"""
import argparse
import os.path as osp
import sys

from mambaout_dense.cli import doc_parser, run_main


def main(argv=None) -> int:
    parser = doc_parser(__doc__)
    parser.add_argument('--sizes', nargs='+', metavar='SIZE',
                        help='inputs as S (square) or HxW (default: 224 320 512 640 800x1280; '
                        '--quick: 64 96)')
    parser.add_argument('--device', nargs='+', choices=('cpu', 'cuda'),
                        help='devices (default: cpu, plus cuda when available)')
    parser.add_argument('--out', default='work_dirs/analysis/scaling', help='output folder')
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes and test architectures (CI)')
    parser.add_argument('--only', nargs='+', metavar='NAME',
                        help='keep curves whose name contains one of these (e.g. mambaout ss2d)')
    parser.add_argument('--block-width', type=int, help='D of the single-mixer curves '
                        '(default 96; 16 with --quick)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeat', type=int, help='timed runs per case (default 3; 1 --quick)')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--no-memory', action='store_true', help='skip peak-memory measurement')
    parser.add_argument('--max-memory-gb', type=float, default=4.0,
                        help='skip cases whose estimated largest buffer exceeds this')
    parser.add_argument('--max-seconds', type=float, default=30.0,
                        help='skip sizes whose extrapolated latency per call exceeds this')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return run_main(measure, parser.parse_args(argv))


def measure(args: argparse.Namespace) -> None:
    import torch

    from mambaout_dense.analysis import scaling as sc
    from mambaout_dense.analysis.scaling_report import plot_scaling, scaling_markdown
    from mambaout_dense.analysis.tables import write_csv
    from mambaout_dense.cli import check_device
    from mambaout_dense.errors import UsageError
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sizes:
        sizes = [parse_size(tok) for tok in args.sizes]
    else:
        sizes = list(sc.QUICK_SIZES if args.quick else sc.DEFAULT_SIZES)
    devices = args.device or (['cpu', 'cuda'] if torch.cuda.is_available() else ['cpu'])
    for device in devices:
        check_device(device)
    cases = sc.default_cases(quick=args.quick, block_width=args.block_width, include=args.only)
    if not cases:
        raise UsageError(f'--only {args.only} matches no curve')
    repeat = args.repeat or (1 if args.quick else 3)
    rows = sc.run_scaling(cases, sizes, devices, warmup=args.warmup, repeat=repeat,
                          measure_memory=not args.no_memory, max_memory_gb=args.max_memory_gb,
                          max_seconds=args.max_seconds, progress=not args.no_progress)
    fits = sc.fit_exponents(rows)
    env = f'torch {torch.__version__}, {torch.get_num_threads()} CPU threads'
    if 'cuda' in devices:
        env += f', {torch.cuda.get_device_name()}'
    write_csv(rows, osp.join(args.out, 'scaling.csv'))
    write_csv(fits, osp.join(args.out, 'scaling_fit.csv'))
    plot_scaling(rows, osp.join(args.out, 'scaling.png'),
                    title=f'latency and peak memory vs tokens ({env})')
    with open(osp.join(args.out, 'scaling.md'), 'w') as f:
        f.write(f'Median latency per forward pass, batch 1, {env}.\n\n')
        f.write(scaling_markdown(rows, fits) + '\n')
    print(f'{env}\n')
    print('| device | curve | growth exponent (log latency vs log L) | points | L range |')
    print('|---|---|---|---|---|')
    for fit in fits:
        print(f"| {fit['device']} | {fit['curve']} | {fit['exponent']:.2f} | {fit['points']} | "
              f"{fit['tokens_min']}-{fit['tokens_max']} |")
    skipped = [r for r in rows if r['status'] != 'ok']
    for r in skipped:
        print(f"{r['status']}: {r['device']} {r['curve']} {r['H']}x{r['W']}: {r['note']}")
    print(f'\nwrote {osp.join(args.out, "scaling.csv")}, scaling_fit.csv, scaling.md, '
          'scaling.png')


def parse_size(token: str) -> tuple:
    """'512' -> (512, 512); '800x1280' -> (800, 1280)."""
    import re

    from mambaout_dense.errors import UsageError
    m = re.fullmatch(r'(\d+)(?:[xX×](\d+))?', token.strip())
    if not m:
        raise UsageError(f'cannot read size {token!r}: use S or HxW')
    return int(m.group(1)), int(m.group(2) or m.group(1))


if __name__ == '__main__':
    sys.exit(main())
