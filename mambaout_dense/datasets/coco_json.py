"""COCO annotation files: read with clear errors, and cleaned of what mmdet cannot train on.

Shared by :class:`~mambaout_dense.datasets.checked_coco.CheckedCocoDataset` (training and
testing) and :class:`~mambaout_dense.evaluation.coco_metric.CheckedCocoMetric` (scoring), so that
evaluation sees exactly the ground truth the dataset kept. Imports neither mmdet nor mmseg.
"""
import json
import os.path as osp
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import DataError
from .checks import SkipReport

__all__ = ['read_coco_json', 'clean_coco', 'coco_api_from_dict']


def read_coco_json(path: str) -> dict:
    """Parse a COCO annotation file; :class:`DataError` names the file when it is missing,
    not JSON (with line and column) or lacks ``images`` / ``annotations`` / ``categories``."""
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


def coco_api_from_dict(content: dict, api: Any = None) -> Any:
    """Index an annotation dict with a COCO API class (without reading a file).

    Args:
        content (dict): A parsed (and cleaned) annotation file.
        api (type, optional): The COCO API class, e.g. mmdet's wrapper. Defaults to
            pycocotools' ``COCO``.

    Returns:
        The indexed API object, with mmdet's ``img_ann_map``/``cat_img_map`` aliases.
    """
    if api is None:
        from pycocotools.coco import COCO as api
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
