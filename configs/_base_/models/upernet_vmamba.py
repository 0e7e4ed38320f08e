# UperNet + auxiliary FCN head (mmseg's R50 model) with a VMamba (SS2D) backbone.
_base_ = './upernet_mambaout.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mambaout_dense.VMamba',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
