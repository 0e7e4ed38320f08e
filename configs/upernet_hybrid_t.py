# UperNet 160k with the hybrid backbone: SS2D (VMamba) in the long-sequence stages 1-2
# (L > 6D at 512x512), Gated CNN (MambaOut) in stages 3-4; parameters within 1% of
# upernet_mambaout_t.py (tools/analysis/get_flops.py). Total batch 16 = 8 GPUs x 2 images.
_base_ = './upernet_mambaout_t.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mambaout_dense.HybridBackbone',
        arch='tiny',  # depths (2, 2, 9, 3), dims (96, 192, 384, 576)
        mixers=('ss2d', 'ss2d', 'gated_cnn', 'gated_cnn'),
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False,
        # No ImageNet checkpoint exists for the hybrid: it trains from scratch here. Pretrain it
        # on ImageNet first (or load a trained backbone with type='Pretrained',
        # prefix='backbone.') before comparing with the pretrained MambaOut/VMamba segmentors.
        init_cfg=None),
    decode_head=dict(in_channels=[96, 192, 384, 576]),  # = backbone out_channels
    auxiliary_head=dict(in_channels=384))  # stage-3 width
