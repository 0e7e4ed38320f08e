# Mask R-CNN 1x with MambaOut-Small; recipe of mask_rcnn_mambaout_t.py.
# Total batch 16 = 8 GPUs x 2 images.
_base_ = './mask_rcnn_mambaout_t.py'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='https://github.com/yuweihao/MambaOut/releases/download/model/'
                      'mambaout_small.pth')))
