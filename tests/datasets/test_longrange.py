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
    cue_batch,
    dependency_distance,
    generate_longrange,
    layout_counts,
    max_distance,
    min_distance,
    sample_layouts,
)

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
def test_layouts_realise_the_requested_distance_exactly(grid, distance):
    rng = np.random.default_rng(0)
    targets, markers = sample_layouts(rng, 40, grid, distance)
    for t, m in zip(targets.tolist(), markers.tolist()):
        assert _brute_distance(t, m) == distance == dependency_distance(t, m)
        assert _disjoint(t, m)
        assert 0 <= min(t) and max(t) + 3 <= grid and 0 <= min(m) and max(m) + 2 <= grid


def test_layout_counts_equal_a_brute_force_enumeration():
    """Uniform sampling over layouts rests on these counts: every target placement, every d."""
    grid = 7
    for distance in range(min_distance(), max_distance(grid) + 1):
        counts = layout_counts(grid, distance)
        ref = np.zeros_like(counts)
        for ty, tx in itertools.product(range(grid - 2), repeat=2):
            for my, mx in itertools.product(range(grid - 1), repeat=2):
                t, m = (ty, tx), (my, mx)
                if _disjoint(t, m) and _brute_distance(t, m) == distance:
                    ref[ty, tx] += 1
        np.testing.assert_array_equal(counts, ref, err_msg=f'd={distance}')
    assert (min_distance(), max_distance(grid)) == (3, 5)


def test_impossible_distances_raise():
    with pytest.raises(ValueError, match='valid: 3..14'):
        cue_batch(0, 2, grid=16, distance=15)
    with pytest.raises(ValueError, match='valid: 3..14'):
        cue_batch(0, 2, grid=16, distance=2)


@pytest.mark.parametrize('n', [32, 31])
def test_batches_are_balanced_and_label_only_target_tokens_with_the_marker_colour(n):
    b = cue_batch((5, 1), n, grid=12, distance=7, patch=4)
    counts = np.bincount(b['classes'], minlength=2)
    assert abs(int(counts[0]) - int(counts[1])) == n % 2 and counts.sum() == n
    assert b['images'].shape == (n, 3, 48, 48) and b['labels'].shape == (n, 12, 12)
    for i in range(n):
        lab, cls = b['labels'][i], b['classes'][i]
        ty, tx = b['targets'][i]
        assert (lab[ty:ty + 3, tx:tx + 3] == cls).all() and (lab >= 0).sum() == 9
        my, mx = b['markers'][i] * 4
        marker_px = b['images'][i, :, my:my + 8, mx:mx + 8].reshape(3, -1)
        np.testing.assert_allclose(marker_px.mean(1), LONGRANGE_PALETTE[cls], atol=1e-6)
    # balance holds over many batches too (the odd one alternates)
    odd = [np.bincount(cue_batch((s, 1), 5, 12, 7)['classes'], minlength=2)[0]
           for s in range(40)]
    assert 0.3 < np.mean(odd) / 5 < 0.7


def test_batches_are_a_pure_function_of_the_seed():
    a, b = cue_batch((3, 7), 4, 10, 5), cue_batch((3, 7), 4, 10, 5)
    c = cue_batch((4, 7), 4, 10, 5)
    np.testing.assert_array_equal(a['images'], b['images'])
    np.testing.assert_array_equal(a['labels'], b['labels'])
    assert not np.array_equal(a['images'], c['images'])
    clean = cue_batch((3, 7), 4, 10, 5, background='clean')
    np.testing.assert_array_equal(clean['labels'], a['labels'])  # background only
    assert np.unique(clean['images']).size <= 6


def test_generate_longrange_writes_the_ade_layout(tmp_path):
    info = generate_longrange(str(tmp_path / 'lr'), 4, 2, size=48, seed=1, distance=7)
    assert info['grid'] == 12 and info['distance'] == 7
    assert info['class_counts'] == {'train': [2, 2], 'val': [1, 1]}
    png = cv2.imread(osp.join(info['train_ann'], 'LR_train_00000001.png'), cv2.IMREAD_UNCHANGED)
    assert png.shape == (48, 48) and set(np.unique(png)) in ({0, 1}, {0, 2})
    assert (png > 0).sum() == 9 * 16  # the 3x3-token target at 4x4 pixels per token
    ys, xs = np.nonzero(png)
    rgb = cv2.imread(osp.join(info['train_img'], 'LR_train_00000001.jpg'))[..., ::-1]
    assert rgb.shape == (48, 48, 3)
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
    assert 255 in values and len(values - {255}) == 1 and values - {255} <= {0, 1}


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
