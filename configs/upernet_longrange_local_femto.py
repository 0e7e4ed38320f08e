# Long-range probe, UperNet arm: the SHORTCUT BASELINE (`--backbones local`), not a contender.
# The cheapest model that could cheat (Geirhos et al., "Shortcut learning in deep neural
# networks", arXiv 2004.07780): it sees image-level statistics and local context, but no far
# target's own marker. If it learns the near group and stays at chance on the far one, no cheap
# cue solves the far group; if it scores high on far, the task has a shortcut.
#
# Backbone: MambaOut-Femto's stem and stage 1 only (three Gated CNN blocks, 7x7 depthwise
# kernels at stride 4, width 48). MambaOut needs four stages in its arch, but it runs stages only
# up to max(out_indices), so out_indices=(0,) never runs stages 2-4; they are 1 channel wide
# and one block deep to keep their unused parameters out of the count (648 of 75.7 k).
# Head: UperNet on that one level, with pyramid pooling back on at one scale: pool_scales=(1,)
# is a global average pool, which hands every pixel the image-wide mean of every stage-1
# feature (image-level statistics) and nothing positional. No auxiliary head.
#
# Reach, measured by autograd (mambaout_dense/analysis/dense_longrange/reach.py: the input pixels
# with a non-zero gradient of one output pixel's logits, the global pool's branch detached;
# tests/analysis/test_longrange_local_baseline.py checks it): 52 px to the farthest input pixel,
# the whole square of radius 46 px, at 128 and at 256 px alike. The task, over every placement
# the generator draws: a near target's whole marker (d = 3) lies within 19 px (128) / 39 px (256)
# of each of its pixels; a far target's own marker (d = 20) starts 69 px / 137 px away. So the
# near marker is in view and the far one out of it at both sizes.
# Not parameter-matched to the three contenders (it is meant to be small and short-sighted).
#   python tools/analysis/longrange_dense.py --arm upernet --backbones local
_base_ = './upernet_longrange_femto_synthetic.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mambaout_dense.MambaOut',
        # stage 1 is MambaOut-Femto's; stages 2-4 are never run (out_indices=(0,))
        arch=dict(depths=(3, 1, 1, 1), dims=(48, 1, 1, 1)),
        drop_path_rate=0.0,  # three blocks: the contenders' 0.1 is spread over 18
        out_indices=(0, ),
        init_cfg=None),  # from scratch, like the contenders
    decode_head=dict(
        in_channels=[48],  # = backbone out_channels: one level, stride 4
        in_index=[0],
        # one pooling scale = global average pooling: image-level statistics for every pixel
        pool_scales=(1, )),
    auxiliary_head=None)
