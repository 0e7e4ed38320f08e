#!/usr/bin/env python
"""Parameters and FLOPs (1 multiply-add = 1 FLOP) of a detection or segmentation config.

    python tools/analysis/get_flops.py configs/mask_rcnn_mambaout_t.py            # 1280 x 800
    python tools/analysis/get_flops.py configs/upernet_mambaout_t.py --shape 512 2048 --json
"""
import argparse
import json
import sys

from mambaout_dense.cli import add_cfg_options, run_main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Count parameters and FLOPs of a config')
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width (default: 1280 800 for detection, '
                        '512 2048 for segmentation)')
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    add_cfg_options(parser)
    return run_main(count, parser.parse_args(argv))


def count(args: argparse.Namespace) -> None:
    from mambaout_dense.analysis.flops import model_complexity
    from mambaout_dense.cli import prepare_config
    cfg = prepare_config(args)
    result = model_complexity(cfg, tuple(args.shape) if args.shape else None)
    if args.json:
        result = {k: v for k, v in result.items() if k != 'by_module'}
        result['shape'] = list(result['shape'])
        print(json.dumps(result))
    else:
        h, w = result['shape']
        bar = '=' * 40
        flops, backbone_flops = result['flops'] / 1e9, result['backbone_flops'] / 1e9
        print(f'{bar}\nConfig: {args.config}\nInput shape: (3, {h}, {w})\n'
              f'Flops: {flops:.1f} G  (backbone {backbone_flops:.1f} G)\n'
              f'Params: {result["params"] / 1e6:.2f} M  (backbone '
              f'{result["backbone_params"] / 1e6:.2f} M)\n{bar}')


if __name__ == '__main__':
    sys.exit(main())
