#!/usr/bin/env python
"""One UperNet training iteration: MambaOut-T vs mmseg's own Swin-T, side by side.

Both from configs (``configs/upernet_mambaout_t.py`` and mmseg's
``swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py``), no pretrained
weights, SyncBN replaced by BN (one process), AdamW, batch 2 at 512x512 with random labels of
150 classes. Prints median seconds/iteration, peak memory and ratios.

    python benchmarks/segmentor_speed.py [--shape 512 512] [--repeat 3]
"""
import os.path as osp

import torch
from common import task_speed_main

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODELS = {
    'Swin-T (mmseg)':
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    'MambaOut-T': osp.join(ROOT, 'configs', 'upernet_mambaout_t.py'),
}
BN = dict(type='BN', requires_grad=True)
OVERRIDES = dict(model=dict(decode_head=dict(norm_cfg=BN), auxiliary_head=dict(norm_cfg=BN)))


def make_batch(shape, batch: int = 2):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, *shape), generator=g, dtype=torch.uint8))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, *shape), generator=g))
        sample.set_metainfo(dict(img_shape=shape, ori_shape=shape, pad_shape=shape))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


if __name__ == '__main__':
    task_speed_main(__doc__.splitlines()[0], MODELS, 'mmseg', make_batch,
                    section='speed-segmentor',
                    title=("Segmentor training iteration: UperNet MambaOut-T vs mmseg's Swin-T "
                           '(`benchmarks/segmentor_speed.py`)'),
                    default_shape=(512, 512), overrides=OVERRIDES)
