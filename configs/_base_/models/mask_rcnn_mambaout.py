# Mask R-CNN + FPN (mmdet's R50 model) with a MambaOut backbone; sizes set the arch, the FPN
# in_channels (= backbone out_channels) and the drop path rate.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mambaout_dense.MambaOut',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False),
    neck=dict(in_channels=[96, 192, 384, 576]))
