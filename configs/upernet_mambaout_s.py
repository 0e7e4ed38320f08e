# UperNet 160k with MambaOut-Small, ADE20K 512x512 (150 classes).
# Total batch 16 = 8 GPUs x 2 images: tools/dist_train.sh configs/upernet_mambaout_s.py 8
# Multi-scale + flip test: tools/test.py configs/upernet_mambaout_s.py CKPT --tta
_base_ = [
    './_base_/models/upernet_mambaout.py',
    './_base_/datasets/ade20k.py',
    './_base_/schedules/segmentation_160k_adamw.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/yuweihao/MambaOut/releases/download/model/'
            'mambaout_small.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 576]),  # = backbone out_channels
    auxiliary_head=dict(in_channels=384))
train_dataloader = dict(batch_size=2)  # per GPU
