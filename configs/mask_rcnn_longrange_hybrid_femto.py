# Long-range task, Mask R-CNN arm, hybrid Femto: SS2D in the long-sequence stages 1-2, Gated CNN
# in stages 3-4: 5.77 M backbone parameters (MambaOut-Femto 5.82 M, -0.8%). As
# upernet_longrange_hybrid_femto.py.
_base_ = './mask_rcnn_longrange_femto_synthetic.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mambaout_dense.HybridBackbone',
        arch='femto',  # depths (2, 2, 9, 3), dims (48, 96, 192, 288)
        mixers=('ss2d', 'ss2d', 'gated_cnn', 'gated_cnn'),
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=None),
    neck=dict(in_channels=[48, 96, 192, 288]))
