"""Bad data: reported with the file (and annotation ids and counts), never silent, never a crash
deep inside a loss. Covers ``mambaout_dense.CheckedCocoDataset`` and
``mambaout_dense.CheckedADE20KDataset`` (the synthetic configs use them) and how mmcv's image
loader treats grayscale, RGBA, 16-bit, EXIF-rotated, truncated and empty images.
"""
import copy
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

import mambaout_dense.engine  # noqa: F401  (hooks)
import mambaout_dense.safe_io  # noqa: F401  (safe loader, atomic writes)
from mambaout_dense.builder import init_task_scope
from mambaout_dense.datasets.checked_ade import CheckedADE20KDataset
from mambaout_dense.datasets.checked_coco import CheckedCocoDataset
from mambaout_dense.errors import DataError

from .helpers import DET_CONFIG, SEG_CONFIG, log_messages, make_ade, make_coco

ANN = 'annotations/instances_train2017.json'
DET_PIPELINE = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                dict(type='PackDetInputs')]
SEG_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')]
ADE_CLASSES = Config.fromfile(SEG_CONFIG).metainfo


@pytest.fixture(scope='module')
def coco_src(tmp_path_factory):
    return make_coco(str(tmp_path_factory.mktemp('coco_src') / 'coco'))


@pytest.fixture(scope='module')
def ade_src(tmp_path_factory):
    return make_ade(str(tmp_path_factory.mktemp('ade_src') / 'ade'))


@pytest.fixture
def coco(coco_src, tmp_path):
    """A private copy of the tiny COCO set (tests edit it)."""
    root = str(tmp_path / 'coco')
    shutil.copytree(coco_src, root)
    return root


@pytest.fixture
def ade(ade_src, tmp_path):
    root = str(tmp_path / 'ade')
    shutil.copytree(ade_src, root)
    return root


def _coco(root, test_mode=False, pipeline=DET_PIPELINE, ann=ANN, **kwargs):
    init_task_scope(Config(dict(default_scope='mmdet')))
    with DefaultScope.overwrite_default_scope('mmdet'):
        return CheckedCocoDataset(
            data_root=root + '/', ann_file=ann, data_prefix=dict(img='train2017/'),
            metainfo=dict(classes=('disc', 'square', 'triangle', 'star', 'ring', 'cross')),
            filter_cfg=None if test_mode else dict(filter_empty_gt=True, min_size=4),
            test_mode=test_mode, pipeline=pipeline, **kwargs)


def _ade(root, pipeline=SEG_PIPELINE, **kwargs):
    init_task_scope(Config(dict(default_scope='mmseg')))
    with DefaultScope.overwrite_default_scope('mmseg'):
        return CheckedADE20KDataset(
            data_root=root, metainfo=ADE_CLASSES, reduce_zero_label=True, pipeline=pipeline,
            data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
            **kwargs)


def _sample(dataset, idx):
    scope = 'mmdet' if isinstance(dataset, CheckedCocoDataset) else 'mmseg'
    with DefaultScope.overwrite_default_scope(scope):
        return dataset[idx]


def _edit_json(root, edit):
    path = osp.join(root, ANN)
    with open(path) as f:
        content = json.load(f)
    edit(content)
    with open(path, 'w') as f:
        json.dump(content, f)
    return content


# --------------------------------------------------------------------------------------------
# COCO annotation files
# --------------------------------------------------------------------------------------------
def test_malformed_json_names_the_file_and_position(coco):
    path = osp.join(coco, ANN)
    text = open(path).read()
    with open(path, 'w') as f:
        f.write(text[:len(text) // 2])
    with pytest.raises(DataError, match=r"instances_train2017.json' is not valid JSON: .* at "
                       r'line 1, column \d+'):
        _coco(coco)
    with open(path, 'w') as f:
        json.dump([1, 2], f)
    with pytest.raises(DataError, match='expected a JSON object with images'):
        _coco(coco)


def test_images_missing_on_disk_are_named_at_load_time(coco):
    for name in ('000000000002.jpg', '000000000005.jpg'):
        os.remove(osp.join(coco, 'train2017', name))
    with pytest.raises(DataError, match=r"2 image\(s\) listed in .* are missing: "
                       r"'.*train2017/000000000002.jpg', '.*train2017/000000000005.jpg'"):
        _coco(coco)


def _poison(content):
    anns = content['annotations']
    base = max(a['id'] for a in anns)
    on_img1 = [a for a in anns if a['image_id'] == 1]

    def clone(src, **changes):
        new = copy.deepcopy(src)
        new.update(changes)
        anns.append(new)
        return new

    clone(on_img1[0], id=base + 1, category_id=99)  # unknown category
    clone(on_img1[0], id=base + 2, category_id=42)
    clone(on_img1[0], id=base + 3, bbox=[10, 10, 0, 20])  # non-positive size
    clone(on_img1[0], id=base + 4, bbox=[10, 10, 20, -5])
    clone(on_img1[0], id=base + 5, segmentation=[[10, 10, 20, 20]])  # 2 points
    clone(on_img1[0], id=base + 6, segmentation=[[10, 10, 40, 10, 40, 40], [1, 1]])  # one bad part
    clone(on_img1[0], id=on_img1[0]['id'])  # duplicate id


def test_bad_annotations_are_skipped_with_one_counted_warning_per_kind(coco):
    content = _edit_json(coco, _poison)
    with log_messages() as messages:
        dataset = _coco(coco)
    assert dataset.skip_counts == {
        'unknown category id': 2,
        'non-positive box size': 2,
        'degenerate polygon (< 3 points)': 1,
        'degenerate polygon part (< 3 points) removed': 1,
        'duplicate annotation id': 1,
    }
    reports = [m for m in messages if ' annotation(s): ' in m]
    assert len(reports) == 5, reports  # one warning per kind
    for kind, count in dataset.skip_counts.items():
        action = 'repaired' if 'removed' in kind else 'skipped'
        lines = [m for m in reports if f'{action} {count} annotation(s): {kind} (ids ' in m]
        assert len(lines) == 1 and 'instances_train2017.json' in lines[0], (kind, reports)
    n_ok = len(content['annotations']) - 7
    kept = sum(len(dataset.get_data_info(i)['instances']) for i in range(len(dataset)))
    assert kept == n_ok + 1  # + the repaired one
    for idx in range(len(dataset)):  # every sample goes through the pipeline
        sample = _sample(dataset, idx)
        gt = sample['data_samples'].gt_instances
        assert len(gt.bboxes) == len(gt.masks) > 0
        widths = gt.bboxes.tensor[:, 2] - gt.bboxes.tensor[:, 0]
        assert bool((widths > 0).all()) and bool((gt.labels < 6).all())


def test_mmdet_coco_dataset_crashes_on_the_same_file(coco):
    """Why the checked dataset exists: mmdet's own CocoDataset asserts on duplicate ids."""
    from mmdet.datasets import CocoDataset
    _edit_json(coco, _poison)
    init_task_scope(Config(dict(default_scope='mmdet')))
    with DefaultScope.overwrite_default_scope('mmdet'):
        with pytest.raises(AssertionError, match='are not unique'):
            CocoDataset(data_root=coco + '/', ann_file=ANN, data_prefix=dict(img='train2017/'),
                        pipeline=DET_PIPELINE)


@pytest.mark.slow
def test_cleaned_annotations_train_without_a_crash_in_the_loss(coco):
    """One Mask R-CNN training step on the cleaned images gives finite losses."""
    from mmdet.registry import MODELS
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import OptimWrapper
    _edit_json(coco, _poison)
    dataset = _coco(coco)
    cfg = Config.fromfile(DET_CONFIG)
    model = MODELS.build(cfg.model)
    batch = pseudo_collate([_sample(dataset, 0), _sample(dataset, 1)])
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    log_vars = model.train_step(batch, optim)
    assert all(torch.isfinite(v).all() for v in log_vars.values()), log_vars


def test_images_without_annotations_skipped_in_training_kept_in_evaluation(coco):
    _edit_json(coco, lambda c: c.update(annotations=[a for a in c['annotations']
                                                     if a['image_id'] not in (3, 7)]))
    with log_messages() as messages:
        train = _coco(coco)
    assert len(train) == 6 and train.empty_images_skipped == 2
    assert any('training on 6 of 8 images (2 without annotations' in m for m in messages)
    test = _coco(coco, test_mode=True)
    assert len(test) == 8
    empty = next(i for i in range(8) if test.get_data_info(i)['img_id'] == 3)
    assert len(_sample(test, empty)['data_samples'].gt_instances) == 0


# --------------------------------------------------------------------------------------------
# Image files
# --------------------------------------------------------------------------------------------
def _replace_image(root, name, writer):
    path = osp.join(root, 'train2017', name)
    writer(path)
    return path


def test_zero_byte_and_undecodable_images_are_named_at_load_time(coco):
    path = _replace_image(coco, '000000000004.jpg', lambda p: open(p, 'wb').close())
    with pytest.raises(DataError, match=f'image file is empty \\(0 bytes\\): {path!r}'):
        _coco(coco)
    _replace_image(coco, '000000000004.jpg', lambda p: open(p, 'wb').write(b'not a JPEG' * 9))
    with pytest.raises(DataError, match=f'cannot read image {path!r}'):
        _coco(coco)


def test_truncated_image_fails_with_its_name_when_loaded(coco):
    def truncate(path):
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[:len(data) // 2])

    path = _replace_image(coco, '000000000004.jpg', truncate)
    dataset = _coco(coco, test_mode=True)  # the header is intact: load time passes
    idx = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['img_path'] == path)
    with pytest.raises(DataError, match=f'failed to load {path!r}: AssertionError'):
        _sample(dataset, idx)


def test_zero_byte_image_at_run_time_is_named(coco):
    """Without load-time validation, mmcv's loader fails in OpenCV without naming the file;
    the dataset adds the name."""
    dataset = _coco(coco, test_mode=True, validate_images=False)
    path = dataset.get_data_info(0)['img_path']
    open(path, 'wb').close()
    with pytest.raises(DataError, match=f'failed to load {path!r}: error: OpenCV'):
        _sample(dataset, 0)


def _pixels(size=128):
    rng = np.random.default_rng(0)
    return (rng.random((size, size, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize('kind', ['gray', 'rgba', 'gray16', 'rgb16'])
def test_grayscale_rgba_and_16_bit_images_become_8_bit_bgr(coco, kind):
    """mmcv (color_type='color') converts: grayscale -> 3 equal channels, RGBA -> alpha
    dropped, 16 bit -> scaled to 8 bit (value // 257 ~ value >> 8)."""
    rgb = _pixels()
    bgr, gray = rgb[..., ::-1], rgb[..., :1]
    stored = dict(gray=gray[..., 0],  # what cv2.imwrite gets (BGR channel order)
                  rgba=np.dstack([bgr, np.full(rgb.shape[:2], 7, np.uint8)]),
                  gray16=gray[..., 0].astype(np.uint16) * 257,
                  rgb16=bgr.astype(np.uint16) * 257)[kind]
    expected = dict(gray=np.repeat(gray, 3, axis=2), rgba=bgr,
                    gray16=np.repeat(gray, 3, axis=2), rgb16=bgr)[kind]

    def write(content):
        for img in content['images']:
            if img['id'] == 1:
                img['file_name'] = f'{kind}.png'

    _edit_json(coco, write)
    path = osp.join(coco, 'train2017', f'{kind}.png')
    cv2.imwrite(path, np.ascontiguousarray(stored))
    dataset = _coco(coco, test_mode=True)
    idx = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['img_path'] == path)
    image = _sample(dataset, idx)['inputs']  # (3, H, W) uint8, BGR
    assert image.shape == (3, 128, 128) and image.dtype == torch.uint8
    assert torch.equal(image.permute(1, 2, 0), torch.from_numpy(np.ascontiguousarray(expected)))


def _exif_jpeg(path, orientation=6, height=96):
    """A 128 x ``height`` (w x h) JPEG with an EXIF orientation (6: rotate 90 degrees to display,
    96 x 128)."""
    img = Image.fromarray(_pixels()[:height])
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes(), quality=95)


def test_exif_rotated_image_whose_annotations_use_stored_pixels_is_an_error(coco):
    def edit(content):
        for img in content['images']:
            if img['id'] == 1:
                img.update(file_name='exif.jpg', width=128, height=96)
        content['annotations'] = [a for a in content['annotations'] if a['image_id'] != 1]

    _edit_json(coco, edit)
    path = osp.join(coco, 'train2017', 'exif.jpg')
    _exif_jpeg(path)
    with pytest.raises(DataError, match=f"image {path!r} is 96x128 as loaded but .* says "
                       r"128x96 \(its EXIF orientation 6, rotated by 90 degrees, is applied as "
                       r"loaded.*color_ignore_orientation"):
        _coco(coco, test_mode=True)
    # the loader that ignores the orientation matches the annotations
    pipeline = [dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
                dict(type='PackDetInputs')]
    dataset = _coco(coco, test_mode=True, pipeline=pipeline)
    idx = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['img_path'] == path)
    assert tuple(_sample(dataset, idx)['inputs'].shape) == (3, 96, 128)


def test_exif_rotated_image_annotated_as_displayed_loads_rotated(coco):
    def edit(content):
        for img in content['images']:
            if img['id'] == 1:
                img.update(file_name='exif.jpg', width=96, height=128)
        content['annotations'] = [a for a in content['annotations'] if a['image_id'] != 1]

    _edit_json(coco, edit)
    path = osp.join(coco, 'train2017', 'exif.jpg')
    _exif_jpeg(path)
    dataset = _coco(coco, test_mode=True, pipeline=[dict(type='LoadImageFromFile'),
                                                    dict(type='PackDetInputs')])
    idx = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['img_path'] == path)
    assert tuple(_sample(dataset, idx)['inputs'].shape) == (3, 128, 96)  # EXIF applied


def _square_exif_image(coco, orientation):
    """Image 1 of the set becomes a 128 x 128 JPEG tagged with ``orientation`` (its annotation
    file entry, 128 x 128, is unchanged: it fits the stored and the displayed image alike)."""
    def edit(content):
        for img in content['images']:
            if img['id'] == 1:
                img.update(file_name='exif.jpg', width=128, height=128)

    _edit_json(coco, edit)
    path = osp.join(coco, 'train2017', 'exif.jpg')
    _exif_jpeg(path, orientation, height=128)
    return path


def _stored_bgr(path):
    return torch.from_numpy(cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION))


@pytest.mark.parametrize('orientation', range(2, 9))
def test_exif_orientation_that_keeps_the_size_is_refused_with_both_fixes(coco, orientation):
    """Orientations 2-8 on a square image: mmcv loads the displayed image while the annotations
    may be drawn on the stored pixels, and the size cannot tell. Refused, naming both fixes."""
    path = _square_exif_image(coco, orientation)
    ignore = [dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
              dict(type='PackDetInputs')]
    # the hazard is real: unchecked, mmcv hands on other pixels than the stored ones
    dataset = _coco(coco, test_mode=True, validate_images=False,
                    pipeline=[dict(type='LoadImageFromFile'), dict(type='PackDetInputs')])
    idx = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['img_path'] == path)
    loaded = _sample(dataset, idx)['inputs'].permute(1, 2, 0)  # (H, W, 3) BGR
    assert loaded.shape == (128, 128, 3) and not torch.equal(loaded, _stored_bgr(path))
    with pytest.raises(DataError, match=f"image {path!r} carries the EXIF orientation "
                       f"{orientation} .*color_ignore_orientation.*exif_transpose"):
        _coco(coco, test_mode=True)
    # the first fix: annotations on the stored pixels, loaded as stored
    dataset = _coco(coco, test_mode=True, pipeline=ignore)
    loaded = _sample(dataset, idx)['inputs'].permute(1, 2, 0)
    assert torch.equal(loaded, _stored_bgr(path))


def test_exif_image_saved_upright_loads(coco):
    """The second fix: the image saved upright without the tag passes."""
    from PIL import ImageOps
    path = _square_exif_image(coco, 3)
    with Image.open(path) as img:
        ImageOps.exif_transpose(img).save(path, quality=95)
    _coco(coco, test_mode=True)


@pytest.mark.parametrize('orientation', [2, 6])
def test_exif_orientation_of_an_image_beside_a_label_map_of_its_size_is_refused(ade,
                                                                               orientation):
    """The same for ADE20K: a square image tagged 2-8 whose label map has its size."""
    path = osp.join(ade, 'images', 'training', 'ADE_train_00000003.jpg')
    with Image.open(path) as img:
        pixels = np.array(img.convert('RGB'))
    tagged = Image.fromarray(pixels)
    exif = tagged.getexif()
    exif[0x0112] = orientation
    tagged.save(path, exif=exif.tobytes(), quality=95)
    with pytest.raises(DataError, match=f"image {path!r} carries the EXIF orientation "
                       f"{orientation} .*its label map '.*ADE_train_00000003.png'"):
        _ade(ade)


# --------------------------------------------------------------------------------------------
# ADE20K label maps
# --------------------------------------------------------------------------------------------
def _label(root, i=3):
    return osp.join(root, 'annotations', 'training', f'ADE_train_{i:08d}.png')


def test_valid_synthetic_ade_set_passes(ade):
    dataset = _ade(ade)
    assert len(dataset) == 8
    gt = _sample(dataset, 0)['data_samples'].gt_sem_seg.data
    assert bool(((gt < 8) | (gt == 255)).all())


def test_missing_folders_are_named(ade):
    shutil.rmtree(osp.join(ade, 'images', 'training'))
    shutil.rmtree(osp.join(ade, 'annotations', 'training'))
    with pytest.raises(DataError, match=r"missing image folder '.*images/training', label "
                       r"folder '.*annotations/training'"):
        _ade(ade)


def test_missing_label_map_is_named(ade):
    os.remove(_label(ade, 5))
    with pytest.raises(DataError, match=r"1 label map\(s\) missing: '.*ADE_train_00000005.png'"):
        _ade(ade)


def _write_label(path, transform):
    label = np.array(Image.open(path))
    Image.fromarray(transform(label)).save(path)


def test_label_value_outside_the_class_range_names_file_and_value(ade):
    path = _label(ade)
    _write_label(path, lambda lab: np.where(lab == lab.max(), 200, lab).astype(np.uint8))
    with pytest.raises(DataError, match=f"label map {path!r} holds value\\(s\\) \\[200\\] "
                       r'outside the valid ids 0..150 and 255 \(150 classes, 0 = ignored'):
        _ade(ade)


def test_16_bit_label_values_are_checked_before_uint8_wraps_them(ade):
    path = _label(ade)
    _write_label(path, lambda lab: np.where(lab == lab.max(), 300, lab.astype(np.uint16)))
    with pytest.raises(DataError, match=r'holds value\(s\) \[300\]'):
        _ade(ade)


def test_colour_label_map_is_refused(ade):
    path = _label(ade)
    _write_label(path, lambda lab: np.dstack([lab] * 3))
    with pytest.raises(DataError, match=f"label map {path!r} has shape \\(128, 128, 3\\)"):
        _ade(ade)


def test_image_label_size_mismatch_names_the_pair(ade):
    path = _label(ade)
    _write_label(path, lambda lab: lab[:100])
    with pytest.raises(DataError, match=r"image '.*ADE_train_00000003.jpg' is 128x128 as "
                       f"loaded but its label map {path!r} says 128x100"):
        _ade(ade)


def test_without_eager_validation_the_sample_check_names_the_file(ade):
    """validate_labels=False: the bad value is caught per sample after the pipeline, where
    plain mmseg hands it on to the loss."""
    from mmseg.datasets import ADE20KDataset
    path = _label(ade)
    _write_label(path, lambda lab: np.where(lab == lab.max(), 200, lab).astype(np.uint8))
    dataset = _ade(ade, validate_labels=False)
    idx = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['seg_map_path'] == path)
    with pytest.raises(DataError, match=f"label map {path!r}: value\\(s\\) \\[199\\] after the "
                       r'pipeline are outside 0..7'):
        _sample(dataset, idx)
    with DefaultScope.overwrite_default_scope('mmseg'):
        plain = ADE20KDataset(
            data_root=ade, metainfo=ADE_CLASSES, reduce_zero_label=True, pipeline=SEG_PIPELINE,
            data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
        gt = plain[idx]['data_samples'].gt_sem_seg.data
    assert 199 in gt.unique().tolist()  # silently out of range for an 8-class head


def _predictions(images):
    results = []
    for img in images:
        masks = torch.zeros(1, img['height'], img['width'], dtype=torch.bool)
        masks[0, 10:40, 10:40] = True
        results.append(dict(img_id=img['id'], ori_shape=(img['height'], img['width']),
                            pred_instances=dict(bboxes=torch.tensor([[10., 10., 40., 40.]]),
                                                scores=torch.tensor([0.9]),
                                                labels=torch.tensor([0]), masks=masks)))
    return results


def test_evaluation_ground_truth_is_cleaned_too(coco):
    """The synthetic config's metric (CheckedCocoMetric) skips the bad ground truth with counted
    warnings and evaluates; mmdet's CocoMetric crashes inside pycocotools on the same file. An
    image without annotations is harmless."""
    from mmdet.evaluation import CocoMetric

    from mambaout_dense.evaluation.coco_metric import CheckedCocoMetric

    def edit(content):
        _poison(content)
        content['annotations'] = [a for a in content['annotations'] if a['image_id'] != 2]

    content = _edit_json(coco, edit)
    meta = dict(classes=('disc', 'square', 'triangle', 'star', 'ring', 'cross'))
    path = osp.join(coco, ANN)
    with log_messages() as messages:
        metric = CheckedCocoMetric(ann_file=path, metric=['bbox', 'segm'])
    assert len([m for m in messages if ' annotation(s): ' in m]) == 5
    metric.dataset_meta = meta
    metric.process({}, _predictions(content['images']))
    scores = metric.compute_metrics(metric.results)
    assert 0 <= scores['bbox_mAP'] <= 1 and 0 <= scores['segm_mAP'] <= 1, scores
    plain = CocoMetric(ann_file=path, metric=['bbox', 'segm'])
    plain.dataset_meta = meta
    plain.process({}, _predictions(content['images']))
    with pytest.raises(TypeError, match="Argument 'bb' has incorrect type"):
        plain.compute_metrics(plain.results)  # the 2-point polygon, deep in pycocotools


def test_synthetic_configs_use_the_checked_classes():
    det, seg = Config.fromfile(DET_CONFIG), Config.fromfile(SEG_CONFIG)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert det[loader].dataset.type == 'mambaout_dense.CheckedCocoDataset'
        assert seg[loader].dataset.type == 'mambaout_dense.CheckedADE20KDataset'
    assert det.val_evaluator.type == det.test_evaluator.type == 'mambaout_dense.CheckedCocoMetric'
