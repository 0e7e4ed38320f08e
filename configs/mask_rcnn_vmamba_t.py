# Mask R-CNN 1x (12 epochs) with VMamba-T (v2, s1l8), COCO instance segmentation; same schedule as
# configs/mask_rcnn_mambaout_t.py, VMamba's own drop path rate.
# Total batch 16 = 8 GPUs x 2 images: tools/dist_train.sh configs/mask_rcnn_vmamba_t.py 8
_base_ = [
    './_base_/models/mask_rcnn_vmamba.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/detection_1x_adamw.py',
    'mmdet::_base_/default_runtime.py',
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
    neck=dict(in_channels=[96, 192, 384, 768]))  # = backbone out_channels
