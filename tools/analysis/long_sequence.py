#!/usr/bin/env python
"""Tokens L, width D and L/(6D) per backbone stage: which stages are long-sequence (L > 6D)?

The criterion of MambaOut (Yu & Wang, arXiv 2405.07992), applied per stage of a hierarchical
backbone, with the paper's ViT-S (τ = 2304) and ViT-B (τ = 4608) references at the same input.

    python tools/analysis/long_sequence.py configs/mask_rcnn_mambaout_t.py      # 800 x 1280
    python tools/analysis/long_sequence.py mambaout_tiny --shape 224 224 800x1280 512 2048
    python tools/analysis/long_sequence.py configs/upernet_vmamba_t.py --format json
"""
import argparse
import json
import sys

from mambaout_dense.cli import add_cfg_options, doc_parser, run_main


def main(argv=None) -> int:
    parser = doc_parser(__doc__)
    parser.add_argument('target', metavar='CONFIG_OR_BACKBONE',
                        help='a config file, or FAMILY_ARCH: mambaout_tiny, vmamba_tiny, '
                        'hybrid_tiny, ...')
    parser.add_argument('--shape', nargs='+', metavar='H W',
                        help='input shapes as H W pairs or HxW (default: the config\'s test '
                        'resolution; 224 224 for a backbone name)')
    parser.add_argument('--format', choices=('md', 'json'), default='md')
    parser.add_argument('--no-vit', action='store_true', help='leave out the ViT-S/B rows')
    add_cfg_options(parser)
    return run_main(analyse, parser.parse_args(argv))


def analyse(args: argparse.Namespace) -> None:
    from mambaout_dense.analysis import long_sequence as ls
    from mambaout_dense.cli import load_backbone
    shapes = ls.parse_shapes(args.shape) if args.shape else None
    model, cfg, name = load_backbone(args.target, args.cfg_options)
    if cfg is None:
        shapes = shapes or [(224, 224)]
    else:
        name = str(cfg.model.backbone.get('type', 'backbone')).split('.')[-1]
        arch = cfg.model.backbone.get('arch')
        name = f'{name}-{arch}' if isinstance(arch, str) else name
        shapes = shapes or [ls.config_test_shape(cfg)]
    dims, strides = ls.backbone_geometry(model)
    rows = ls.analyse(dims, strides, shapes, model=name, with_vit=not args.no_vit)
    if args.format == 'json':
        print(json.dumps(rows, indent=1))
    else:
        print(f'Long-sequence criterion L > 6D (MambaOut, arXiv 2405.07992), {name}: '
              f'D = {"/".join(map(str, dims))}, strides {"/".join(map(str, strides))}\n')
        print(ls.rows_markdown(rows))
        print()
        print(ls.stage_grid_markdown(rows))


if __name__ == '__main__':
    sys.exit(main())
