# Mask R-CNN 3x multi-scale with MambaOut-Base; recipe of mask_rcnn_mambaout_t_3x.py.
_base_ = './mask_rcnn_mambaout_t_3x.py'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.6,
        init_cfg=dict(checkpoint='https://github.com/yuweihao/MambaOut/releases/download/model/'
                      'mambaout_base.pth')),
    neck=dict(in_channels=[128, 256, 512, 768]))  # = backbone out_channels
