# Mask R-CNN 1x (12 epochs) with MambaOut-Base, COCO instance segmentation.
# Total batch 16 = 8 GPUs x 2 images: tools/dist_train.sh configs/mask_rcnn_mambaout_b.py 8
_base_ = [
    './_base_/models/mask_rcnn_mambaout.py',
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
            checkpoint='https://github.com/yuweihao/MambaOut/releases/download/model/'
            'mambaout_base.pth')),
    neck=dict(in_channels=[128, 256, 512, 768]))  # = backbone out_channels
