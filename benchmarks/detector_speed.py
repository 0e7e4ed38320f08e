#!/usr/bin/env python
"""One Mask R-CNN training iteration: MambaOut-T vs mmdet's own Swin-T, side by side.

Both models are built from their configs (``configs/mask_rcnn_mambaout_t.py`` and
``mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py``), no pretrained weights, AdamW, batch 2
with 8 random instances per image. Default input is 800x1216 on CUDA and a CPU-sized 512x768
on the CPU (``--shape`` overrides). Prints median seconds/iteration, peak memory and ratios.

Equal head work: with random weights each model's RPN proposes other boxes, so the number of
positive RoIs (and with it the mask head's work) would differ between the two models and decide
the comparison. The RoI head's assigner therefore takes only the ground-truth boxes (added to the
proposals) as positives (``pos_iou_thr=min_pos_iou=0.99``): both heads train on the same 8
positives and 512 sampled RoIs per image, and the timing compares the backbones (and necks).

    python benchmarks/detector_speed.py [--shape 512 768] [--repeat 7]
"""
import os.path as osp

import torch
from common import task_speed_main

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: Positives = the ground-truth boxes only, for both models (see the module docstring).
OVERRIDES = {'model.train_cfg.rcnn.assigner.pos_iou_thr': 0.99,
             'model.train_cfg.rcnn.assigner.min_pos_iou': 0.99}
MODELS = {
    'Swin-T (mmdet)': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    'MambaOut-T': osp.join(ROOT, 'configs', 'mask_rcnn_mambaout_t.py'),
}


def make_batch(shape, batch: int = 2):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    return demo_mm_inputs(batch_size=batch, image_shapes=[(3, *shape)] * batch, num_items=[8] *
                          batch, num_classes=80, with_mask=True)


if __name__ == '__main__':
    task_speed_main(__doc__.splitlines()[0], MODELS, 'mmdet', make_batch,
                    section='speed-detector',
                    title=("Detector training iteration: Mask R-CNN MambaOut-T vs mmdet's Swin-T "
                           '(`benchmarks/detector_speed.py`)'),
                    default_shape=(800, 1216), cpu_shape=(512, 768), overrides=OVERRIDES,
                    default_repeat=7,  # its rounds spread by ~10% on a shared host
                    note=('Equal head work: the RoI head takes only the ground-truth boxes as '
                          'positives in both models (`pos_iou_thr = min_pos_iou = 0.99`), since '
                          'with random weights each RPN proposes other boxes.'))
