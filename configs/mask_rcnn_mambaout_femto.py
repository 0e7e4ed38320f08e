# Mask R-CNN 1x with MambaOut-Femto; recipe of mask_rcnn_mambaout_t.py.
# Total batch 16 = 8 GPUs x 2 images.
_base_ = './mask_rcnn_mambaout_t.py'
model = dict(
    backbone=dict(
        arch='femto',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='https://github.com/yuweihao/MambaOut/releases/download/model/'
                      'mambaout_femto.pth')),
    neck=dict(in_channels=[48, 96, 192, 288]))  # = backbone out_channels
