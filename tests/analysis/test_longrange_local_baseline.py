"""The UperNet arm's shortcut baseline sees the near marker and, provably, not the far one.

configs/upernet_longrange_local_femto.py: MambaOut-Femto's stem and stage 1 under a UperNet head
with a global average pool. Its reach is measured by autograd
(:func:`mambaout_dense.analysis.dense_longrange.reach.measure_reach`: the input pixels with a
non-zero gradient of one output pixel's logits, the pool's branch detached, every phase of the
stride-4 cell at the centre) and compared with the task's geometry, computed over every placement
the generator draws and checked against scenes it renders.
"""
import functools
import os.path as osp

import numpy as np
import pytest
import torch

from mambaout_dense.analysis.dense_longrange import DenseCell, DenseSettings
from mambaout_dense.analysis.dense_longrange.reach import measure_reach, task_geometry
from mambaout_dense.datasets.synthetic.longrange import LONGRANGE_PALETTE, cue_batch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO_ROOT, 'configs', 'upernet_longrange_local_femto.py')
S = DenseSettings(arm='upernet')  # the arm's scene grid (32) and near distance (3)
FAR = 20  # the arm's default far distance (tools/analysis/longrange_dense.py --distances)


@functools.lru_cache(maxsize=None)
def _reach(size, detach_pool=True):
    return measure_reach(CONFIG, size, detach_pool=detach_pool)


def _rendered_extremes(size, distance, n=48, seed=0):
    """Per drawn pair: (min, max) Chebyshev pixel distance from its target's labelled pixels to
    the pixels of its own marker's colour, read from the rendered image and label map."""
    patch = size // S.scene_grid
    b = cue_batch(seed, n, S.scene_grid, distance, patch, background='clean')
    out = []
    for i in range(n):
        labels = np.kron(b['labels'][i], np.ones((patch, patch), np.int64))  # token -> pixel
        for cls in (0, 1):  # one red and one blue marker per image: a class names its pair
            ty, tx = np.nonzero(labels == cls)
            colour = np.asarray(LONGRANGE_PALETTE[cls], np.float32)[:, None, None]
            my, mx = np.nonzero((b['images'][i] == colour).all(0))
            d = np.maximum(np.abs(ty[:, None] - my[None]), np.abs(tx[:, None] - mx[None]))
            out.append((int(d.min()), int(d.max())))
    return out


@pytest.mark.parametrize('size', [128, 256])
def test_task_geometry_over_every_placement_agrees_with_rendered_scenes(size):
    near, far = task_geometry(size, S.scene_grid, S.near), task_geometry(size, S.scene_grid, FAR)
    for geo, d in ((near, S.near), (far, FAR)):
        drawn = _rendered_extremes(size, d)
        # every rendered pair lies within the exhaustive bounds, and the bounds are attained
        assert all(geo['gap_px'] <= lo and hi <= geo['full_view_px'] for lo, hi in drawn)
        assert min(lo for lo, _ in drawn) == geo['gap_px']
        assert max(hi for _, hi in drawn) == geo['full_view_px']
    patch = size // S.scene_grid
    # the module docstring of longrange.py: the nearest token of a pair is >= d - (target - 1)
    # tokens away, so its nearest pixel (d - target) * patch + 1 pixels
    assert far['gap_px'] == (FAR - 3) * patch + 1


@pytest.mark.parametrize('size', [128, 256])
def test_local_baseline_reach_holds_the_near_marker_and_not_the_far_one(size):
    """The baseline's contract, at the arm's default size and at twice it."""
    need = task_geometry(size, S.scene_grid, S.near)['full_view_px']  # 19 / 39 px
    gap = task_geometry(size, S.scene_grid, FAR)['gap_px']  # 69 / 137 px
    r = _reach(size)
    assert r['pool_detached'] and r['phases'] == 16
    assert not r['clipped'] and not r['whole_image']  # the field fits: reach_px is all of it
    assert r['full_px'] >= need, (r, need)  # every near target pixel sees its whole marker
    assert r['reach_px'] < gap, (r, gap)  # no far target pixel sees any of its own marker
    # the numbers the config header and docs/longrange_dense.md quote
    assert (r['reach_px'], r['full_px'], need, gap) == ((52, 46, 19, 69) if size == 128 else
                                                        (52, 46, 39, 137))
    # with the global pool's branch left on, every pixel depends on the whole image: the pool
    # is what hands it image-level statistics, and detaching it is what the reach leaves out
    pooled = _reach(size, detach_pool=False)
    assert pooled['whole_image']


def test_local_baseline_field_is_the_same_at_every_size():
    """A fully convolutional path: the reach in pixels does not grow with the image, while the
    far cue does (the length axis), so the baseline stays blind to it at every size."""
    assert _reach(128)['reach_px'] == _reach(256)['reach_px']
    assert _reach(128)['full_px'] == _reach(256)['full_px']


def test_local_baseline_config_runs_only_femto_stage_1_and_is_not_parameter_matched():
    from mambaout_dense.builder import build_backbone, build_model, load_config
    cfg = load_config(CONFIG)
    assert osp.basename(CONFIG) == DenseCell('upernet', 'local', 0, 0, 0).config_name() + '.py'
    assert cfg.model.auxiliary_head is None and tuple(cfg.model.decode_head.pool_scales) == (1, )
    torch.manual_seed(0)
    model = build_model(cfg)
    feats = model.backbone(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(2, 48, 16, 16)]  # one level, stride 4
    model.train()
    loss = model.decode_head(feats).square().mean()
    loss.backward()
    unused = {n for n, p in model.backbone.named_parameters() if p.grad is None}
    assert unused and all(n.startswith(('downsample_layers.1', 'downsample_layers.2',
                                        'downsample_layers.3', 'stages.1', 'stages.2',
                                        'stages.3')) for n in unused)
    counts = {n: p.numel() for n, p in model.backbone.named_parameters()}
    femto = dict(build_backbone(load_config(osp.join(REPO_ROOT, 'configs',
                                                     'upernet_longrange_mambaout_femto.py')))
                 .named_parameters())
    used = {n: c for n, c in counts.items() if n not in unused}
    # stage 1 (stem, three blocks, its output norm) is MambaOut-Femto's, shape for shape
    assert all(tuple(femto[n].shape) == tuple(model.backbone.get_parameter(n).shape)
               for n in used)
    assert sum(counts[n] for n in unused) < 0.01 * sum(counts.values())  # never-run stages
    assert sum(counts.values()) < 0.05 * sum(p.numel() for p in femto.values())
