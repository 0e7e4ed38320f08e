"""Write the synthetic datasets used to train and test mambaout_dense on a CPU.

    python tools/make_synthetic.py coco --out data/synthetic_coco --train 800 --val 200 \
        --size 320 --seed 0
    python tools/make_synthetic.py ade --out data/synthetic_ade --train 800 --val 200 \
        --size 320 --seed 0
    python tools/make_synthetic.py longrange --variant far --out data/synthetic_longrange/far

``coco`` writes the COCO 2017 layout (``annotations/instances_{train,val}2017.json``,
``{train,val}2017/*.jpg``) for mmdet's ``CocoDataset``; ``ade`` writes the ADEChallengeData2016
layout (``images/{training,validation}``, ``annotations/{training,validation}``) for mmseg's
``ADE20KDataset``; ``longrange`` writes the same layout with labels 1..3 for mmseg's
``BaseSegDataset`` (a blob's class decided by a far or a local cue, see
``mambaout_dense.datasets.synthetic.longrange``). Output is deterministic for a seed. See
``mambaout_dense.datasets``.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import time
from collections import Counter
from collections.abc import Callable

from mambaout_dense.datasets import COCO_CLASSES, generate_ade, generate_coco


def _common(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument('--out', default=default_out, help='dataset root (default: %(default)s)')
    parser.add_argument('--train', type=int, default=800, help='training images')
    parser.add_argument('--val', type=int, default=200, help='validation images')
    parser.add_argument('--size', type=int, default=320, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0, help='dataset seed')
    parser.add_argument('--jpeg-quality', type=int, default=95, help='JPEG quality')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace images already in the output folders')


def _run_coco(args: argparse.Namespace) -> None:
    paths = generate_coco(args.out, args.train, args.val, args.size, args.seed,
                          min_instances=args.min_instances, max_instances=args.max_instances,
                          empty_fraction=args.empty_fraction, mask_format=args.mask_format,
                          jpeg_quality=args.jpeg_quality, overwrite=args.overwrite)
    for split in ('train', 'val'):
        with open(paths[f'{split}_ann']) as f:
            content = json.load(f)
        anns = content['annotations']
        per_class = Counter(COCO_CLASSES[a['category_id'] - 1] for a in anns)
        rle = sum(isinstance(a['segmentation'], dict) for a in anns)
        n_img = max(len(content['images']), 1)
        print(f'{split}: {len(content["images"])} images, {len(anns)} instances '
              f'({len(anns) / n_img:.2f}/image, {rle} as RLE), per class: {dict(per_class)}')
        print(f'  {paths[f"{split}_ann"]}\n  {paths[f"{split}_img"]}')


def _run_ade(args: argparse.Namespace) -> None:
    paths = generate_ade(args.out, args.train, args.val, args.size, args.seed,
                         jpeg_quality=args.jpeg_quality, overwrite=args.overwrite)
    for split in ('train', 'val'):
        print(f'{split}:\n  {paths[f"{split}_img"]}\n  {paths[f"{split}_ann"]}')


def _run_longrange(args: argparse.Namespace) -> None:
    from mambaout_dense.datasets.synthetic.longrange import generate_longrange
    info = generate_longrange(args.out, args.train, args.val, args.size, args.seed, args.variant,
                              args.min_cue_distance, jpeg_quality=args.jpeg_quality,
                              overwrite=args.overwrite)
    bound = '>=' if args.variant == 'far' else '<='
    print(f"{args.variant}: deciding cue {bound} {info['cue_distance']:.1f} px from the pixels "
          f"it labels; metadata in {info['meta_file']}")
    for split in ('train', 'val'):
        print(f'{split}:\n  {info[f"{split}_img"]}\n  {info[f"{split}_ann"]}')


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    """The argument parser, one subcommand per dataset, and the subcommand handlers."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='dataset', required=True)
    handlers: dict[str, Callable] = {}

    coco = sub.add_parser('coco', help='COCO-format instance segmentation (mmdet)')
    _common(coco, 'data/synthetic_coco')
    coco.add_argument('--min-instances', type=int, default=2, help='fewest instances per image')
    coco.add_argument('--max-instances', type=int, default=8, help='most instances per image')
    coco.add_argument('--empty-fraction', type=float, default=0.0,
                      help='fraction of images with clutter only (no annotations)')
    coco.add_argument('--mask-format', choices=('auto', 'polygon', 'rle'), default='auto',
                      help='segmentation encoding (auto: polygons when exact, else RLE)')
    handlers['coco'] = _run_coco

    ade = sub.add_parser('ade', help='ADE20K-format semantic segmentation (mmseg)')
    _common(ade, 'data/synthetic_ade')
    handlers['ade'] = _run_ade

    longrange = sub.add_parser('longrange', help='long-range cue segmentation (mmseg, labels 1..3)')
    _common(longrange, 'data/synthetic_longrange/far')
    longrange.set_defaults(train=400, val=50, size=192)  # the experiment's defaults
    longrange.add_argument('--variant', choices=('far', 'local'), default='far',
                           help='which cue decides a blob\'s class (same images either way)')
    longrange.add_argument('--min-cue-distance', type=float,
                           help='least distance from a blob pixel to the corner marker '
                           '(default size / 2)')
    handlers['longrange'] = _run_longrange
    return parser, handlers


def main() -> None:
    parser, handlers = build_parser()
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        handlers[args.dataset](args)
    except FileExistsError as err:
        parser.exit(2, f'error: {err}\n')
    elapsed = time.perf_counter() - start
    total = args.train + args.val
    print(f'wrote {total} {args.size}px images to {osp.abspath(args.out)} in {elapsed:.1f} s '
          f'({total / max(elapsed, 1e-9):.1f} images/s)')


if __name__ == '__main__':
    main()
