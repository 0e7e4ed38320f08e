# Mask R-CNN 3x multi-scale with MambaOut-Small; recipe of mask_rcnn_mambaout_t_3x.py.
_base_ = './mask_rcnn_mambaout_t_3x.py'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='https://github.com/yuweihao/MambaOut/releases/download/model/'
                      'mambaout_small.pth')))
