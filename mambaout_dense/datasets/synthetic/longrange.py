"""The long-range probe's task: a target takes the colour of a marker exactly d tokens away.

Built to test the hypothesis of Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?",
arXiv 2405.07992: MambaOut's Gated CNN mixes tokens inside a k x k window per block, while SS2D
(Liu et al., "VMamba: Visual State Space Model", arXiv 2401.10166) scans the whole map, so only
the latter can, in principle, carry information farther than the sum of its kernels' radii. In the
spirit of Pathfinder (Linsley et al., arXiv 1805.08315; Tay et al., "Long Range Arena",
arXiv 2011.04006) the task controls the distance a dependency spans, here exactly.

An image is a ``grid x grid`` array of ``patch x patch`` pixel tokens (the tokens of a stride-
``patch`` stem). Every image holds, on a grey background (flat or noisy):

- one *target*: a ``target x target``-token grey square with a white frame, the same in every
  image; its tokens are the only labelled ones;
- one *marker*: a ``marker x marker``-token square filled red (class 0) or blue (class 1).

Every target token is labelled with the marker's class. The *dependency distance* ``d`` is the
Chebyshev distance, in tokens, from the target token farthest from the marker to the nearest marker
token, ``max_{t in target} min_{m in marker} max(|t_y - m_y|, |t_x - m_x|)``: a mixer whose
receptive field has Chebyshev radius ``r`` tokens can see the marker from every labelled token iff
``d <= r``. Layouts are drawn uniformly among all (target, marker) placements with exactly the
requested ``d`` (boxes disjoint, inside the grid), and each batch holds as many red as blue
markers (one more of one class when the batch size is odd, alternating between batches).

:func:`cue_batch` draws batches in memory from a seeded generator (the probe trains on them);
:func:`generate_longrange` writes the same images in the ADEChallengeData2016 layout for mmseg
(``configs/upernet_longrange_*.py``)::

    out_dir/images/{training,validation}/LR_{train,val}_00000001.jpg
    out_dir/annotations/{training,validation}/LR_{train,val}_00000001.png
    out_dir/longrange_meta.json

with PNG values 0 = unlabelled (ignored through ``reduce_zero_label=True``), 1 = red, 2 = blue.
"""
from __future__ import annotations

import functools
import json
import os.path as osp
from typing import Any

import numpy as np

from .shapes import prepare_out_dirs, save_image

__all__ = ['LONGRANGE_CLASSES', 'LONGRANGE_PALETTE', 'BACKGROUNDS', 'dependency_distance',
           'min_distance', 'max_distance', 'layout_counts', 'sample_layouts', 'render_images',
           'cue_batch', 'generate_longrange']

#: The two classes (a target takes its marker's colour).
LONGRANGE_CLASSES: tuple[str, ...] = ('red', 'blue')
#: Fill colour of the marker per class, RGB in [0, 1].
LONGRANGE_PALETTE: tuple[tuple[float, float, float], ...] = ((0.9, 0.1, 0.1), (0.1, 0.25, 0.9))
#: Background kinds: flat grey, or grey with per-image level and per-pixel noise.
BACKGROUNDS: tuple[str, ...] = ('clean', 'noise')
_TARGET_FILL, _FRAME = 0.55, 1.0
_SPLIT_TAGS = {'train': 0, 'val': 1}


def _axis_reach(t0: np.ndarray, t: int, m0: np.ndarray, m: int) -> np.ndarray:
    """Per axis: distance from the farther end of [t0, t0+t-1] to the interval [m0, m0+m-1]."""
    def gap(p):
        return np.maximum(0, np.maximum(m0 - p, p - (m0 + m - 1)))
    return np.maximum(gap(t0), gap(t0 + t - 1))


def dependency_distance(target_yx: tuple[int, int], marker_yx: tuple[int, int], target: int = 3,
                        marker: int = 2) -> int:
    """The dependency distance of one layout (see the module docstring).

    Args:
        target_yx (tuple[int, int]): Top-left token of the target box.
        marker_yx (tuple[int, int]): Top-left token of the marker box.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.

    Returns:
        int: ``max`` over target tokens of the Chebyshev distance to the nearest marker token.
    """
    ty, tx = (np.asarray(v) for v in target_yx)
    my, mx = (np.asarray(v) for v in marker_yx)
    return int(np.maximum(_axis_reach(ty, target, my, marker), _axis_reach(tx, target, mx, marker)))


def min_distance(target: int = 3, marker: int = 2) -> int:
    """Smallest dependency distance of two disjoint boxes: the marker beside the target."""
    return target


def max_distance(grid: int, target: int = 3, marker: int = 2) -> int:
    """Largest dependency distance inside a ``grid x grid`` map (boxes at opposite edges)."""
    return grid - marker


@functools.lru_cache(maxsize=64)
def layout_counts(grid: int, distance: int, target: int = 3, marker: int = 2) -> np.ndarray:
    """Number of marker placements at exactly ``distance`` for each target placement.

    Args:
        grid (int): Tokens per side.
        distance (int): Dependency distance.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.

    Returns:
        np.ndarray: ``(grid - target + 1, grid - target + 1)`` int64 counts, indexed by the
        target's top-left token (read-only; cached).
    """
    nt, nm = grid - target + 1, grid - marker + 1
    t = np.arange(nt)[:, None]
    m = np.arange(nm)[None, :]
    reach = _axis_reach(t, target, m, marker)  # (nt, nm) per axis
    apart = (m + marker <= t) | (m >= t + target)  # (nt, nm): the intervals are disjoint
    # 2-D: max(reach_y, reach_x) == d; the axes are independent, so the counts of a target
    # placement (ty, tx) are products of per-axis counts: exact on one axis and within on the
    # other, minus exact on both (counted twice); then the same for overlapping boxes (not
    # apart on either axis), which are removed
    def exact(ok):
        e, w = (eq & ok).sum(1), (le & ok).sum(1)
        return np.outer(e, w) + np.outer(w, e) - np.outer(e, e)

    eq, le = reach == distance, reach <= distance
    counts = exact(np.ones_like(apart)) - exact(~apart)  # counts[ty, tx]
    counts.setflags(write=False)
    return counts


def sample_layouts(rng: np.random.Generator, n: int, grid: int, distance: int, target: int = 3,
                   marker: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` (target, marker) placements uniformly among those at exactly ``distance``.

    Args:
        rng (np.random.Generator): Random generator.
        n (int): Layouts to draw.
        grid (int): Tokens per side.
        distance (int): Dependency distance in tokens.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(n, 2)`` int64 top-left (y, x) tokens of the targets and
        of the markers.

    Raises:
        ValueError: No layout of this distance fits the grid.
    """
    lo, hi = min_distance(target, marker), max_distance(grid, target, marker)
    if not lo <= distance <= hi:
        raise ValueError(f'distance {distance} is impossible on a {grid}x{grid} grid with a '
                         f'{target}-token target and a {marker}-token marker; valid: {lo}..{hi}')
    counts = layout_counts(grid, distance, target, marker)
    p = (counts / counts.sum()).ravel()
    flat = rng.choice(p.size, size=n, p=p)
    ty, tx = np.divmod(flat, counts.shape[1])
    nm = grid - marker + 1
    my_all, mx_all = np.divmod(np.arange(nm * nm), nm)
    targets, markers = np.stack([ty, tx], 1), np.empty((n, 2), np.int64)
    for i in range(n):
        ry = _axis_reach(ty[i], target, my_all, marker)
        rx = _axis_reach(tx[i], target, mx_all, marker)
        ok = np.maximum(ry, rx) == distance
        ok &= (my_all + marker <= ty[i]) | (my_all >= ty[i] + target) \
            | (mx_all + marker <= tx[i]) | (mx_all >= tx[i] + target)
        k = rng.choice(np.flatnonzero(ok))
        markers[i] = my_all[k], mx_all[k]
    return targets, markers


def render_images(rng: np.random.Generator, targets: np.ndarray, markers: np.ndarray,
                  classes: np.ndarray, grid: int, patch: int = 4, target: int = 3,
                  marker: int = 2, background: str = 'noise') -> tuple[np.ndarray, np.ndarray]:
    """Paint images and token label maps for given layouts.

    Args:
        rng (np.random.Generator): Random generator (background only).
        targets (np.ndarray): ``(n, 2)`` top-left target tokens.
        markers (np.ndarray): ``(n, 2)`` top-left marker tokens.
        classes (np.ndarray): ``(n,)`` marker classes (0 red, 1 blue).
        grid (int): Tokens per side.
        patch (int): Pixels per token side. Defaults to 4.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.
        background (str): One of :data:`BACKGROUNDS`. Defaults to 'noise'.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(n, 3, H, W)`` float32 images in [0, 1] with
        ``H = W = grid * patch``, and ``(n, grid, grid)`` int64 token labels: the class on
        target tokens, -1 elsewhere.
    """
    if background not in BACKGROUNDS:
        raise ValueError(f'Unknown background {background!r}; valid: {", ".join(BACKGROUNDS)}')
    n, side = len(targets), grid * patch
    if background == 'clean':
        grey = np.full((n, side, side), 0.45, np.float32)
    else:
        level = rng.uniform(0.3, 0.6, (n, 1, 1)).astype(np.float32)
        grey = level + rng.normal(0.0, 0.08, (n, side, side)).astype(np.float32)
    images = np.repeat(np.clip(grey, 0.0, 1.0)[:, None], 3, axis=1)
    labels = np.full((n, grid, grid), -1, np.int64)
    palette = np.asarray(LONGRANGE_PALETTE, np.float32)
    ts, ms = target * patch, marker * patch
    for i in range(n):
        ty, tx = (int(v) * patch for v in targets[i])
        images[i, :, ty:ty + ts, tx:tx + ts] = _FRAME
        images[i, :, ty + 1:ty + ts - 1, tx + 1:tx + ts - 1] = _TARGET_FILL
        my, mx = (int(v) * patch for v in markers[i])
        images[i, :, my:my + ms, mx:mx + ms] = palette[classes[i]][:, None, None]
        labels[i, targets[i][0]:targets[i][0] + target, targets[i][1]:targets[i][1] + target] = \
            classes[i]
    return images, labels


def balanced_classes(rng: np.random.Generator, n: int, offset: int = 0) -> np.ndarray:
    """``n`` classes, half red and half blue in random order; an odd ``n`` gives the extra one
    to class ``offset % 2``."""
    classes = (np.arange(n) + offset) % 2
    return rng.permutation(classes)


def cue_batch(seed: int | tuple[int, ...], n: int, grid: int, distance: int, patch: int = 4,
              target: int = 3, marker: int = 2, background: str = 'noise') -> dict[str, Any]:
    """One batch of the task, a pure function of its arguments.

    Args:
        seed (int | tuple[int, ...]): Seed of ``numpy.random.default_rng`` (e.g. ``(run seed,
            step)``).
        n (int): Images.
        grid (int): Tokens per side.
        distance (int): Dependency distance in tokens (the same for every image).
        patch (int): Pixels per token side. Defaults to 4.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.
        background (str): One of :data:`BACKGROUNDS`. Defaults to 'noise'.

    Returns:
        dict: ``images`` (n, 3, H, W) float32 in [0, 1], ``labels`` (n, grid, grid) int64 (-1
        outside targets), ``classes`` (n,), ``targets`` and ``markers`` (n, 2) top-left tokens,
        ``distance``.
    """
    rng = np.random.default_rng(seed)
    targets, markers = sample_layouts(rng, n, grid, distance, target, marker)
    classes = balanced_classes(rng, n, offset=int(rng.integers(2)))
    images, labels = render_images(rng, targets, markers, classes, grid, patch, target, marker,
                                   background)
    return dict(images=images, labels=labels, classes=classes, targets=targets, markers=markers,
                distance=int(distance))


def generate_longrange(out_dir: str, num_train: int = 400, num_val: int = 50, size: int = 128,
                       seed: int = 0, distance: int | None = None, patch: int = 4,
                       target: int = 3, marker: int = 2, background: str = 'noise', *,
                       jpeg_quality: int = 95, overwrite: bool = False) -> dict[str, Any]:
    """Write the task at one distance in the ADE20K folder layout (for UperNet via mmseg).

    Args:
        out_dir (str): Dataset root (``data_root``).
        num_train (int): Training images. Defaults to 400.
        num_val (int): Validation images. Defaults to 50.
        size (int): Image side in pixels, a multiple of ``patch``. Defaults to 128.
        seed (int): Dataset seed. Defaults to 0.
        distance (int, optional): Dependency distance in stride-``patch`` tokens. Defaults to
            half the largest possible one.
        patch (int): Pixels per token side. Defaults to 4.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.
        background (str): One of :data:`BACKGROUNDS`. Defaults to 'noise'.
        jpeg_quality (int): JPEG quality. Defaults to 95.
        overwrite (bool): Replace files already in the split folders instead of raising.
            Defaults to False.

    Returns:
        dict: Paths (``root``, ``train_img``, ``val_img``, ``train_ann``, ``val_ann``,
        ``meta_file``) and metadata (``size``, ``grid``, ``distance``, ``seed``, ``classes``,
        counts and ``class_counts`` per split).

    Raises:
        FileExistsError: A split folder already holds files and not ``overwrite``.
        ValueError: ``size`` not a multiple of ``patch``, or an impossible distance.
    """
    if size % patch:
        raise ValueError(f'size {size} is not a multiple of the token side {patch}')
    grid = size // patch
    if distance is None:
        distance = max(min_distance(target, marker), max_distance(grid, target, marker) // 2)
    root = osp.abspath(out_dir)
    paths: dict[str, Any] = {'root': root}
    for split, folder in (('train', 'training'), ('val', 'validation')):
        paths[f'{split}_img'] = osp.join(root, 'images', folder)
        paths[f'{split}_ann'] = osp.join(root, 'annotations', folder)
    prepare_out_dirs([paths['train_img'], paths['val_img']], '.jpg', overwrite)
    prepare_out_dirs([paths['train_ann'], paths['val_ann']], '.png', overwrite)
    class_counts, records = {}, {}
    for split, count in (('train', num_train), ('val', num_val)):
        batch = cue_batch((seed, 3, _SPLIT_TAGS[split]), count, grid, distance, patch, target,
                          marker, background)
        class_counts[split] = np.bincount(batch['classes'], minlength=2).tolist()
        records[split] = []
        prefix = 'LR_train_' if split == 'train' else 'LR_val_'
        for i in range(count):
            name = f'{prefix}{i + 1:08d}'
            img = (batch['images'][i].transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)
            label = np.kron(batch['labels'][i] + 1, np.ones((patch, patch), np.int64))
            save_image(osp.join(paths[f'{split}_img'], name + '.jpg'), img, jpeg_quality)
            save_image(osp.join(paths[f'{split}_ann'], name + '.png'), label.astype(np.uint8))
            records[split].append(dict(name=name, target=batch['targets'][i].tolist(),
                                       marker=batch['markers'][i].tolist(),
                                       cls=int(batch['classes'][i])))
    meta = dict(size=int(size), grid=grid, patch=patch, distance=int(distance), seed=int(seed),
                target=target, marker=marker, background=background,
                classes=list(LONGRANGE_CLASSES), num_train=int(num_train), num_val=int(num_val),
                class_counts=class_counts)
    paths['meta_file'] = osp.join(root, 'longrange_meta.json')
    with open(paths['meta_file'], 'w') as f:
        json.dump(dict(meta, images=records), f)
    return {**paths, **meta}
