"""Dataset adapters that validate their inputs: COCO instances (mmdet) and ADE20K (mmseg).

mmdet's ``CocoDataset`` drops some bad annotations silently (unknown categories, empty boxes),
asserts on others (duplicate ids) and passes the rest (degenerate polygons, a missing image) on
to fail deep inside a transform or a loss. mmseg's ``ADE20KDataset`` takes label maps at face
value: a value outside the class range reaches the cross-entropy as an out-of-bounds target.
The subclasses here check at load time and report with the file, the annotation ids and counts:

* :class:`CheckedCocoDataset` -- a malformed or unreadable annotation file, images missing on
  disk, empty or unreadable image files, and images whose size (after EXIF rotation, where the
  loader applies it) differs from the annotation file raise :class:`DataError`. Annotations with
  unknown image or category ids, duplicate ids, malformed or non-positive boxes, boxes outside
  the image, degenerate polygons (< 3 points) or missing masks are skipped with ONE warning per
  kind that counts them (``skip_counts`` keeps the numbers). In training, images left without
  annotations are dropped (``filter_cfg.filter_empty_gt``); in evaluation they are kept.
* :class:`CheckedADE20KDataset` -- missing folders, images without a label map, image/label
  size mismatches, label maps with several channels and label values outside the class range
  raise :class:`DataError` naming the file (values are read eagerly with ``validate_labels=True``;
  every sample is also checked after its pipeline).

Both wrap loading errors of a sample (an empty, truncated or undecodable image) into a
:class:`DataError` that names the file. How mmcv's ``LoadImageFromFile`` reads unusual images
(OpenCV 5, verified by ``tests/reliability/test_bad_data.py``): with ``color_type='color'``
grayscale and RGBA images become 3-channel BGR (alpha dropped), 16-bit images are scaled to
8 bit, and the EXIF orientation is applied; ``'color_ignore_orientation'`` and ``'unchanged'``
ignore it. A truncated JPEG/PNG fails to decode (mmcv's assertion names the file).
"""
import json
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from mmdet.datasets import CocoDataset
from mmengine.logging import print_log
from mmseg.datasets import ADE20KDataset

from ..engine.launch import DataError
from ..registry import DATASETS

__all__ = [
    'CheckedCocoDataset', 'CheckedADE20KDataset', 'SkipReport', 'image_size_as_loaded',
    'clean_coco', 'read_coco_json', 'coco_api_from_dict'
]

_EXIF_ORIENTATION = 0x0112
_LOADING_ERRORS: Tuple[type, ...] = (OSError, ValueError, AssertionError)
try:  # OpenCV's error type is not an OSError
    import cv2
    _LOADING_ERRORS += (cv2.error, )
except ImportError:  # pragma: no cover - mmcv requires OpenCV
    pass


class SkipReport:
    """Counts skipped (or repaired) annotations per kind and logs one warning per kind.

    Args:
        source (str): File named in the warnings.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.counts: 'OrderedDict[str, int]' = OrderedDict()
        self.examples: Dict[str, List[Any]] = {}
        self.actions: Dict[str, str] = {}

    def add(self, kind: str, example: Any, action: str = 'skipped') -> None:
        """Count one annotation of ``kind``; keep the first few ids as examples."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.actions[kind] = action
        examples = self.examples.setdefault(kind, [])
        if len(examples) < 5:
            examples.append(example)

    def log(self) -> None:
        """One warning per kind: what was done, how often, example ids."""
        for kind, count in self.counts.items():
            more = ', ...' if count > len(self.examples[kind]) else ''
            ids = ', '.join(str(e) for e in self.examples[kind]) + more
            print_log(f'{self.source}: {self.actions[kind]} {count} annotation(s): {kind} '
                      f'(ids {ids})', logger='current', level=30)


def _find_transform(pipeline: Any, name: str) -> Optional[Any]:
    for transform in getattr(pipeline, 'transforms', []):
        if type(transform).__name__ == name:
            return transform
    return None


def image_size_as_loaded(path: str, applies_exif: bool) -> Tuple[int, int]:
    """(width, height) of an image file as the loader will see it, from its header only.

    Args:
        path (str): Image file.
        applies_exif (bool): The loader rotates by the EXIF orientation (mmcv with
            ``color_type='color'`` / ``'grayscale'``).

    Raises:
        DataError: Empty or unreadable file.
    """
    from PIL import Image, UnidentifiedImageError
    if osp.getsize(path) == 0:
        raise DataError(f'image file is empty (0 bytes): {path!r}')
    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1) if applies_exif else 1
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f'cannot read image {path!r}: {err}') from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _loader_applies_exif(pipeline: Any) -> bool:
    loader = _find_transform(pipeline, 'LoadImageFromFile')
    color_type = getattr(loader, 'color_type', 'color')
    return 'ignore_orientation' not in color_type and color_type != 'unchanged'


def _wrap_loading_error(err: Exception, info: dict) -> DataError:
    files = [info[k] for k in ('img_path', 'seg_map_path') if info.get(k)]
    return DataError(f'failed to load {" / ".join(map(repr, files))}: '
                     f'{type(err).__name__}: {str(err).strip()}')


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------
def _read_json(path: str) -> dict:
    if not osp.isfile(path):
        raise DataError(f'annotation file not found: {path!r}')
    try:
        with open(path, encoding='utf-8') as f:
            content = json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f'annotation file {path!r} is not valid JSON: {err.msg} at line '
                        f'{err.lineno}, column {err.colno}') from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f'cannot read annotation file {path!r}: {err}') from None
    if not isinstance(content, dict):
        raise DataError(f'annotation file {path!r}: expected a JSON object with images, '
                        f'annotations and categories, got {type(content).__name__}')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(content.get(key), list):
            raise DataError(f'annotation file {path!r}: "{key}" is missing or not a list')
    return content


def read_coco_json(path: str) -> dict:
    """Parse a COCO annotation file; :class:`DataError` names the file when it is missing,
    not JSON (with line and column) or lacks ``images`` / ``annotations`` / ``categories``."""
    return _read_json(path)


def coco_api_from_dict(content: dict, api: Any = None) -> Any:
    """Index an annotation dict with mmdet's COCO API class (without reading a file)."""
    if api is None:
        from mmdet.datasets.api_wrappers import COCO as api
    coco = api()
    coco.dataset = content
    coco.createIndex()
    coco.img_ann_map, coco.cat_img_map = coco.imgToAnns, coco.catToImgs  # mmdet's aliases
    return coco


def _finite_numbers(values: Any, length: Optional[int] = None) -> bool:
    if not isinstance(values, (list, tuple)) or (length is not None and len(values) != length):
        return False
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
               for v in values)


def clean_coco(content: dict, source: str, need_masks: bool = False) -> Tuple[dict, SkipReport]:
    """Drop the annotations mmdet cannot train on, counting each kind.

    Args:
        content (dict): The parsed annotation file.
        source (str): File name for messages.
        need_masks (bool): The pipeline loads masks, so annotations without one are skipped.
            Defaults to False.

    Returns:
        tuple[dict, SkipReport]: A new annotation dict (images and categories unchanged,
        annotations filtered and repaired) and what was skipped.

    Raises:
        DataError: An image entry without ``id``, ``file_name``, ``width`` or ``height``, or
            with a duplicate id.
    """
    report = SkipReport(source)
    images: Dict[Any, dict] = {}
    for img in content['images']:
        if not isinstance(img, dict) or any(k not in img for k in ('id', 'file_name',
                                                                   'width', 'height')):
            raise DataError(f'{source}: image entry without id/file_name/width/height: '
                            f'{str(img)[:200]}')
        if img['id'] in images:
            raise DataError(f'{source}: image id {img["id"]} appears twice '
                            f'({images[img["id"]]["file_name"]!r}, {img["file_name"]!r})')
        images[img['id']] = img
    category_ids = {c.get('id') for c in content['categories'] if isinstance(c, dict)}
    seen_ids, kept = set(), []
    for ann in content['annotations']:
        ann_id = ann.get('id') if isinstance(ann, dict) else None
        if not isinstance(ann, dict) or ann_id is None:
            report.add('entry without an id', str(ann)[:40])
            continue
        if ann_id in seen_ids:
            report.add('duplicate annotation id', ann_id)
            continue
        seen_ids.add(ann_id)
        img = images.get(ann.get('image_id'))
        if img is None:
            report.add('image id not in "images"', ann_id)
            continue
        if ann.get('category_id') not in category_ids:
            report.add('unknown category id', ann_id)
            continue
        bbox = ann.get('bbox')
        if not _finite_numbers(bbox, 4):
            report.add('malformed bbox (not 4 finite numbers)', ann_id)
            continue
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            report.add('non-positive box size', ann_id)
            continue
        if w < 1 or h < 1:
            report.add('box smaller than 1 pixel', ann_id)
            continue
        if min(x + w, img['width']) <= max(x, 0) or min(y + h, img['height']) <= max(y, 0):
            report.add('box outside the image', ann_id)
            continue
        ann = dict(ann)
        area = ann.get('area')
        if not (isinstance(area, (int, float)) and np.isfinite(area) and area > 0):
            report.add('missing or non-positive area', ann_id)
            continue
        seg = ann.get('segmentation')
        if isinstance(seg, list) and seg and not ann.get('iscrowd', False):
            parts = [p for p in seg if _finite_numbers(p) and len(p) >= 6 and len(p) % 2 == 0]
            if not parts:
                report.add('degenerate polygon (< 3 points)', ann_id)
                continue
            if len(parts) < len(seg):
                report.add('degenerate polygon part (< 3 points) removed', ann_id,
                           action='repaired')
                ann['segmentation'] = parts
        elif isinstance(seg, dict):
            size = seg.get('size')
            if not (isinstance(size, (list, tuple)) and list(size) == [img['height'],
                                                                       img['width']]):
                report.add('RLE mask size differs from the image size', ann_id)
                continue
        elif need_masks and not ann.get('iscrowd', False):
            report.add('no segmentation (masks are loaded)', ann_id)
            continue
        kept.append(ann)
    cleaned = dict(content)
    cleaned['annotations'] = kept
    return cleaned, report


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` with load-time validation and counted skips.

    Args:
        validate_images (bool): Read every image header at load time: empty or unreadable
            files and sizes that differ from the annotation file raise :class:`DataError`.
            Defaults to True. (Existence is always checked.)
        *args, **kwargs: As for ``mmdet.datasets.CocoDataset``.

    Attributes:
        skip_counts (dict[str, int]): Skipped annotations per kind.
        empty_images_skipped (int): Training images dropped for having no annotation left.
    """

    def __init__(self, *args, validate_images: bool = True, **kwargs) -> None:
        self.validate_images = validate_images
        self.skip_counts: Dict[str, int] = {}
        self.empty_images_skipped = 0
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read, validate and clean the annotation file, then parse it as mmdet does."""
        content = _read_json(self.ann_file)
        loader = _find_transform(self.pipeline, 'LoadAnnotations')
        need_masks = bool(getattr(loader, 'with_mask', False))
        cleaned, report = clean_coco(content, self.ann_file, need_masks=need_masks)
        report.log()
        self.skip_counts = dict(report.counts)
        self._check_image_files(cleaned['images'])

        self.coco = coco_api_from_dict(cleaned, self.COCOAPI)
        self.cat_ids = self.coco.get_cat_ids(cat_names=self.metainfo['classes'])
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = dict(self.coco.cat_img_map)
        data_list = []
        for img_id in self.coco.get_img_ids():
            raw_img_info = self.coco.load_imgs([img_id])[0]
            raw_img_info['img_id'] = img_id
            raw_ann_info = self.coco.load_anns(self.coco.get_ann_ids(img_ids=[img_id]))
            data_list.append(self.parse_data_info(dict(raw_ann_info=raw_ann_info,
                                                       raw_img_info=raw_img_info)))
        del self.coco
        return data_list

    def _check_image_files(self, images: List[dict]) -> None:
        prefix = self.data_prefix.get('img', '') or ''
        missing = [osp.join(prefix, img['file_name']) for img in images
                   if not osp.isfile(osp.join(prefix, img['file_name']))]
        if missing:
            more = f' ... (+{len(missing) - 5} more)' if len(missing) > 5 else ''
            raise DataError(f'{len(missing)} image(s) listed in {self.ann_file!r} are missing: '
                            + ', '.join(repr(p) for p in missing[:5]) + more)
        if not self.validate_images:
            return
        applies_exif = _loader_applies_exif(self.pipeline)
        for img in images:
            path = osp.join(prefix, img['file_name'])
            size = image_size_as_loaded(path, applies_exif)
            if size != (img['width'], img['height']):
                raw = image_size_as_loaded(path, False)
                hint = (' (its EXIF orientation rotates it as loaded; annotations drawn on the '
                        "stored pixels need LoadImageFromFile(color_type='color_ignore_"
                        "orientation'))") if raw == (img['width'], img['height']) else ''
                raise DataError(f'image {path!r} is {size[0]}x{size[1]} as loaded but '
                                f'{self.ann_file!r} says {img["width"]}x{img["height"]}{hint}')

    def filter_data(self) -> List[dict]:
        """In training, drop images without annotations (``filter_empty_gt``) and small ones."""
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        filter_empty = self.filter_cfg.get('filter_empty_gt', False)
        min_size = self.filter_cfg.get('min_size', 0)
        kept = [d for d in self.data_list if (d['instances'] or not filter_empty)
                and min(d['width'], d['height']) >= min_size]
        self.empty_images_skipped = sum(1 for d in self.data_list if not d['instances'])
        if len(kept) < len(self.data_list):
            print_log(f'{self.ann_file}: training on {len(kept)} of {len(self.data_list)} images '
                      f'({self.empty_images_skipped} without annotations'
                      f'{", smaller than min_size " + str(min_size) if min_size else ""} '
                      'skipped)', logger='current')
        if not kept:
            raise DataError(f'{self.ann_file!r}: no training image has a usable annotation')
        return kept

    def prepare_data(self, idx: int) -> Any:
        """Run the pipeline; a failure to load the image names the file."""
        try:
            return super().prepare_data(idx)
        except DataError:
            raise
        except _LOADING_ERRORS as err:
            raise _wrap_loading_error(err, self.get_data_info(idx)) from err


# --------------------------------------------------------------------------------------------
# ADE20K
# --------------------------------------------------------------------------------------------
@DATASETS.register_module()
class CheckedADE20KDataset(ADE20KDataset):
    """mmseg's ``ADE20KDataset`` with load-time validation of folders, sizes and labels.

    Valid raw label values are ``0..K`` (``reduce_zero_label=True``; 0 is ignored) or
    ``0..K-1`` (otherwise), plus 255 (ignored), where ``K`` is the number of classes the PNG
    ids refer to: the 150 ADE20K classes when ``metainfo`` selects a subset (``label_map``), else
    ``len(classes)``.

    Args:
        validate_labels (bool): Read every label map at load time and check its values
            (about 1 ms per 256x256 PNG). Defaults to True. Without it, values are still
            checked per sample after the pipeline, with less precise messages.
        *args, **kwargs: As for ``mmseg.datasets.ADE20KDataset``.
    """

    def __init__(self, *args, validate_labels: bool = True, **kwargs) -> None:
        self.validate_labels = validate_labels
        super().__init__(*args, **kwargs)

    def _num_label_ids(self) -> int:
        return len(self.label_map) if self.label_map else len(self.metainfo['classes'])

    def load_data_list(self) -> List[dict]:
        """List image/label pairs as mmseg does, then validate them."""
        img_dir = self.data_prefix.get('img_path', None)
        ann_dir = self.data_prefix.get('seg_map_path', None)
        missing = [f'{what} {d!r}' for what, d in (('image folder', img_dir),
                                                    ('label folder', ann_dir))
                   if d and not osp.isdir(d)]
        if self.ann_file and not osp.isfile(self.ann_file):
            missing.append(f'split file {self.ann_file!r}')
        if missing:
            raise DataError('missing ' + ', '.join(missing))
        data_list = super().load_data_list()
        if not data_list:
            raise DataError(f'no *{self.img_suffix} image in {img_dir!r}')
        if ann_dir is None:
            return data_list
        no_label = [d['seg_map_path'] for d in data_list if not osp.isfile(d['seg_map_path'])]
        if no_label:
            more = f' ... (+{len(no_label) - 5} more)' if len(no_label) > 5 else ''
            raise DataError(f'{len(no_label)} label map(s) missing: '
                            + ', '.join(repr(p) for p in no_label[:5]) + more)
        applies_exif = _loader_applies_exif(self.pipeline)
        for info in data_list:
            size = image_size_as_loaded(info['img_path'], applies_exif)
            label_size = image_size_as_loaded(info['seg_map_path'], False)
            if size != label_size:
                raise DataError(f'image {info["img_path"]!r} is {size[0]}x{size[1]} (as loaded) '
                                f'but its label map {info["seg_map_path"]!r} is '
                                f'{label_size[0]}x{label_size[1]}')
            if self.validate_labels:
                self._check_label_file(info['seg_map_path'])
        return data_list

    def _check_label_file(self, path: str) -> None:
        import mmcv
        loader = _find_transform(self.pipeline, 'LoadAnnotations')
        backend = getattr(loader, 'imdecode_backend', 'pillow')
        with open(path, 'rb') as f:
            label = mmcv.imfrombytes(f.read(), flag='unchanged', backend=backend)
        if label is None:
            raise DataError(f'cannot decode label map {path!r}')
        label = label.squeeze()
        if label.ndim != 2:
            raise DataError(f'label map {path!r} has shape {label.shape}: expected one channel of '
                            'class ids (a colour or palette PNG read as colour?)')
        values = np.unique(label)
        top = self._num_label_ids() + (1 if self.reduce_zero_label else 0)
        bad = [int(v) for v in values if v >= top and v != 255]
        if bad:
            zero = ', 0 = ignored' if self.reduce_zero_label else ''
            raise DataError(f'label map {path!r} holds value(s) {bad[:10]} outside the valid '
                            f'ids 0..{top - 1} and 255 ({self._num_label_ids()} classes{zero}, '
                            '255 = ignored)')

    def prepare_data(self, idx: int) -> Any:
        """Run the pipeline; name the files when loading fails or labels are out of range."""
        info = self.get_data_info(idx)
        try:
            results = super().prepare_data(idx)
        except DataError:
            raise
        except _LOADING_ERRORS as err:
            raise _wrap_loading_error(err, info) from err
        sample = results.get('data_samples') if isinstance(results, dict) else None
        gt = getattr(sample, 'gt_sem_seg', None) if sample is not None else None
        if gt is not None:
            data = gt.data
            bad = data[(data >= len(self.metainfo['classes'])) & (data != self.ignore_index)]
            if bad.numel():
                raise DataError(f'label map {info.get("seg_map_path")!r}: value(s) '
                                f'{sorted(set(bad.unique().tolist()))[:10]} after the pipeline '
                                f'are outside 0..{len(self.metainfo["classes"]) - 1} '
                                f'(ignore index {self.ignore_index})')
        return results
