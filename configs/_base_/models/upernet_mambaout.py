# UperNet + auxiliary FCN head (mmseg's R50 model) with a MambaOut backbone.
_base_ = 'mmseg::_base_/models/upernet_r50.py'
model = dict(
    pretrained=None,  # backbones load ImageNet weights through their init_cfg
    data_preprocessor=dict(size=(512, 512)),  # = crop size
    backbone=dict(
        _delete_=True,
        type='mambaout_dense.MambaOut',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False),
    decode_head=dict(in_channels=[96, 192, 384, 576], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))  # in_index=2: stage-3 width
