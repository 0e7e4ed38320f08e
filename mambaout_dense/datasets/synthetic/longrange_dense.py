"""The long-range task for the dense stacks: near and far scenes mixed, in ADE and COCO layouts.

The scenes are those of :mod:`mambaout_dense.datasets.synthetic.longrange` (two target-marker
pairs per image, one red and one blue marker; each target takes its own marker's colour, exactly
``d`` scene tokens away; so no image-level statistic labels a target), which tests the hypothesis
of Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?", arXiv 2405.07992, here through
UperNet (Xiao et al., arXiv 1807.10221) and Mask R-CNN (He et al., arXiv 1703.06870).

One set holds *groups* of images, each at one distance: by default ``near`` (the local control)
and ``far`` (the cue under test). Training draws from every group, so each run learns both; the
validation images are scored per group. A scene is drawn on a ``grid x grid`` map of scene tokens
and rendered with ``patch = size // grid`` pixels per token, so the same seed gives **the same
scenes at every image size** (only the background noise is redrawn at the new resolution): the
cue distance in pixels, and so in each stage's tokens, grows with the size while the model stays
fixed. Image ``files`` are shared by both layouts::

    root/images/{training,validation}/LR_{train,val}_{group}_00000001.jpg
    root/annotations/{training,validation}/LR_{train,val}_{group}_00000001.png   # ADE (mmseg)
    root/annotations/instances_{training,validation}.json                        # COCO (mmdet)
    root/longrange_meta.json

PNG values: 0 unlabelled (ignored through ``reduce_zero_label=True``), 1 red, 2 blue, on the
target pixels only. COCO: each target is an instance (its square, frame included) whose category
is its marker's colour (1 red, 2 blue); markers are not instances. Every COCO ``images`` entry
carries its ``distance_group`` and ``distance`` (scene tokens), which
:class:`mambaout_dense.evaluation.GroupedCocoMetric` splits by.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Any, Mapping

import numpy as np

from ...errors import UsageError
from .longrange import LONGRANGE_CLASSES, cue_batch
from .shapes import prepare_out_dirs, save_image

__all__ = ['DEFAULT_GROUPS', 'SPLITS', 'group_of', 'write_longrange_dense']

#: Group name -> distance in scene tokens: the local control and the far cue (at grid 32).
DEFAULT_GROUPS: dict[str, int] = {'near': 3, 'far': 20}
#: Split -> (file tag, folder).
SPLITS: dict[str, tuple[str, str]] = {'train': ('train', 'training'),
                                      'val': ('val', 'validation')}
_CHUNK = 64  # images rendered at once (a 256-px chunk is 50 MB of float32)
_SEED_TAG = 18  # keeps these streams apart from cue_batch's other users


def group_of(name: str) -> str | None:
    """The group of a file written here (``LR_val_far_00000003.jpg`` -> ``'far'``), else None."""
    stem = osp.splitext(osp.basename(name))[0].split('_')
    return stem[2] if len(stem) == 4 and stem[0] == 'LR' else None


def _coco_instance(ann_id: int, image_id: int, cls: int, box_yx, side: int) -> dict[str, Any]:
    y, x = (float(v) for v in box_yx)
    s = float(side)
    return {'id': ann_id, 'image_id': image_id, 'category_id': int(cls) + 1,
            'bbox': [x, y, s, s], 'area': s * s, 'iscrowd': 0,
            'segmentation': [[x, y, x + s, y, x + s, y + s, x, y + s]]}


def write_longrange_dense(out_dir: str, groups: Mapping[str, int] | None = None,
                          num_train: int = 1000, num_val: int = 64, grid: int = 32,
                          size: int = 128, seed: int = 0, *, target: int = 3, marker: int = 2,
                          background: str = 'noise', pairs: int = 2, clearance: int = 2,
                          jpeg_quality: int = 95, overwrite: bool = False) -> dict[str, Any]:
    """Write the mixed near/far set in the ADE and COCO layouts (see the module docstring).

    Args:
        out_dir (str): Dataset root.
        groups (Mapping[str, int], optional): Group name (letters only) -> dependency distance
            in scene tokens. Defaults to :data:`DEFAULT_GROUPS`.
        num_train (int): Training images per group. Defaults to 1000.
        num_val (int): Validation images per group. Defaults to 64.
        grid (int): Scene tokens per side (the scene does not depend on ``size``). Defaults
            to 32.
        size (int): Image side in pixels, a multiple of ``grid``. Defaults to 128.
        seed (int): Dataset seed. Defaults to 0.
        target (int): Target side in scene tokens. Defaults to 3.
        marker (int): Marker side in scene tokens. Defaults to 2.
        background (str): 'noise' or 'clean'. Defaults to 'noise'.
        pairs (int): Target-marker pairs per image. Defaults to 2.
        clearance (int): Other markers at least ``d + clearance`` from a target. Defaults to 2.
        jpeg_quality (int): JPEG quality. Defaults to 95.
        overwrite (bool): Replace files already there instead of raising. Defaults to False.

    Returns:
        dict: ``root``, ``meta_file``, ``coco_{train,val}`` (annotation paths) and the metadata
        (``size``, ``grid``, ``patch``, ``groups``, counts, ...).

    Raises:
        UsageError: ``size`` not a multiple of ``grid``, a bad group name, an impossible
            distance or a grid too small for the pairs.
        FileExistsError: A folder already holds files and not ``overwrite``.
    """
    groups = dict(DEFAULT_GROUPS if groups is None else groups)
    if size % grid:
        raise UsageError(f'size {size} is not a multiple of the scene grid {grid}')
    bad = [g for g in groups if not g.isalpha() or not g.islower()]
    if bad or not groups:
        raise UsageError(f'group names must be lower-case letters, got {list(groups)}')
    patch = size // grid
    root = osp.abspath(out_dir)
    img_dirs = {s: osp.join(root, 'images', f) for s, (_, f) in SPLITS.items()}
    ann_dirs = {s: osp.join(root, 'annotations', f) for s, (_, f) in SPLITS.items()}
    prepare_out_dirs(list(img_dirs.values()), '.jpg', overwrite)
    prepare_out_dirs(list(ann_dirs.values()), '.png', overwrite)
    side = target * patch
    categories = [{'id': i + 1, 'name': n} for i, n in enumerate(LONGRANGE_CLASSES)]
    out: dict[str, Any] = {'root': root}
    counts: dict[str, dict[str, list[int]]] = {}
    for split, count in (('train', num_train), ('val', num_val)):
        tag, folder = SPLITS[split]
        images, anns = [], []
        counts[split] = {}
        for gi, (group, distance) in enumerate(groups.items()):
            class_count = np.zeros(len(LONGRANGE_CLASSES), np.int64)
            for start in range(0, count, _CHUNK):
                n = min(_CHUNK, count - start)
                # the scene is a function of (seed, split, distance, chunk): not of size or patch
                batch = cue_batch((seed, _SEED_TAG, int(split == 'val'), distance, start), n,
                                  grid, distance, patch, target, marker, background, pairs,
                                  clearance)
                class_count += np.bincount(batch['classes'].ravel(), minlength=2)
                for i in range(n):
                    name = f'LR_{tag}_{group}_{start + i + 1:08d}'
                    img = (batch['images'][i].transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)
                    label = np.kron(batch['labels'][i] + 1, np.ones((patch, patch), np.int64))
                    save_image(osp.join(img_dirs[split], name + '.jpg'), img, jpeg_quality)
                    save_image(osp.join(ann_dirs[split], name + '.png'), label.astype(np.uint8))
                    image_id = len(images) + 1
                    images.append({'id': image_id, 'file_name': name + '.jpg', 'width': size,
                                   'height': size, 'distance_group': group,
                                   'distance': int(distance)})
                    for k in range(batch['targets'].shape[1]):
                        anns.append(_coco_instance(len(anns) + 1, image_id,
                                                   batch['classes'][i, k],
                                                   batch['targets'][i, k] * patch, side))
            counts[split][group] = class_count.tolist()
        path = osp.join(root, 'annotations', f'instances_{folder}.json')
        with open(path, 'w') as f:
            json.dump({'info': {'description': f'long-range task ({split}), seed {seed}'},
                       'licenses': [], 'images': images, 'annotations': anns,
                       'categories': categories}, f, separators=(',', ':'))
        out[f'coco_{split}'] = path
    meta = dict(size=int(size), grid=int(grid), patch=int(patch), groups=groups, seed=int(seed),
                target=target, marker=marker, background=background, pairs=int(pairs),
                clearance=int(clearance), classes=list(LONGRANGE_CLASSES),
                num_train=int(num_train), num_val=int(num_val), class_counts=counts)
    out['meta_file'] = osp.join(root, 'longrange_meta.json')
    tmp = out['meta_file'] + '.tmp'
    with open(tmp, 'w') as f:  # written last and atomically: its presence marks a finished set
        json.dump(meta, f)
    os.replace(tmp, out['meta_file'])
    return {**out, **meta}
