"""A synthetic segmentation task whose labels need a long-range cue (and its local control).

Separates "long sequence" from "long-range dependency" for the hypothesis of Yu & Wang, "MambaOut:
Do We Really Need Mamba for Vision?", arXiv 2405.07992: MambaOut's Gated CNN mixes tokens in a
7x7 window per block, while SS2D (Liu et al., "VMamba: Visual State Space Model",
arXiv 2401.10166) scans the whole map. Here a region's class is decided by a cue far away from
it, so a model must carry information across the image.

Every image holds, on a cluttered background:

- one *corner marker*: a square with a white frame, filled red or blue, in a random corner;
- 1-4 *blobs*, drawn identically whatever their class, placed so that every blob pixel is at
  least ``min_cue_distance`` pixels from every corner-marker pixel;
- one *dot* at the centre of each blob: a small framed square, filled red or blue.

The two variants share every pixel of every image (same seed -> the same image) and differ only
in which cue decides the label of a blob (red -> ``cue_a``, blue -> ``cue_b``):

- ``far``: the corner marker decides the class of all blobs; the dots are random distractors.
  The deciding cue is at least ``min_cue_distance`` away from every pixel it labels.
- ``local``: each blob's own dot decides; the corner marker is a random distractor. The deciding
  cue is at most the blob radius away.

Label PNG values: 0 = markers and dots (ignored through ``reduce_zero_label=True``), 1 = ``cue_a``,
2 = ``cue_b``, 3 = ``background``. Layout (ADEChallengeData2016's, read by mmseg's
``BaseSegDataset`` with ``img_suffix='.jpg'``, ``seg_map_suffix='.png'``)::

    out_dir/images/{training,validation}/LR_{train,val}_00000001.jpg
    out_dir/annotations/{training,validation}/LR_{train,val}_00000001.png
    out_dir/longrange_meta.json     (per image: corner box, blob classes, cue distances)

Image ``i`` of a split is drawn from ``numpy.random.default_rng((seed, 2, split_id, i))``.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
from typing import Any

import numpy as np
from scipy import ndimage

from .shapes import (
    background,
    blob_polygon,
    finish_image,
    prepare_out_dirs,
    rasterize,
    save_image,
    texture,
)

__all__ = ['LONGRANGE_CLASSES', 'LONGRANGE_PALETTE', 'LONGRANGE_VARIANTS', 'CUE_COLOURS',
           'longrange_rng', 'render_longrange', 'longrange_sample', 'generate_longrange',
           'reference_miou']

#: Training classes (PNG values 1..3).
LONGRANGE_CLASSES: tuple[str, ...] = ('cue_a', 'cue_b', 'background')
LONGRANGE_PALETTE: list[list[int]] = [[220, 40, 40], [40, 80, 220], [128, 128, 128]]
LONGRANGE_VARIANTS: tuple[str, ...] = ('far', 'local')
#: Fill colour of a cue deciding class 1 (red) or 2 (blue).
CUE_COLOURS: dict[int, tuple[int, int, int]] = {1: (235, 25, 25), 2: (25, 60, 235)}
CUE_A, CUE_B, BACKGROUND, IGNORE = 1, 2, 3, 0
_DATASET_TAG = 2
_SPLITS = {'train': (0, 'training', 'LR_train_'), 'val': (1, 'validation', 'LR_val_')}


def longrange_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` of ``split`` (the same for both variants)."""
    return np.random.default_rng((seed, _DATASET_TAG, _SPLITS[split][0], index))


def _framed_square(img: np.ndarray, y0: int, x0: int, side: int, colour: tuple[int, int, int],
                   frame: int) -> tuple[slice, slice]:
    """Paint a white-framed square; returns its (rows, cols) slices."""
    box = (slice(y0, y0 + side), slice(x0, x0 + side))
    img[box] = 255.0
    inner = (slice(y0 + frame, y0 + side - frame), slice(x0 + frame, x0 + side - frame))
    img[inner] = np.asarray(colour, np.float32)
    return box


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of every pixel centre to the nearest pixel of ``mask``."""
    return ndimage.distance_transform_edt(~mask)


def render_longrange(rng: np.random.Generator, size: int, variant: str = 'far',
                     min_cue_distance: float | None = None,
                     max_blobs: int = 4) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Draw one image, its label map for ``variant`` and the cue geometry.

    Args:
        rng (np.random.Generator): Random generator (:func:`longrange_rng`).
        size (int): Image side in pixels.
        variant (str): 'far' or 'local' (see the module docstring). Defaults to 'far'.
        min_cue_distance (float, optional): Smallest distance in pixels from a blob pixel to the
            corner marker. Defaults to ``0.5 * size``.
        max_blobs (int): Most blobs per image. Defaults to 4.

    Returns:
        tuple: ``(image, label, info)``: the ``(size, size, 3)`` uint8 RGB image, the
        ``(size, size)`` uint8 label map, and a dict with ``corner_box`` ([y0, x0, y1, x1],
        exclusive ends), ``corner_class``, ``blob_classes`` (the dots' classes), ``labels``
        (the class each blob got), ``far_distance`` (min distance of a blob pixel to the
        corner marker) and ``local_distance`` (max distance of a blob pixel to its own dot).

    Raises:
        ValueError: Unknown variant, or no blob fits at ``min_cue_distance``.
    """
    if variant not in LONGRANGE_VARIANTS:
        raise ValueError(f'Unknown variant {variant!r}; valid: {", ".join(LONGRANGE_VARIANTS)}')
    h = w = int(size)
    min_dist = 0.5 * size if min_cue_distance is None else float(min_cue_distance)
    img = background(rng, h, w)
    label = np.full((h, w), BACKGROUND, np.uint8)

    # corner marker
    side = max(6, round(size * 0.06))
    margin = max(2, round(size * 0.012))
    corner = int(rng.integers(4))
    y0 = margin if corner in (0, 1) else h - margin - side
    x0 = margin if corner in (0, 2) else w - margin - side
    corner_class = int(rng.integers(1, 3))
    corner_mask = np.zeros((h, w), bool)
    corner_mask[y0:y0 + side, x0:x0 + side] = True
    dist_corner = _distance_to(corner_mask)

    # blobs, rejection-sampled beyond min_dist from the marker and apart from each other
    dot_side = max(4, round(size * 0.03))
    blobs: list[np.ndarray] = []
    taken = np.zeros((h, w), bool)
    wanted = int(rng.integers(1, max_blobs + 1))
    for _ in range(wanted * 30):
        if len(blobs) == wanted:
            break
        radius = size * rng.uniform(0.06, 0.1)
        poly = blob_polygon(rng, radius, 0.25)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        mask = rasterize(h, w, [poly], offset=(cx, cy))
        if mask.sum() < 16 or dist_corner[mask].min() < min_dist:
            continue
        if (ndimage.binary_dilation(mask, iterations=3) & taken).any():
            continue
        # the blob must keep its dot (centred on the blob's centroid) inside it
        ys, xs = np.nonzero(mask)
        dy, dx = int(round(ys.mean())) - dot_side // 2, int(round(xs.mean())) - dot_side // 2
        if dy < 0 or dx < 0 or not mask[dy:dy + dot_side, dx:dx + dot_side].all():
            continue
        blobs.append(mask)
        taken |= mask
    if not blobs:
        raise ValueError(f'no blob fits {min_dist:.0f} px away from the corner marker in a '
                         f'{size}px image; lower min_cue_distance')

    # paint: identical blob appearance whatever the class
    blob_colour = np.float32([170, 170, 170]) + rng.uniform(-25, 25, 3).astype(np.float32)
    blob_second = np.clip(blob_colour - 60, 0, 255)
    blob_classes, labels, local_dist = [], [], 0.0
    for mask in blobs:
        ys, xs = np.nonzero(mask)
        patch = texture(rng, h, w, 'checker', blob_colour, blob_second, period=size * 0.03)
        img[mask] = patch[mask]
        dot_class = int(rng.integers(1, 3))
        dy, dx = int(round(ys.mean())) - dot_side // 2, int(round(xs.mean())) - dot_side // 2
        dot_box = _framed_square(img, dy, dx, dot_side, CUE_COLOURS[dot_class], 1)
        dot_mask = np.zeros((h, w), bool)
        dot_mask[dot_box] = True
        cls = corner_class if variant == 'far' else dot_class
        region = mask & ~dot_mask
        label[region] = cls
        label[dot_mask] = IGNORE
        local_dist = max(local_dist, float(_distance_to(dot_mask)[region].max()))
        blob_classes.append(dot_class)
        labels.append(cls)
    _framed_square(img, y0, x0, side, CUE_COLOURS[corner_class], max(1, side // 7))
    label[corner_mask] = IGNORE
    blob_pixels = np.isin(label, (CUE_A, CUE_B))
    far_dist = float(dist_corner[blob_pixels].min())
    info = dict(corner_box=[y0, x0, y0 + side, x0 + side], corner_class=corner_class,
                blob_classes=blob_classes, labels=labels, far_distance=far_dist,
                local_distance=local_dist)
    return finish_image(rng, np.clip(img, 0, 255), blur=0.5, noise=2.0), label, info


def longrange_sample(seed: int, split: str, index: int, size: int, variant: str = 'far',
                     min_cue_distance: float | None = None
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Image ``index`` of ``split`` exactly as :func:`generate_longrange` draws it."""
    return render_longrange(longrange_rng(seed, split, index), size, variant, min_cue_distance)


def generate_longrange(out_dir: str, num_train: int = 400, num_val: int = 50, size: int = 192,
                       seed: int = 0, variant: str = 'far',
                       min_cue_distance: float | None = None, *, jpeg_quality: int = 95,
                       overwrite: bool = False) -> dict[str, Any]:
    """Write the long-range set (one variant) in the ADE20K folder layout.

    Args:
        out_dir (str): Dataset root (``data_root``).
        num_train (int): Training images. Defaults to 400.
        num_val (int): Validation images. Defaults to 50.
        size (int): Image side in pixels. Defaults to 192.
        seed (int): Dataset seed; both variants of one seed hold the same images. Defaults to 0.
        variant (str): 'far' or 'local'. Defaults to 'far'.
        min_cue_distance (float, optional): Least distance from a blob pixel to the corner
            marker. Defaults to ``0.5 * size``.
        jpeg_quality (int): JPEG quality. Defaults to 95.
        overwrite (bool): Replace files already in the split folders instead of raising.
            Defaults to False.

    Returns:
        dict: Paths (``root``, ``train_img``, ``val_img``, ``train_ann``, ``val_ann``,
        ``meta_file``) and metadata: ``variant``, ``size``, ``seed``, ``classes``,
        ``requested_min_cue_distance``, ``min_far_distance`` (realised minimum over all images of
        the corner-marker-to-blob distance), ``max_local_distance`` (realised maximum of the
        dot-to-blob-pixel distance), and ``cue_distance``: the realised bound for the deciding
        cue of this variant (``min_far_distance`` for 'far', ``max_local_distance`` for
        'local').

    Raises:
        FileExistsError: A split folder already holds files and not ``overwrite``.
        ValueError: Unknown variant or an impossible ``min_cue_distance``.
    """
    if variant not in LONGRANGE_VARIANTS:
        raise ValueError(f'Unknown variant {variant!r}; valid: {", ".join(LONGRANGE_VARIANTS)}')
    min_dist = 0.5 * size if min_cue_distance is None else float(min_cue_distance)
    root = osp.abspath(out_dir)
    paths: dict[str, Any] = {'root': root}
    for split, (_, folder, _) in _SPLITS.items():
        paths[f'{split}_img'] = osp.join(root, 'images', folder)
        paths[f'{split}_ann'] = osp.join(root, 'annotations', folder)
    prepare_out_dirs([paths['train_img'], paths['val_img']], '.jpg', overwrite)
    prepare_out_dirs([paths['train_ann'], paths['val_ann']], '.png', overwrite)
    records: dict[str, list] = {}
    far, local = math.inf, 0.0
    for split, count in (('train', num_train), ('val', num_val)):
        prefix = _SPLITS[split][2]
        records[split] = []
        for index in range(count):
            img, label, info = longrange_sample(seed, split, index, size, variant, min_dist)
            name = f'{prefix}{index + 1:08d}'
            save_image(osp.join(paths[f'{split}_img'], name + '.jpg'), img, jpeg_quality)
            save_image(osp.join(paths[f'{split}_ann'], name + '.png'), label)
            records[split].append(dict(name=name, **info))
            far, local = min(far, info['far_distance']), max(local, info['local_distance'])
    meta = dict(variant=variant, size=int(size), seed=int(seed), classes=list(LONGRANGE_CLASSES),
                num_train=int(num_train), num_val=int(num_val),
                requested_min_cue_distance=min_dist, min_far_distance=far,
                max_local_distance=local, cue_distance=far if variant == 'far' else local)
    paths['meta_file'] = osp.join(root, 'longrange_meta.json')
    with open(paths['meta_file'], 'w') as f:
        json.dump(dict(meta, images=records), f)
    return {**paths, **meta}


def reference_miou(ann_dir: str) -> dict[str, float]:
    """mIoU (%) of an oracle that segments blobs perfectly but cannot read any cue.

    It labels background exactly and every blob pixel with the most frequent blob class of the
    split, the best a cue-blind model can do with one constant choice; a trained model at or
    below this score has not used the deciding cue.

    Args:
        ann_dir (str): A folder of label PNGs (values 0..3).

    Returns:
        dict[str, float]: ``mIoU`` and the IoU of each class, in percent.
    """
    import cv2
    counts = np.zeros(4, np.int64)
    for name in sorted(f for f in os.listdir(ann_dir) if f.endswith('.png')):
        label = cv2.imread(osp.join(ann_dir, name), cv2.IMREAD_UNCHANGED)
        counts += np.bincount(label.ravel(), minlength=4)[:4]
    a, b = int(counts[CUE_A]), int(counts[CUE_B])
    major = 100.0 * max(a, b) / max(a + b, 1)
    out = {'cue_a': major if a >= b else 0.0, 'cue_b': 0.0 if a >= b else major,
           'background': 100.0}
    out['mIoU'] = float(np.mean(list(out.values())))
    return out
