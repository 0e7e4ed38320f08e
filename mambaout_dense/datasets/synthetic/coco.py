"""Synthetic instance-segmentation set in the COCO 2017 layout.

Stands in for COCO (Lin et al., "Microsoft COCO: Common Objects in Context", arXiv:1405.0312)
when training Mask R-CNN (He et al., arXiv:1703.06870) quickly on a CPU. Every image holds
2-8 instances of six shape classes (:data:`COCO_CLASSES`) with random colour, texture, scale and
rotation, painted over a textured background with un-annotated distractors. Later instances
occlude earlier ones; each annotation is the exact set of pixels of its instance that stay
visible. Segmentations are polygons traced along pixel edges, which pycocotools rasterises back
to exactly the visible mask; masks with holes (rings, occlusions) are stored as compressed RLE,
which mmdet's ``LoadAnnotations`` decodes with its default ``poly2mask=True``. The layout is the
one mmdet's ``CocoDataset`` configs expect::

    out_dir/annotations/instances_train2017.json
    out_dir/annotations/instances_val2017.json
    out_dir/train2017/000000000001.jpg ...
    out_dir/val2017/000000000001.jpg ...

Image ``i`` of a split is drawn from ``numpy.random.default_rng((seed, 0, split, i))``, so the
output is a pure function of the arguments and the splits are independent.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ...errors import UsageError
from .shapes import (
    SHAPES,
    TEXTURES,
    background,
    bbox_slices,
    blob_polygon,
    colour_distance,
    finish_image,
    jitter_colour,
    paint,
    prepare_out_dirs,
    random_colour,
    rasterize,
    save_image,
    shape_polygons,
    texture,
)

__all__ = [
    'COCO_CLASSES', 'COCO_PALETTE', 'COCO_SPLITS', 'coco_rng', 'render_coco_image',
    'coco_sample', 'mask_to_polygons', 'encode_mask', 'generate_coco',
]

#: Category names; category ``i + 1`` in the json is ``COCO_CLASSES[i]``.
COCO_CLASSES: tuple[str, ...] = SHAPES
#: One RGB colour per class, for visualisation (``metainfo['palette']`` in mmdet).
COCO_PALETTE: list[tuple[int, int, int]] = [
    (220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 200, 0), (145, 30, 180), (245, 130, 48)]
#: Split name -> index used in the per-image seed.
COCO_SPLITS: dict[str, int] = {'train': 0, 'val': 1}

_DATASET_TAG = 0  # distinguishes the COCO-format streams from the ADE-format ones in the seed
MASK_FORMATS = ('auto', 'polygon', 'rle')


def coco_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator that draws image ``index`` of ``split``.

    Args:
        seed (int): Dataset seed.
        split (str): ``'train'`` or ``'val'``.
        index (int): Zero-based image index within the split.

    Returns:
        np.random.Generator: A fresh generator seeded with ``(seed, 0, split_id, index)``.
    """
    return np.random.default_rng((seed, _DATASET_TAG, COCO_SPLITS[split], index))


def _draw_distractors(rng: np.random.Generator, img: np.ndarray, count: int) -> np.ndarray:
    """Paints ``count`` un-annotated distractors into ``img``; returns their union mask."""
    h, w = img.shape[:2]
    side = min(h, w)
    union = np.zeros((h, w), bool)
    for _ in range(count):
        kind = rng.choice(['blob', 'ellipse', 'line', 'dots'], p=[0.35, 0.2, 0.3, 0.15])
        centre = (rng.uniform(0, w), rng.uniform(0, h))
        if kind == 'blob':
            poly = blob_polygon(rng, side * rng.uniform(0.04, 0.14), rng.uniform(0.5, 0.8),
                                aspect=rng.uniform(0.4, 1.0))
            mask = rasterize(h, w, [poly], offset=centre)
        elif kind == 'ellipse':
            poly = blob_polygon(rng, side * rng.uniform(0.05, 0.15), 0.05,
                                aspect=rng.uniform(0.15, 0.4))
            mask = rasterize(h, w, [poly], offset=centre)
        elif kind == 'line':
            canvas = np.zeros((h, w), np.uint8)
            pts = np.cumsum(rng.normal(0, side * 0.15, (int(rng.integers(2, 5)), 2)), 0)
            pts = np.round(pts + np.asarray(centre)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [pts], False, 1, thickness=int(rng.integers(1, 5)))
            mask = canvas.astype(bool)
        else:
            canvas = np.zeros((h, w), np.uint8)
            spread = side * rng.uniform(0.05, 0.15)
            for _ in range(int(rng.integers(5, 15))):
                x, y = np.asarray(centre) + rng.normal(0, spread, 2)
                cv2.circle(canvas, (int(x), int(y)), int(rng.integers(1, 4)), 1, -1)
            mask = canvas.astype(bool)
        colour = random_colour(rng, 20, 235)
        kind_tex = str(rng.choice(TEXTURES))
        paint(img, mask, lambda ph, pw, c=colour, k=kind_tex: texture(rng, ph, pw, k, c))
        union |= mask
    return union


def _pick_colour(rng: np.random.Generator, under: np.ndarray, tries: int = 8,
                 min_distance: float = 90.0) -> np.ndarray:
    """A random colour that stands out from the mean colour ``under`` it (best of ``tries``)."""
    ref = under.reshape(-1, 3).mean(0) if under.size else np.full(3, 128.0, np.float32)
    best, best_d = None, -1.0
    for _ in range(tries):
        colour = random_colour(rng)
        d = colour_distance(colour, ref)
        if d > best_d:
            best, best_d = colour, d
        if d >= min_distance:
            break
    return best


def render_coco_image(rng: np.random.Generator, size: int, num_instances: int,
                      min_area: int = 30, min_visible: float = 0.4,
                      scale_range: tuple[float, float] = (0.08, 0.35),
                      max_distractors: int = 4, line_prob: float = 0.3,
                      return_full: bool = False) -> tuple[np.ndarray, list[tuple]]:
    """Draws one image and the visible masks of its instances.

    An instance is placed only if, after it is drawn, every earlier annotated instance keeps at
    least ``min_visible`` of its pixels and ``min_area`` pixels (up to 20 tries, then it is
    skipped). Thin un-annotated lines may cross the objects at the end; they take their pixels
    out of the masks, and an instance left below the thresholds is not annotated (its pixels stay
    in the image).

    Args:
        rng (np.random.Generator): Random generator.
        size (int): Image side in pixels (images are square).
        num_instances (int): Number of instances to try to place; 0 gives a clutter-only image.
        min_area (int): Fewest visible pixels of an annotated instance. Defaults to 30.
        min_visible (float): Smallest visible fraction of an annotated instance's in-image
            area. Defaults to 0.4.
        scale_range (tuple[float, float]): Range of the instance size (circumscribed diameter)
            as a fraction of ``size``; sampled log-uniformly. Defaults to (0.08, 0.35).
        max_distractors (int): Most distractors drawn under the instances. Defaults to 4.
        line_prob (float): Probability of the thin occluding lines. Defaults to 0.3.
        return_full (bool): Also return each instance's full (amodal, un-occluded) mask.
            Defaults to False.

    Returns:
        tuple[np.ndarray, list[tuple]]: The ``(size, size, 3)`` uint8 RGB image and, in drawing
        order, ``(category_id, visible_mask)`` per annotated instance (``(category_id,
        visible_mask, full_mask)`` with ``return_full``), with ``category_id`` in
        ``1..len(COCO_CLASSES)`` and the masks ``(size, size)`` bool arrays.
    """
    h = w = int(size)
    img = background(rng, h, w)
    _draw_distractors(rng, img, int(rng.integers(1, max_distractors + 1)))

    label = np.zeros((h, w), np.int32)  # 0 = background, k = k-th placed instance
    cats: list[int] = []
    areas: list[int] = []  # in-image area when placed
    full_masks: list[np.ndarray] = []
    visible = np.zeros(0, np.int64)
    lo, hi = math.log(scale_range[0] * size), math.log(scale_range[1] * size)
    for _ in range(num_instances):
        cat = int(rng.integers(len(COCO_CLASSES)))
        diameter = math.exp(rng.uniform(lo, hi))
        for _attempt in range(20):
            fill, holes = shape_polygons(COCO_CLASSES[cat], diameter, rng.uniform(0, 2 * math.pi),
                                         rng)
            margin = diameter * 0.3
            centre = (rng.uniform(margin, w - margin), rng.uniform(margin, h - margin))
            mask = rasterize(h, w, fill, holes, offset=centre)
            area = int(mask.sum())
            if area < max(min_area, 2):
                continue
            lost = np.bincount(label[mask], minlength=len(cats) + 1)[1:]
            left = visible - lost
            if np.all((left >= min_area) & (left >= min_visible * np.asarray(areas))):
                break
        else:
            continue
        colour = _pick_colour(rng, img[mask])
        kind = str(rng.choice(TEXTURES))
        second = jitter_colour(rng, colour, 80.0)
        period = max(3.0, diameter * rng.uniform(0.08, 0.25))
        paint(img, mask, lambda ph, pw, k=kind, c=colour, c2=second, p=period: texture(
            rng, ph, pw, k, c, c2, p))
        label[mask] = len(cats) + 1
        visible = np.append(left, area)
        cats.append(cat + 1)
        areas.append(area)
        full_masks.append(mask)

    if rng.random() < line_prob:  # thin occluding lines across everything
        canvas = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 3))):
            pts = rng.uniform(0, size, (2, 2)).round().astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [pts], False, 1, thickness=int(rng.integers(1, 3)))
        line = canvas.astype(bool)
        paint(img, line, lambda ph, pw: texture(rng, ph, pw, 'solid', random_colour(rng)))
        label[line] = 0

    img8 = finish_image(rng, img)
    instances = []
    for k, (cat, area, full) in enumerate(zip(cats, areas, full_masks), start=1):
        mask = label == k
        n = int(mask.sum())
        if n >= min_area and n >= min_visible * area:
            instances.append((cat, mask, full) if return_full else (cat, mask))
    return img8, instances


def coco_sample(seed: int, split: str, index: int, size: int, min_instances: int = 2,
                max_instances: int = 8, empty_fraction: float = 0.0,
                **render_kwargs: Any) -> tuple[np.ndarray, list[tuple]]:
    """Image ``index`` of ``split`` exactly as :func:`generate_coco` draws it.

    Args:
        seed (int): Dataset seed.
        split (str): ``'train'`` or ``'val'``.
        index (int): Zero-based image index.
        size (int): Image side in pixels.
        min_instances (int): Fewest instances tried per image. Defaults to 2.
        max_instances (int): Most instances tried per image. Defaults to 8.
        empty_fraction (float): Probability that an image holds only clutter. Defaults to 0.
        **render_kwargs: Forwarded to :func:`render_coco_image` (``min_area``,
            ``min_visible``, ``scale_range``, ``max_distractors``, ``line_prob``,
            ``return_full``).

    Returns:
        tuple[np.ndarray, list[tuple]]: As :func:`render_coco_image`.
    """
    rng = coco_rng(seed, split, index)
    empty = rng.random() < empty_fraction
    n = 0 if empty else int(rng.integers(min_instances, max_instances + 1))
    return render_coco_image(rng, size, n, **render_kwargs)


def mask_to_polygons(mask: np.ndarray) -> tuple[list[list[float]], bool]:
    """Outer outlines of a mask along pixel edges, as COCO polygons.

    Args:
        mask (np.ndarray): ``(H, W)`` bool mask.

    Returns:
        tuple[list[list[float]], bool]: The polygons (flat ``[x0, y0, x1, y1, ...]`` lists in
        pixel-corner coordinates, each with at least 3 vertices) and whether the mask has holes,
        which COCO polygons cannot represent.
    """
    # Tracing the contours of the mask upsampled 2x puts the vertices of pixel (i, j) at
    # 2i..2i+1; rounding half-coordinates up maps them onto the corners i..i+1, i.e. onto the
    # cracks between pixels, which is the outline pycocotools rasterises back exactly.
    box = bbox_slices(mask)
    if box is None:
        return [], False
    crop = mask[box].astype(np.uint8)
    up = np.repeat(np.repeat(crop, 2, 0), 2, 1)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    origin = np.array([box[1].start, box[0].start])  # (x, y) of the crop
    has_holes = bool((hierarchy[0][:, 3] >= 0).any())
    polygons = []
    for contour, (_, _, _, parent) in zip(contours, hierarchy[0]):
        if parent >= 0:
            continue
        pts = (contour.reshape(-1, 2) + 1) // 2 + origin
        keep = np.ones(len(pts), bool)
        keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
        pts = pts[keep]
        if len(pts) > 1 and np.array_equal(pts[0], pts[-1]):
            pts = pts[:-1]
        if len(pts) >= 3:
            polygons.append([float(v) for v in pts.reshape(-1)])
    return polygons, has_holes


def encode_mask(mask: np.ndarray, mask_format: str = 'auto') -> list[list[float]] | dict[str, Any]:
    """Encodes a visible mask as a COCO ``segmentation``.

    Args:
        mask (np.ndarray): ``(H, W)`` bool mask.
        mask_format (str): ``'polygon'``: outer outlines along pixel edges (holes are filled);
            ``'rle'``: compressed RLE with ``counts`` as ``str``; ``'auto'``: the polygons when
            pycocotools rasterises them back to exactly ``mask`` (any mask without holes), else
            the RLE. Defaults to ``'auto'``.

    Returns:
        list[list[float]] | dict[str, Any]: Polygons or an RLE dict ``{'size', 'counts'}``.
    """
    if mask_format not in MASK_FORMATS:
        raise UsageError(f'unknown mask_format {mask_format!r}; expected one of {MASK_FORMATS}')
    h, w = mask.shape
    if mask_format != 'rle':
        polygons, has_holes = mask_to_polygons(mask)
        if mask_format == 'polygon':
            return polygons
        if polygons and not has_holes:
            redrawn = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w)))
            if np.array_equal(redrawn.astype(bool), mask):
                return polygons
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(h), int(w)], 'counts': rle['counts'].decode('ascii')}


def generate_coco(out_dir: str, num_train: int = 800, num_val: int = 200, size: int = 320,
                  seed: int = 0, *, min_instances: int = 2, max_instances: int = 8,
                  empty_fraction: float = 0.0, mask_format: str = 'auto',
                  jpeg_quality: int = 95, overwrite: bool = False,
                  **render_kwargs: Any) -> dict[str, str]:
    """Writes the synthetic COCO-format instance-segmentation set.

    Args:
        out_dir (str): Dataset root (``data_root`` in mmdet configs).
        num_train (int): Number of training images. Defaults to 800.
        num_val (int): Number of validation images. Defaults to 200.
        size (int): Image side in pixels. Defaults to 320.
        seed (int): Dataset seed. Defaults to 0.
        min_instances (int): Fewest instances tried per image. Defaults to 2.
        max_instances (int): Most instances tried per image. Defaults to 8.
        empty_fraction (float): Probability that an image holds only clutter (no annotations).
            Defaults to 0.
        mask_format (str): Segmentation encoding, see :func:`encode_mask`. Defaults to
            ``'auto'``.
        jpeg_quality (int): JPEG quality of the images. Defaults to 95.
        overwrite (bool): Replace ``.jpg`` files already in the image folders instead of
            raising. Defaults to False.
        **render_kwargs: Forwarded to :func:`render_coco_image`.

    Returns:
        dict[str, str]: Absolute paths: ``root``, ``train_ann``, ``val_ann``, ``train_img``,
        ``val_img``.

    Raises:
        FileExistsError: If an image folder already holds ``.jpg`` files and not ``overwrite``.
    """
    if not 0 <= min_instances <= max_instances:
        raise UsageError(f'need 0 <= min_instances <= max_instances, got '
                         f'{min_instances}, {max_instances}')
    if not 0.0 <= empty_fraction <= 1.0:
        raise UsageError(f'empty_fraction must lie in [0, 1], got {empty_fraction}')
    root = osp.abspath(out_dir)
    paths = {'root': root, 'train_ann': osp.join(root, 'annotations', 'instances_train2017.json'),
             'val_ann': osp.join(root, 'annotations', 'instances_val2017.json'),
             'train_img': osp.join(root, 'train2017'), 'val_img': osp.join(root, 'val2017')}
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    prepare_out_dirs([paths['train_img'], paths['val_img']], '.jpg', overwrite)
    categories = [{'id': i + 1, 'name': name, 'supercategory': 'shape'}
                  for i, name in enumerate(COCO_CLASSES)]
    for split, count in (('train', num_train), ('val', num_val)):
        images, annotations = [], []
        for index in range(count):
            img, instances = coco_sample(seed, split, index, size, min_instances, max_instances,
                                         empty_fraction, **render_kwargs)
            file_name = f'{index + 1:012d}.jpg'
            save_image(osp.join(paths[f'{split}_img'], file_name), img, jpeg_quality)
            images.append({'id': index + 1, 'file_name': file_name, 'width': int(size),
                           'height': int(size)})
            for cat, mask, *_ in instances:
                ys, xs = np.nonzero(mask)
                x0, y0 = int(xs.min()), int(ys.min())
                bbox = [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]
                annotations.append({
                    'id': len(annotations) + 1, 'image_id': index + 1, 'category_id': cat,
                    'segmentation': encode_mask(mask, mask_format), 'area': float(ys.size),
                    'bbox': bbox, 'iscrowd': 0})
        content = {
            'info': {'description': f'mambaout_dense synthetic shapes ({split}), seed {seed}',
                     'version': '1.0'},
            'licenses': [], 'images': images, 'annotations': annotations,
            'categories': categories}
        with open(paths[f'{split}_ann'], 'w') as f:
            json.dump(content, f, separators=(',', ':'))
    return paths
