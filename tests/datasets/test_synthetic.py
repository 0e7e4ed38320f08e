"""Tests of the synthetic COCO- and ADE20K-format generators and their mmdet/mmseg loading."""
import filecmp
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from mambaout_dense.datasets import (
    ADE_CLASSES,
    ADE_LABEL_IDS,
    ADE_PALETTE,
    COCO_CLASSES,
    COCO_PALETTE,
    ade_sample,
    coco_sample,
    encode_mask,
    generate_ade,
    generate_coco,
)
from mambaout_dense.datasets.synthetic.shapes import SHAPES, rasterize, shape_polygons

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO_ROOT, 'tools', 'make_synthetic.py')
SIZE = 96


def _tree(root: str) -> list[str]:
    return sorted(osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _same_files(a: str, b: str) -> bool:
    files = _tree(a)
    return files == _tree(b) and all(
        filecmp.cmp(osp.join(a, f), osp.join(b, f), shallow=False) for f in files)


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('coco'))
    generate_coco(root, num_train=4, num_val=3, size=SIZE, seed=3)
    return root


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('ade'))
    generate_ade(root, num_train=3, num_val=4, size=SIZE, seed=3)
    return root


# ----------------------------------------------------------------------------- COCO format
def test_coco_layout(coco_root):
    assert _tree(coco_root) == sorted(
        ['annotations/instances_train2017.json', 'annotations/instances_val2017.json']
        + [f'train2017/{i:012d}.jpg' for i in range(1, 5)]
        + [f'val2017/{i:012d}.jpg' for i in range(1, 4)])
    img = cv2.imread(osp.join(coco_root, 'val2017', '000000000001.jpg'))
    assert img.shape == (SIZE, SIZE, 3)


def test_coco_is_deterministic_per_seed(coco_root, tmp_path):
    again, other = str(tmp_path / 'again'), str(tmp_path / 'other')
    generate_coco(again, num_train=4, num_val=3, size=SIZE, seed=3)
    generate_coco(other, num_train=4, num_val=3, size=SIZE, seed=4)
    assert _same_files(coco_root, again)  # json bytes and jpeg bytes
    for split in ('train', 'val'):
        ann = f'annotations/instances_{split}2017.json'
        assert not filecmp.cmp(osp.join(coco_root, ann), osp.join(other, ann), shallow=False)


def test_coco_splits_and_images_are_independent():
    train0, _ = coco_sample(0, 'train', 0, SIZE)
    assert not np.array_equal(train0, coco_sample(0, 'val', 0, SIZE)[0])
    assert not np.array_equal(train0, coco_sample(0, 'train', 1, SIZE)[0])
    np.testing.assert_array_equal(train0, coco_sample(0, 'train', 0, SIZE)[0])


@pytest.mark.parametrize('split', ['train', 'val'])
def test_coco_annotations_are_the_exact_visible_masks(coco_root, split):
    coco = COCO(osp.join(coco_root, 'annotations', f'instances_{split}2017.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(COCO_CLASSES)
    assert sorted(coco.getCatIds()) == list(range(1, len(COCO_CLASSES) + 1))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len({a['id'] for a in anns}) == len(anns)
    assert any(isinstance(a['segmentation'], list) for a in anns)  # polygons where exact
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        assert (info['width'], info['height']) == (SIZE, SIZE)
        _, instances = coco_sample(3, split, img_id - 1, SIZE)
        img_anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        assert 1 <= len(img_anns) <= 8
        assert [a['category_id'] for a in img_anns] == [c for c, _ in instances]
        union = np.zeros((SIZE, SIZE), int)
        for ann, (_, visible) in zip(img_anns, instances):
            decoded = coco.annToMask(ann).astype(bool)
            np.testing.assert_array_equal(decoded, visible)
            ys, xs = np.nonzero(decoded)
            assert ann['area'] == ys.size >= 30
            assert ann['bbox'] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(),
                                   ys.max() + 1 - ys.min()]
            assert ann['iscrowd'] == 0
            union += decoded
        assert union.max() <= 1  # occluded pixels belong to the occluder only


def test_coco_visible_masks_are_full_masks_minus_later_instances():
    occluded = 0
    for index in range(12):
        _, instances = coco_sample(0, 'train', index, 128, line_prob=0.0, return_full=True)
        for k, (_, visible, full) in enumerate(instances):
            later = np.zeros_like(full)
            for _, _, other in instances[k + 1:]:
                later |= other
            np.testing.assert_array_equal(visible, full & ~later)
            assert visible.sum() >= 0.4 * full.sum()  # heavily occluded instances are avoided
            occluded += int(np.any(full & later))
    assert occluded > 0  # occlusion does happen


@pytest.mark.parametrize('kind', SHAPES)
def test_encode_mask_roundtrip(kind):
    from pycocotools import mask as mask_utils
    rng = np.random.default_rng(0)
    fill, holes = shape_polygons(kind, 40.0, 0.7, rng)
    mask = rasterize(64, 64, fill, holes, offset=(30.3, 33.1))
    seg = encode_mask(mask)
    if kind == 'ring':
        assert isinstance(seg, dict) and isinstance(seg['counts'], str)  # holes need RLE
    else:
        assert isinstance(seg, list) and all(len(p) >= 6 and len(p) % 2 == 0 for p in seg)
    rle = mask_utils.frPyObjects(seg, 64, 64) if isinstance(seg, list) else [seg]
    np.testing.assert_array_equal(mask_utils.decode(mask_utils.merge(rle)).astype(bool), mask)
    rle_only = encode_mask(mask, 'rle')
    np.testing.assert_array_equal(mask_utils.decode(rle_only).astype(bool), mask)
    with pytest.raises(ValueError, match='mask_format'):
        encode_mask(mask, 'bitmap')


def test_coco_empty_fraction(tmp_path):
    paths = generate_coco(str(tmp_path), num_train=0, num_val=3, size=SIZE, seed=0,
                          empty_fraction=1.0)
    with open(paths['val_ann']) as f:
        content = json.load(f)
    assert len(content['images']) == 3 and content['annotations'] == []
    assert len(os.listdir(paths['val_img'])) == 3


def test_generate_refuses_to_mix_with_old_files(coco_root, tmp_path):
    root = str(tmp_path / 'c')
    generate_coco(root, num_train=2, num_val=1, size=SIZE, seed=0)
    with pytest.raises(FileExistsError, match='overwrite'):
        generate_coco(root, num_train=1, num_val=1, size=SIZE, seed=0)
    generate_coco(root, num_train=1, num_val=1, size=SIZE, seed=0, overwrite=True)
    assert os.listdir(osp.join(root, 'train2017')) == ['000000000001.jpg']


def test_mmdet_coco_dataset_reads_the_set(coco_root):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    dataset = CocoDataset(
        data_root=coco_root, ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=COCO_CLASSES, palette=COCO_PALETTE),
        pipeline=[LoadImageFromFile(), LoadAnnotations(with_bbox=True, with_mask=True),
                  PackDetInputs()],
        test_mode=False)
    coco = COCO(osp.join(coco_root, 'annotations', 'instances_val2017.json'))
    assert len(dataset) == 3
    for idx in range(len(dataset)):
        sample = dataset[idx]
        info = dataset.get_data_info(idx)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=info['img_id']))
        gt = sample['data_samples'].gt_instances
        assert sample['inputs'].shape == (3, SIZE, SIZE)
        assert len(gt) == len(anns)
        assert gt.masks.masks.shape == (len(anns), SIZE, SIZE)
        np.testing.assert_array_equal(gt.labels.numpy(), [a['category_id'] - 1 for a in anns])
        for k, ann in enumerate(anns):
            np.testing.assert_array_equal(gt.masks.masks[k], coco.annToMask(ann))
            x, y, w, h = ann['bbox']
            np.testing.assert_allclose(gt.bboxes.tensor[k].numpy(), [x, y, x + w, y + h])


# ----------------------------------------------------------------------------- ADE20K format
def test_ade_layout_and_label_values(ade_root):
    files = _tree(ade_root)
    expected = []
    for folder, prefix, n in (('training', 'ADE_train_', 3), ('validation', 'ADE_val_', 4)):
        for i in range(1, n + 1):
            expected += [f'images/{folder}/{prefix}{i:08d}.jpg',
                         f'annotations/{folder}/{prefix}{i:08d}.png']
    assert files == sorted(expected)
    seen = set()
    for f in files:
        if f.endswith('.png'):
            label = cv2.imread(osp.join(ade_root, f), cv2.IMREAD_UNCHANGED)
            assert label.dtype == np.uint8 and label.shape == (SIZE, SIZE)
            values = set(np.unique(label).tolist())
            assert values <= {0, *ADE_LABEL_IDS}
            assert np.mean(label == 0) < 0.15
            seen |= values
    assert len(seen) >= 5


def test_ade_covers_every_class_with_a_little_other():
    counts = np.zeros(256, np.int64)
    for index in range(16):
        img, label = ade_sample(0, 'train', index, 128)
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
        counts += np.bincount(label.ravel(), minlength=256)
    assert all(counts[i] > 0 for i in ADE_LABEL_IDS)
    assert 0.002 < counts[0] / counts.sum() < 0.1


def test_ade_is_deterministic_per_seed(ade_root, tmp_path):
    again, other = str(tmp_path / 'again'), str(tmp_path / 'other')
    generate_ade(again, num_train=3, num_val=4, size=SIZE, seed=3)
    generate_ade(other, num_train=3, num_val=4, size=SIZE, seed=4)
    assert _same_files(ade_root, again)
    name = 'annotations/validation/ADE_val_00000001.png'
    assert not np.array_equal(cv2.imread(osp.join(ade_root, name), cv2.IMREAD_UNCHANGED),
                              cv2.imread(osp.join(other, name), cv2.IMREAD_UNCHANGED))


def test_ade_metainfo_matches_mmseg_ade20k():
    from mmseg.datasets import ADE20KDataset
    names, palette = ADE20KDataset.METAINFO['classes'], ADE20KDataset.METAINFO['palette']
    assert [names.index(c) + 1 for c in ADE_CLASSES] == list(ADE_LABEL_IDS)
    assert [list(palette[i - 1]) for i in ADE_LABEL_IDS] == ADE_PALETTE
    assert list(ADE_LABEL_IDS) == sorted(ADE_LABEL_IDS)


def test_mmseg_ade20k_dataset_maps_labels_to_classes(ade_root):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import ADE20KDataset
    from mmseg.datasets.transforms import LoadAnnotations, PackSegInputs
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    dataset = ADE20KDataset(
        data_root=ade_root,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        metainfo=dict(classes=ADE_CLASSES, palette=ADE_PALETTE), reduce_zero_label=True,
        pipeline=[LoadImageFromFile(), LoadAnnotations(reduce_zero_label=True), PackSegInputs()])
    assert len(dataset) == 4
    lut = np.full(256, 255, np.uint8)
    lut[list(ADE_LABEL_IDS)] = np.arange(len(ADE_CLASSES))
    for idx in range(len(dataset)):
        sample = dataset[idx]
        seg = sample['data_samples'].gt_sem_seg.data.numpy()[0]
        png = cv2.imread(dataset.get_data_info(idx)['seg_map_path'], cv2.IMREAD_UNCHANGED)
        assert sample['inputs'].shape == (3, SIZE, SIZE)
        assert set(np.unique(seg).tolist()) <= set(range(len(ADE_CLASSES))) | {255}
        np.testing.assert_array_equal(seg, lut[png])  # class i <-> ADE_CLASSES[i]


# ----------------------------------------------------------------------------- CLI
def _cli(*args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TOOL, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_cli_writes_both_sets_from_any_directory(tmp_path, coco_root):
    out = tmp_path / 'coco'
    res = _cli('coco', '--out', str(out), '--train', '4', '--val', '3', '--size', str(SIZE),
               '--seed', '3', cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert 'images/s' in res.stdout
    assert _same_files(coco_root, str(out))  # the CLI and the library agree
    again = _cli('coco', '--out', str(out), '--train', '1', '--val', '1', '--size', str(SIZE),
                 cwd=str(tmp_path))
    assert again.returncode != 0 and 'overwrite' in again.stderr

    res = _cli('ade', '--out', 'ade', '--train', '2', '--val', '1', '--size', '64', '--seed', '1',
               cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(tmp_path / 'ade' / 'annotations' / 'training')) == [
        'ADE_train_00000001.png', 'ADE_train_00000002.png']
