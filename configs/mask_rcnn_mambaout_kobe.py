# Mask R-CNN 1x (12 epochs) with MambaOut-Kobe, COCO instance segmentation.
# Total batch 16 = 8 GPUs x 2 images: tools/dist_train.sh configs/mask_rcnn_mambaout_kobe.py 8
_base_ = [
    './_base_/models/mask_rcnn_mambaout.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/detection_1x_adamw.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        arch='kobe',
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/yuweihao/MambaOut/releases/download/model/'
            'mambaout_kobe.pth')),
    neck=dict(in_channels=[48, 96, 192, 288]))  # = backbone out_channels
