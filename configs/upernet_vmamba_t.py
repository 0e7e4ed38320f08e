# UperNet 160k with VMamba-T (v2, s1l8), ADE20K 512x512 (150 classes); same schedule as
# configs/upernet_mambaout_t.py, VMamba's own drop path rate.
# Total batch 16 = 8 GPUs x 2 images: tools/dist_train.sh configs/upernet_vmamba_t.py 8
_base_ = [
    './_base_/models/upernet_vmamba.py',
    './_base_/datasets/ade20k.py',
    './_base_/schedules/segmentation_160k_adamw.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/'
            'vssm1_tiny_0230s_ckpt_epoch_264.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),  # = backbone out_channels
    auxiliary_head=dict(in_channels=384))
train_dataloader = dict(batch_size=2)  # per GPU
