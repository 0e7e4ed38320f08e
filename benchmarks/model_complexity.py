#!/usr/bin/env python
"""Parameters and FLOPs of every paper-sized config next to the paper's numbers.

Mask R-CNN at (3, 1280, 800), UperNet at (3, 512, 2048); one multiply-add = 1 FLOP. Targets are
REFERENCE.md section 3 (MambaOut paper tables). Prints a markdown table for README.md.

    python benchmarks/model_complexity.py [--only mask_rcnn_mambaout_t ...]
"""
import argparse
import os.path as osp

from common import markdown_table

from mambaout_dense.analysis.flops import model_complexity
from mambaout_dense.engine.launch import load_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# config name -> (paper params M, paper GFLOPs)
TARGETS = {
    'mask_rcnn_mambaout_t': (43, 262), 'mask_rcnn_mambaout_s': (65, 354),
    'mask_rcnn_mambaout_b': (100, 495), 'mask_rcnn_vmamba_t': (50, 271),
    'mask_rcnn_vmamba_s': (70, 384), 'mask_rcnn_vmamba_b': (108, 485),
    'upernet_mambaout_t': (54, 938), 'upernet_mambaout_s': (76, 1032),
    'upernet_mambaout_b': (112, 1178), 'upernet_vmamba_t': (62, 949),
    'upernet_vmamba_s': (82, 1028), 'upernet_vmamba_b': (122, 1170),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='+', choices=sorted(TARGETS))
    args = parser.parse_args()
    rows = []
    for name in args.only or TARGETS:
        params_t, flops_t = TARGETS[name]
        r = model_complexity(load_config(osp.join(ROOT, 'configs', name + '.py')))
        params, flops = r['params'] / 1e6, r['flops'] / 1e9
        rows.append({
            'config': name, 'input': '{}x{}'.format(*r['shape']),
            'params (M)': round(params, 2), 'paper params': params_t,
            'GFLOPs': round(flops, 1), 'paper GFLOPs': flops_t,
            'FLOPs / paper': f'{flops / flops_t:.3f}',
            'within targets': 'yes' if abs(params - params_t) <= 0.5
            and abs(flops / flops_t - 1) <= 0.03 else 'NO',
        })
        print(rows[-1], flush=True)
    print(markdown_table(rows, list(rows[0])))


if __name__ == '__main__':
    main()
