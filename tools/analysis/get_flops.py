#!/usr/bin/env python
"""Parameters and FLOPs (1 multiply-add = 1 FLOP) of a detection or segmentation config.

    python tools/analysis/get_flops.py configs/mask_rcnn_mambaout_t.py            # 1280 x 800
    python tools/analysis/get_flops.py configs/upernet_mambaout_t.py --shape 512 2048 --json
"""
import argparse
import json
import sys

from mmengine.config import DictAction


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Count parameters and FLOPs of a config')
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width (default: 1280 800 for detection, '
                        '512 2048 for segmentation)')
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)

    from mambaout_dense.analysis.flops import model_complexity
    from mambaout_dense.builder import load_config
    from mambaout_dense.engine.launch import apply_cfg_options
    from mambaout_dense.errors import MambaOutDenseError
    try:
        cfg = load_config(args.config)
        apply_cfg_options(cfg, args.cfg_options)
        result = model_complexity(cfg, tuple(args.shape) if args.shape else None)
    except MambaOutDenseError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
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
    return 0


if __name__ == '__main__':
    sys.exit(main())
