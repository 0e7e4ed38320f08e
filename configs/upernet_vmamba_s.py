# UperNet 160k with VMamba-S (v2, s2l15), ADE20K 512x512 (150 classes); same schedule as
# configs/upernet_mambaout_s.py, VMamba's own drop path rate.
# Total batch 16 = 8 GPUs x 2 images: tools/dist_train.sh configs/upernet_vmamba_s.py 8
_base_ = [
    './_base_/models/upernet_vmamba.py',
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
            checkpoint='https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/'
            'vssm_small_0229_ckpt_epoch_222.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),  # = backbone out_channels
    auxiliary_head=dict(in_channels=384))
train_dataloader = dict(batch_size=2)  # per GPU
