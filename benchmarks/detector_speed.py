#!/usr/bin/env python
"""One Mask R-CNN training iteration: MambaOut-T vs mmdet's own Swin-T, side by side.

Both models are built from their configs (``configs/mask_rcnn_mambaout_t.py`` and
``mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py``), no pretrained weights, AdamW, batch 2
with 8 random instances per image. Default input is 800x1216 on CUDA and a CPU-sized 512x768
on the CPU (``--shape`` overrides). Prints median seconds/iteration, peak memory and ratios.

    python benchmarks/detector_speed.py [--shape 512 768] [--repeat 3]
"""
import argparse
import os.path as osp

import torch
from common import build_model_from_config, compare_train_steps, environment, markdown_table

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODELS = {
    'Swin-T (mmdet)': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    'MambaOut-T': osp.join(ROOT, 'configs', 'mask_rcnn_mambaout_t.py'),
}


def make_batch(shape, batch: int = 2):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    return demo_mm_inputs(batch_size=batch, image_shapes=[(3, *shape)] * batch, num_items=[8] *
                          batch, num_classes=80, with_mask=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    shape = tuple(args.shape or ((800, 1216) if args.device == 'cuda' else (512, 768)))
    builders = {name: (lambda p=path: build_model_from_config(p, 'mmdet'))
                for name, path in MODELS.items()}
    rows = compare_train_steps(builders, lambda: make_batch(shape), args.device, args.repeat,
                               reference='Swin-T (mmdet)')
    for r in rows:
        r['input'] = f'2 x {shape[0]}x{shape[1]}'
    print(environment(args.device))
    print(markdown_table(rows, ['model', 'input', 'params (M)', 's/iter', 'peak MiB',
                                'time ratio (vs Swin-T (mmdet))', 'memory ratio']))


if __name__ == '__main__':
    main()
