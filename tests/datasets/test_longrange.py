"""The long-range cue generator: deterministic, and the deciding cue is as far/near as promised."""
import filecmp
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from scipy import ndimage

from mambaout_dense.datasets.synthetic.longrange import (
    generate_longrange,
    longrange_sample,
    reference_miou,
)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SIZE = 96


def _tree(root: str) -> list:
    return sorted(osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.fixture(scope='module')
def sets(tmp_path_factory):
    """Both variants of one seed (3 train + 2 val images of 96 px)."""
    root = tmp_path_factory.mktemp('longrange')
    return {v: generate_longrange(str(root / v), 3, 2, SIZE, seed=7, variant=v)
            for v in ('far', 'local')}


def _images(info: dict, split: str = 'train'):
    """(name, RGB image, label map, per-image metadata) of a split as written to disk."""
    with open(info['meta_file']) as f:
        meta = {m['name']: m for m in json.load(f)['images'][split]}
    for name in sorted(meta):
        img = cv2.imread(osp.join(info[f'{split}_img'], name + '.jpg'))[..., ::-1]
        label = cv2.imread(osp.join(info[f'{split}_ann'], name + '.png'), cv2.IMREAD_UNCHANGED)
        yield name, img, label, meta[name]


def _cue_class(rgb_patch: np.ndarray) -> int:
    """1 for a red fill, 2 for a blue one (the JPEG keeps them far apart)."""
    r, _, b = rgb_patch.reshape(-1, 3).mean(0)
    return 1 if r > b else 2


def test_generation_is_deterministic(sets, tmp_path):
    again = generate_longrange(str(tmp_path / 'far'), 3, 2, SIZE, seed=7, variant='far')
    files = _tree(sets['far']['root'])
    assert files == _tree(again['root']) and len(files) == 2 * 5 + 1
    assert all(filecmp.cmp(osp.join(sets['far']['root'], f), osp.join(again['root'], f),
                           shallow=False) for f in files)
    img, label, _ = longrange_sample(8, 'train', 0, SIZE)
    other, _, _ = longrange_sample(7, 'train', 0, SIZE)
    assert not np.array_equal(img, other)


def test_variants_share_images_and_differ_only_in_labels(sets):
    far, local = sets['far'], sets['local']
    for name in os.listdir(far['train_img']):
        assert filecmp.cmp(osp.join(far['train_img'], name), osp.join(local['train_img'], name),
                           shallow=False)
    diffs = [not np.array_equal(a[2], b[2]) for a, b in zip(_images(far), _images(local))]
    assert len(diffs) == 3
    for (_, _, la, _), (_, _, lb, _) in zip(_images(far), _images(local)):
        np.testing.assert_array_equal(np.isin(la, (1, 2)), np.isin(lb, (1, 2)))  # same blobs


def test_far_cue_is_at_least_the_minimum_distance_and_decides_the_class(sets):
    """Every labelled blob pixel is >= size/2 from the corner marker, whose colour is its class."""
    info = sets['far']
    assert info['requested_min_cue_distance'] == SIZE / 2
    assert info['cue_distance'] == info['min_far_distance'] >= SIZE / 2
    for split in ('train', 'val'):
        for _, img, label, meta in _images(info, split):
            y0, x0, y1, x1 = meta['corner_box']
            ys, xs = np.nonzero(np.isin(label, (1, 2)))
            assert ys.size > 0
            # distance of each pixel centre to the nearest pixel of the marker box
            dy = np.maximum(np.maximum(y0 - ys, ys - (y1 - 1)), 0)
            dx = np.maximum(np.maximum(x0 - xs, xs - (x1 - 1)), 0)
            assert np.hypot(dy, dx).min() >= SIZE / 2
            assert (label[y0:y1, x0:x1] == 0).all()  # the marker itself is ignored
            inner = img[y0 + 2:y1 - 2, x0 + 2:x1 - 2]
            assert set(np.unique(label[ys, xs])) == {_cue_class(inner)}
            assert set(np.unique(label)) <= {0, 1, 2, 3}


def test_local_cue_is_inside_each_blob_and_decides_its_class(sets):
    """Each blob is labelled by the dot it encloses, which is at most ~ a blob radius away."""
    info = sets['local']
    bound = 0.1 * SIZE * 1.25 * 1.5  # largest blob radius x irregularity, with slack
    assert info['cue_distance'] == info['max_local_distance'] <= bound
    assert info['min_far_distance'] >= SIZE / 2  # same images as 'far'
    checked = 0
    for _, img, label, _ in _images(info):
        blobs, n = ndimage.label(np.isin(label, (1, 2)))
        for k in range(1, n + 1):
            region = blobs == k
            # the dot: ignored pixels enclosed by this blob (its holes)
            dot = ndimage.binary_fill_holes(region) & ~region & (label == 0)
            if not dot.any():
                continue  # a blob cut by the image border can lose its enclosed dot
            checked += 1
            dist = ndimage.distance_transform_edt(~dot)
            assert dist[region].max() <= info['max_local_distance'] + 1e-6
            ys, xs = np.nonzero(ndimage.binary_erosion(dot))
            assert set(np.unique(label[region])) == {_cue_class(img[ys, xs])}
    assert checked >= 3


def test_impossible_distance_and_unknown_variant_raise(tmp_path):
    with pytest.raises(ValueError, match='lower min_cue_distance'):
        longrange_sample(0, 'train', 0, SIZE, min_cue_distance=SIZE * 2)
    with pytest.raises(ValueError, match='valid: far, local'):
        generate_longrange(str(tmp_path), 1, 1, SIZE, variant='near')


def test_reference_miou_is_the_cue_blind_oracle(sets):
    ref = reference_miou(sets['far']['val_ann'])
    assert ref['background'] == 100.0 and min(ref['cue_a'], ref['cue_b']) == 0.0
    assert 50.0 <= max(ref['cue_a'], ref['cue_b']) <= 100.0
    assert ref['mIoU'] == pytest.approx((100 + ref['cue_a'] + ref['cue_b']) / 3)


def test_mmseg_reads_it_with_the_longrange_config(sets):
    """configs/upernet_longrange_femto_synthetic.py's dataset loads the set: labels 0..2 + 255."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'upernet_longrange_femto_synthetic.py'))
    ds_cfg = cfg.val_dataloader.dataset
    ds_cfg.data_root = sets['far']['root']
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(ds_cfg)
        assert len(dataset) == 2 and dataset.metainfo['classes'] == ('cue_a', 'cue_b',
                                                                     'background')
        seg = dataset[0]['data_samples'].gt_sem_seg.data.numpy()
    assert set(np.unique(seg)) <= {0, 1, 2, 255} and {2, 255} <= set(np.unique(seg))


@pytest.mark.slow
def test_make_synthetic_longrange_subcommand(tmp_path):
    out = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'make_synthetic.py'),
                          'longrange', '--out', str(tmp_path), '--train', '1', '--val', '1',
                          '--size', str(SIZE), '--seed', '7', '--variant', 'far'],
                         capture_output=True, text=True, check=True)
    assert 'far: deciding cue >=' in out.stdout
    name = 'LR_train_00000001.png'
    ref = generate_longrange(str(tmp_path / 'ref'), 1, 1, SIZE, seed=7)
    assert filecmp.cmp(osp.join(tmp_path, 'annotations', 'training', name),
                       osp.join(ref['train_ann'], name), shallow=False)
