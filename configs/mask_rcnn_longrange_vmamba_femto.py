# Long-range task, Mask R-CNN arm, a Femto-sized VMamba (SS2D in every stage): VMamba-T's block
# (v2, d_state 1, ssm_ratio 1, mlp_ratio 4) and depths (2, 2, 8, 2) at MambaOut-Femto's widths:
# 5.90 M backbone parameters (MambaOut-Femto 5.82 M, +1.4%). As upernet_longrange_vmamba_femto.py.
_base_ = './mask_rcnn_longrange_femto_synthetic.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mambaout_dense.VMamba',
        arch=dict(depths=(2, 2, 8, 2), dims=(48, 96, 192, 288), d_state=1, ssm_ratio=1.0,
                  mlp_ratio=4.0, version='v2'),
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=None),
    neck=dict(in_channels=[48, 96, 192, 288]))
