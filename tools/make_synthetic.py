"""Write the synthetic datasets used to train and test mambaout_dense on a CPU.

    python tools/make_synthetic.py coco --out data/synthetic_coco --train 800 --val 200 \
        --size 320 --seed 0
    python tools/make_synthetic.py ade --out data/synthetic_ade --train 800 --val 200 \
        --size 320 --seed 0
    python tools/make_synthetic.py longrange --size 128 --distance 16 \
        --out data/synthetic_longrange/g32_d16
    python tools/make_synthetic.py longrange-dense --size 128 --near 3 --far 20 \
        --out data/synthetic_longrange/s128

``coco`` writes the COCO 2017 layout (``annotations/instances_{train,val}2017.json``,
``{train,val}2017/*.jpg``) for mmdet's ``CocoDataset``; ``ade`` writes the ADEChallengeData2016
layout (``images/{training,validation}``, ``annotations/{training,validation}``) for mmseg's
``ADE20KDataset``; ``longrange`` writes the same layout with labels 1..2 on the target pixels
only, for mmseg's ``BaseSegDataset`` (the target takes the colour of a marker exactly d tokens
away, see ``mambaout_dense.datasets.synthetic.longrange``); ``longrange-dense`` writes that task
with a near and a far group per split, in both layouts from the same images (ADE labels and
``annotations/instances_{training,validation}.json``), for ``configs/upernet_longrange_*.py`` and
``configs/mask_rcnn_longrange_*.py`` (``--train``/``--val`` count images per group; see
``mambaout_dense.datasets.synthetic.longrange_dense``). Output is deterministic for a seed.
See ``mambaout_dense.datasets``.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import time
from collections import Counter
from collections.abc import Callable

from mambaout_dense.cli import run_main
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
    info = generate_longrange(args.out, args.train, args.val, args.size, args.seed,
                              args.distance, background=args.background,
                              jpeg_quality=args.jpeg_quality, overwrite=args.overwrite)
    print(f"target takes the colour of a marker d = {info['distance']} tokens away "
          f"({info['grid']}x{info['grid']} tokens of {info['patch']} px); classes per split "
          f"{info['class_counts']}; metadata in {info['meta_file']}")
    for split in ('train', 'val'):
        print(f'{split}:\n  {info[f"{split}_img"]}\n  {info[f"{split}_ann"]}')


def _run_longrange_dense(args: argparse.Namespace) -> None:
    from mambaout_dense.datasets.synthetic.longrange_dense import write_longrange_dense
    info = write_longrange_dense(args.out, {'near': args.near, 'far': args.far}, args.train,
                                 args.val, args.grid, args.size, args.seed,
                                 background=args.background, jpeg_quality=args.jpeg_quality,
                                 overwrite=args.overwrite)
    print(f"groups {info['groups']} (scene tokens; {info['patch']} px each); classes per split "
          f"and group {info['class_counts']}; COCO files {info['coco_train']}, "
          f"{info['coco_val']}")


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

    longrange = sub.add_parser(
        'longrange', help='cue-distance task of the long-range probe (mmseg, labels 1..2)')
    _common(longrange, 'data/synthetic_longrange/g32_d16')
    longrange.set_defaults(train=400, val=100, size=128)
    longrange.add_argument('--distance', type=int,
                           help='dependency distance in stride-4 tokens (default: half the '
                           'largest that fits)')
    longrange.add_argument('--background', choices=('noise', 'clean'), default='noise')
    handlers['longrange'] = _run_longrange

    dense = sub.add_parser(
        'longrange-dense', help='the long-range task with near and far groups, ADE and COCO '
        'layouts (UperNet and Mask R-CNN arms)')
    _common(dense, 'data/synthetic_longrange/s128')
    dense.set_defaults(train=1000, val=64, size=128)
    dense.add_argument('--grid', type=int, default=32, help='scene tokens per side (default 32)')
    dense.add_argument('--near', type=int, default=3, help='near distance, scene tokens')
    dense.add_argument('--far', type=int, default=20, help='far distance, scene tokens')
    dense.add_argument('--background', choices=('noise', 'clean'), default='noise')
    handlers['longrange-dense'] = _run_longrange_dense
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    return run_main(make, handlers[args.dataset], args)


def make(handler: Callable, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    handler(args)
    elapsed = time.perf_counter() - start
    total = (args.train + args.val) * (2 if args.dataset == 'longrange-dense' else 1)  # groups
    print(f'wrote {total} {args.size}px images to {osp.abspath(args.out)} in {elapsed:.1f} s '
          f'({total / max(elapsed, 1e-9):.1f} images/s)')


if __name__ == '__main__':
    sys.exit(main())
