# Mask R-CNN 1x (12 epochs) with VMamba-B (v2, s2l15), COCO instance segmentation; same schedule as
# configs/mask_rcnn_mambaout_b.py, VMamba's own drop path rate.
# Total batch 16 = 8 GPUs x 2 images: tools/dist_train.sh configs/mask_rcnn_vmamba_b.py 8
_base_ = [
    './_base_/models/mask_rcnn_vmamba.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/detection_1x_adamw.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.6,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/'
            'vssm_base_0229_ckpt_epoch_237.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))  # = backbone out_channels
