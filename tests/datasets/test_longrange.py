"""The cue-distance generator: exact distances, balanced labels, labels only on the target."""
import filecmp
import itertools
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mambaout_dense.datasets.synthetic.longrange import (
    LONGRANGE_PALETTE,
    box_distance,
    cue_batch,
    dependency_distance,
    generate_longrange,
    image_statistics,
    layout_counts,
    max_distance,
    min_distance,
    pair_layouts,
    sample_scenes,
    scene_acceptance,
)
from mambaout_dense.errors import UsageError

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _brute_distance(t, m, ts=3, ms=2):
    """max over target tokens of the Chebyshev distance to the nearest marker token, by loops."""
    worst = 0
    for ty, tx in itertools.product(range(t[0], t[0] + ts), range(t[1], t[1] + ts)):
        nearest = min(max(abs(ty - my), abs(tx - mx))
                      for my, mx in itertools.product(range(m[0], m[0] + ms),
                                                      range(m[1], m[1] + ms)))
        worst = max(worst, nearest)
    return worst


def _disjoint(t, m, ts=3, ms=2):
    return (m[0] + ms <= t[0] or m[0] >= t[0] + ts or m[1] + ms <= t[1] or m[1] >= t[1] + ts)


@pytest.mark.parametrize('grid,distance', [(8, 3), (8, 6), (16, 9), (24, 12), (24, 22)])
def test_single_pair_layouts_realise_the_requested_distance_exactly(grid, distance):
    rng = np.random.default_rng(0)
    targets, markers = sample_scenes(rng, 40, grid, distance, pairs=1)
    for t, m in zip(targets[:, 0].tolist(), markers[:, 0].tolist()):
        assert _brute_distance(t, m) == distance == dependency_distance(t, m)
        assert _disjoint(t, m)
        assert 0 <= min(t) and max(t) + 3 <= grid and 0 <= min(m) and max(m) + 2 <= grid


def test_layout_counts_and_the_layout_table_equal_a_brute_force_enumeration():
    """Uniform sampling over layouts rests on these: every target placement, every d."""
    grid = 7
    for distance in range(min_distance(), max_distance(grid) + 1):
        counts = layout_counts(grid, distance)
        ref = np.zeros_like(counts)
        pairs = set()
        for ty, tx in itertools.product(range(grid - 2), repeat=2):
            for my, mx in itertools.product(range(grid - 1), repeat=2):
                t, m = (ty, tx), (my, mx)
                if _disjoint(t, m) and _brute_distance(t, m) == distance:
                    ref[ty, tx] += 1
                    pairs.add((t, m))
        np.testing.assert_array_equal(counts, ref, err_msg=f'd={distance}')
        table_t, table_m = pair_layouts(grid, distance)
        assert {(tuple(t), tuple(m)) for t, m in zip(table_t.tolist(), table_m.tolist())} == pairs
        assert len(table_t) == len(pairs)
    assert (min_distance(), max_distance(grid)) == (3, 5)


def test_box_distance_is_the_nearest_token_chebyshev_distance():
    rng = np.random.default_rng(1)
    for _ in range(200):
        a, b = rng.integers(0, 9, 2), rng.integers(0, 9, 2)
        brute = min(max(abs(ay - by), abs(ax - bx))
                    for ay, ax in itertools.product(range(a[0], a[0] + 3), range(a[1], a[1] + 3))
                    for by, bx in itertools.product(range(b[0], b[0] + 2),
                                                    range(b[1], b[1] + 2)))
        assert box_distance(a, 3, b, 2) == brute


@pytest.mark.parametrize('grid,distance', [(16, 9), (20, 12), (14, 6)])
def test_two_pair_scenes_hold_the_distance_the_clearance_and_disjoint_boxes(grid, distance):
    rng = np.random.default_rng(2)
    targets, markers = sample_scenes(rng, 30, grid, distance, pairs=2, clearance=2)
    assert targets.shape == markers.shape == (30, 2, 2)
    for ts, ms in zip(targets.tolist(), markers.tolist()):
        boxes = [(t, 3) for t in ts] + [(m, 2) for m in ms]
        for (p, sp), (q, sq) in itertools.combinations(boxes, 2):  # all four boxes disjoint
            assert box_distance(p, sp, q, sq) > 0
        for i in range(2):
            assert _brute_distance(ts[i], ms[i]) == distance
            # the other marker: at least d + 2 from every token of this target, so the own
            # marker is the nearest one from each labelled token
            assert _brute_distance_min(ts[i], ms[1 - i]) >= distance + 2


def _brute_distance_min(t, m, ts=3, ms=2):
    return min(max(abs(ty - my), abs(tx - mx))
               for ty, tx in itertools.product(range(t[0], t[0] + ts), range(t[1], t[1] + ts))
               for my, mx in itertools.product(range(m[0], m[0] + ms), range(m[1], m[1] + ms)))


def test_impossible_distances_and_too_small_grids_raise_usage_errors():
    with pytest.raises(UsageError, match='valid: 3..14'):
        cue_batch(0, 2, grid=16, distance=15)
    with pytest.raises(UsageError, match='valid: 3..14'):
        cue_batch(0, 2, grid=16, distance=2)
    with pytest.raises(UsageError, match='too small for 2 pairs'):
        cue_batch(0, 2, grid=12, distance=9)
    assert scene_acceptance(12, 9) == 0.0 and scene_acceptance(20, 9) > 0.01


@pytest.mark.parametrize('n', [32, 31])
def test_every_image_holds_one_red_and_one_blue_target_labelled_by_its_own_marker(n):
    b = cue_batch((5, 1), n, grid=16, distance=9, patch=4)
    assert b['images'].shape == (n, 3, 64, 64) and b['labels'].shape == (n, 16, 16)
    assert b['classes'].shape == (n, 2) and (np.sort(b['classes'], 1) == [0, 1]).all()
    for i in range(n):
        lab = b['labels'][i]
        assert (lab >= 0).sum() == 18 and (lab == 0).sum() == 9 == (lab == 1).sum()
        for k in range(2):
            ty, tx = b['targets'][i, k]
            assert (lab[ty:ty + 3, tx:tx + 3] == b['classes'][i, k]).all()
            my, mx = b['markers'][i, k] * 4
            marker_px = b['images'][i, :, my:my + 8, mx:mx + 8].reshape(3, -1)
            np.testing.assert_allclose(marker_px.mean(1), LONGRANGE_PALETTE[b['classes'][i, k]],
                                       atol=1e-6)
    # which pair is red is independent of the layout: both orders occur
    assert 0.25 < (b['classes'][:, 0] == 0).mean() < 0.75


def _target_rows(b):
    """Per target: (image index, label, top-left y, x)."""
    rows = []
    for i in range(len(b['images'])):
        for k in range(b['pairs']):
            rows.append((i, int(b['classes'][i, k]), *b['targets'][i, k].tolist()))
    return np.asarray(rows)


def test_image_colour_statistics_carry_no_information_about_a_target_label():
    """The shortcut of the single-cue task, measured on both tasks.

    - The image-wide mean of R - B, thresholded, labels the single-cue task's targets perfectly
      and the two-pair task's at exactly 0.5: every image's two targets have opposite labels,
      so any function of the image alone is right on exactly one of them.
    - A logistic regression on the colour histogram plus the target's position, fitted on
      training batches, stays at chance on held-out batches of the two-pair task.
    """
    import torch
    for pairs, expect in ((1, 1.0), (2, 0.5)):
        b = cue_batch((7, 0), 512, grid=20, distance=9, pairs=pairs)
        rows = _target_rows(b)
        stats = image_statistics(b['images'])
        guess = (stats['mean_rb'][rows[:, 0]] < 0).astype(int)  # blue-heavy image -> class 1
        acc = (guess == rows[:, 1]).mean()
        assert acc == pytest.approx(expect, abs=1e-9), (pairs, acc)

    def features(b):
        rows = _target_rows(b)
        hist = image_statistics(b['images'])['histogram'][rows[:, 0]]
        pos = rows[:, 2:4] / 20.0
        return (torch.tensor(np.concatenate([hist, pos, pos ** 2], 1), dtype=torch.float32),
                torch.tensor(rows[:, 1], dtype=torch.float32))

    x, y = features(cue_batch((8, 0), 2000, grid=20, distance=9))
    xv, yv = features(cue_batch((8, 1), 1000, grid=20, distance=9))
    mu, sd = x.mean(0), x.std(0) + 1e-6
    w = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits((x - mu) / sd @ w + bias, y)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        acc = float((((xv - mu) / sd @ w + bias > 0).float() == yv).float().mean())
    # 2000 held-out targets: chance +- 4 standard errors (0.011 each)
    assert abs(acc - 0.5) < 0.045, acc


def test_batches_are_a_pure_function_of_the_seed():
    a, b = cue_batch((3, 7), 4, 16, 9), cue_batch((3, 7), 4, 16, 9)
    c = cue_batch((4, 7), 4, 16, 9)
    np.testing.assert_array_equal(a['images'], b['images'])
    np.testing.assert_array_equal(a['labels'], b['labels'])
    assert not np.array_equal(a['images'], c['images'])
    clean = cue_batch((3, 7), 4, 16, 9, background='clean')
    np.testing.assert_array_equal(clean['labels'], a['labels'])  # background only
    assert np.unique(clean['images']).size <= 6


def test_generate_longrange_writes_the_ade_layout(tmp_path):
    info = generate_longrange(str(tmp_path / 'lr'), 4, 2, size=64, seed=1, distance=8)
    assert info['grid'] == 16 and info['distance'] == 8 and info['pairs'] == 2
    assert info['class_counts'] == {'train': [4, 4], 'val': [2, 2]}
    png = cv2.imread(osp.join(info['train_ann'], 'LR_train_00000001.png'), cv2.IMREAD_UNCHANGED)
    assert png.shape == (64, 64) and set(np.unique(png)) == {0, 1, 2}
    assert (png == 1).sum() == (png == 2).sum() == 9 * 16  # a 3x3-token target per colour
    ys, xs = np.nonzero(png)
    rgb = cv2.imread(osp.join(info['train_img'], 'LR_train_00000001.jpg'))[..., ::-1]
    assert rgb.shape == (64, 64, 3)
    assert (ys.min() % 4, xs.min() % 4) == (0, 0)


def test_mmseg_reads_it_with_the_longrange_config(tmp_path):
    """configs/upernet_longrange_femto_synthetic.py's dataset loads the set: labels 0..1 + 255."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    info = generate_longrange(str(tmp_path / 'lr'), 1, 2, size=64, seed=0)
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'upernet_longrange_femto_synthetic.py'))
    ds_cfg = cfg.val_dataloader.dataset
    ds_cfg.data_root = info['root']
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(ds_cfg)
        assert len(dataset) == 2 and dataset.metainfo['classes'] == ('red', 'blue')
        seg = dataset[0]['data_samples'].gt_sem_seg.data.numpy()
    values = set(np.unique(seg))
    assert values == {0, 1, 255}


@pytest.mark.slow
def test_make_synthetic_longrange_subcommand(tmp_path):
    out = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'make_synthetic.py'),
                          'longrange', '--out', str(tmp_path), '--train', '2', '--val', '1',
                          '--size', '64', '--seed', '7', '--distance', '9'],
                         capture_output=True, text=True, check=True)
    assert 'd = 9 tokens' in out.stdout
    name = 'LR_train_00000001.png'
    ref = generate_longrange(str(tmp_path / 'ref'), 2, 1, 64, seed=7, distance=9)
    assert filecmp.cmp(osp.join(tmp_path, 'annotations', 'training', name),
                       osp.join(ref['train_ann'], name), shallow=False)
