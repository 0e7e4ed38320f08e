"""The long-range probe's task: each target takes the colour of its own marker, d tokens away.

Built to test the hypothesis of Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?",
arXiv 2405.07992: MambaOut's Gated CNN mixes tokens inside a k x k window per block, while SS2D
(Liu et al., "VMamba: Visual State Space Model", arXiv 2401.10166) scans the whole map, so only
the latter can, in principle, carry information farther than the sum of its kernels' radii. In the
spirit of Pathfinder (Linsley et al., arXiv 1805.08315; Tay et al., "Long Range Arena",
arXiv 2011.04006) the task controls the distance a dependency spans, exactly, and adds a
distractor; after Geirhos et al. ("Shortcut learning in deep neural networks", arXiv 2004.07780)
no image-level statistic carries the answer.

An image is a ``grid x grid`` array of ``patch x patch`` pixel tokens (the tokens of a stride-
``patch`` stem). On a grey background (flat or noisy) it holds ``pairs`` *target-marker pairs*:

- a *target*: a ``target x target``-token grey square with a white frame, the same in every pair
  and image; its tokens are the only labelled ones;
- its *marker*: a ``marker x marker``-token square filled red (class 0) or blue (class 1).

Every token of a target is labelled with the colour of **its own** marker. With two or more pairs
(the default, ``pairs=2``) every image holds as many red as blue markers, assigned to the pairs
at random, so each image's targets carry both labels equally often: any function of the image
alone (its colour histogram, its mean R - B, ...) labels exactly half of them right. Reading a
target's label needs the position of its marker relative to it.

*Dependency distance* ``d``: the Chebyshev distance, in tokens, from the target token farthest from
its marker to the nearest marker token, ``max_{t in target} min_{m in marker} max(|t_y - m_y|,
|t_x - m_x|)``. Its nearest token is at least ``d - (target - 1)`` away, so a mixer whose receptive
field has Chebyshev radius ``r`` sees the marker from every labelled token iff ``d <= r`` and from
none iff ``d >= r + target``. Every other marker is at least ``d + clearance`` tokens from every
token of the target (``clearance >= 1``), so the own marker is the nearest one from each labelled
token: "the nearest marker" names it, and a mixer of radius ``r < d + clearance`` sees no marker
at all from a target beyond its field.

Layouts: the pairs are drawn independently and uniformly among all single-pair placements at
exactly ``d`` (boxes disjoint, inside the grid), and the whole image is rejected unless all boxes
are disjoint and every clearance holds; so an accepted image is uniform among the valid ones.
``pairs=1`` is the older single-cue task (classes balanced over the batch instead of the image),
kept to show the shortcut it allowed.

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

from ...errors import UsageError
from .shapes import prepare_out_dirs, save_image

__all__ = ['LONGRANGE_CLASSES', 'LONGRANGE_PALETTE', 'BACKGROUNDS', 'dependency_distance',
           'box_distance', 'min_distance', 'max_distance', 'layout_counts', 'pair_layouts',
           'sample_scenes', 'scene_acceptance', 'render_images', 'cue_batch',
           'image_statistics', 'generate_longrange', 'MIN_ACCEPTANCE']

#: The two classes (a target takes its marker's colour).
LONGRANGE_CLASSES: tuple[str, ...] = ('red', 'blue')
#: Fill colour of the marker per class, RGB in [0, 1].
LONGRANGE_PALETTE: tuple[tuple[float, float, float], ...] = ((0.9, 0.1, 0.1), (0.1, 0.25, 0.9))
#: Background kinds: flat grey, or grey with per-image level and per-pixel noise.
BACKGROUNDS: tuple[str, ...] = ('clean', 'noise')
_TARGET_FILL, _FRAME = 0.55, 1.0
_SPLIT_TAGS = {'train': 0, 'val': 1}
#: Fewest accepted scenes per candidate before :func:`sample_scenes` calls a grid too small.
MIN_ACCEPTANCE = 1e-3


def _gap(a0, a: int, b0, b: int):
    """Per axis: smallest |i - j| between i in [a0, a0+a-1] and j in [b0, b0+b-1] (0: overlap)."""
    return np.maximum(0, np.maximum(b0 - (a0 + a - 1), a0 - (b0 + b - 1)))


def _axis_reach(t0, t: int, m0, m: int):
    """Per axis: distance from the farther end of [t0, t0+t-1] to the interval [m0, m0+m-1]."""
    def gap(p):
        return np.maximum(0, np.maximum(m0 - p, p - (m0 + m - 1)))
    return np.maximum(gap(t0), gap(t0 + t - 1))


def _overlap(a0, a: int, b0, b: int):
    return (a0 < b0 + b) & (b0 < a0 + a)


def box_distance(a_yx, a: int, b_yx, b: int):
    """Chebyshev distance between the nearest tokens of square boxes (0 where they overlap).

    Args:
        a_yx: Top-left (y, x) tokens of the first boxes, shape (..., 2).
        a (int): Side of the first boxes.
        b_yx: Top-left (y, x) tokens of the second boxes, shape (..., 2).
        b (int): Side of the second boxes.

    Returns:
        np.ndarray: ``min`` over token pairs of ``max(|dy|, |dx|)``: 1 for adjacent boxes.
    """
    a_yx, b_yx = np.asarray(a_yx), np.asarray(b_yx)
    return np.maximum(_gap(a_yx[..., 0], a, b_yx[..., 0], b), _gap(a_yx[..., 1], a, b_yx[..., 1],
                                                                   b))


def dependency_distance(target_yx: tuple[int, int], marker_yx: tuple[int, int], target: int = 3,
                        marker: int = 2) -> int:
    """The dependency distance of one pair (see the module docstring).

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
    """Largest dependency distance of one pair inside a ``grid x grid`` map (opposite edges)."""
    return grid - marker


def _check_distance(grid: int, distance: int, target: int, marker: int) -> None:
    lo, hi = min_distance(target, marker), max_distance(grid, target, marker)
    if not lo <= distance <= hi:
        raise UsageError(f'distance {distance} is impossible on a {grid}x{grid} grid with a '
                         f'{target}-token target and a {marker}-token marker; valid: {lo}..{hi}')


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


@functools.lru_cache(maxsize=64)
def pair_layouts(grid: int, distance: int, target: int = 3,
                 marker: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Every single-pair placement at exactly ``distance``: target and marker top-left tokens.

    Args:
        grid (int): Tokens per side.
        distance (int): Dependency distance.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(M, 2)`` int64 targets and ``(M, 2)`` markers, ``M =
        layout_counts(...).sum()`` (read-only; cached).

    Raises:
        UsageError: No placement of this distance fits the grid.
    """
    _check_distance(grid, distance, target, marker)
    nt, nm = grid - target + 1, grid - marker + 1
    t = np.stack(np.divmod(np.arange(nt * nt), nt), 1)  # (nt², 2)
    m = np.stack(np.divmod(np.arange(nm * nm), nm), 1)  # (nm², 2)
    ti, mi = np.meshgrid(np.arange(len(t)), np.arange(len(m)), indexing='ij')
    ty, tx, my, mx = t[ti, 0], t[ti, 1], m[mi, 0], m[mi, 1]
    reach = np.maximum(_axis_reach(ty, target, my, marker), _axis_reach(tx, target, mx, marker))
    ok = (reach == distance) & ~(_overlap(ty, target, my, marker) & _overlap(tx, target, mx,
                                                                             marker))
    targets, markers = t[ti[ok]], m[mi[ok]]
    targets.setflags(write=False)
    markers.setflags(write=False)
    return targets, markers


def _valid_scenes(targets: np.ndarray, markers: np.ndarray, distance: int, clearance: int,
                  target: int, marker: int) -> np.ndarray:
    """(n,) bool: boxes disjoint and every other marker >= distance + clearance from each target.

    ``targets``/``markers``: (n, K, 2) top-left tokens."""
    n, k = targets.shape[:2]
    ok = np.ones(n, bool)
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            # another pair's marker: far from this target (this also keeps them disjoint)
            ok &= box_distance(targets[:, i], target, markers[:, j], marker) >= distance + clearance
            if i < j:
                ok &= box_distance(targets[:, i], target, targets[:, j], target) > 0
                ok &= box_distance(markers[:, i], marker, markers[:, j], marker) > 0
    return ok


def sample_scenes(rng: np.random.Generator, n: int, grid: int, distance: int, pairs: int = 2,
                  clearance: int = 2, target: int = 3,
                  marker: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` scenes of ``pairs`` target-marker pairs, uniformly among the valid ones.

    Args:
        rng (np.random.Generator): Random generator.
        n (int): Scenes.
        grid (int): Tokens per side.
        distance (int): Dependency distance of every pair, in tokens.
        pairs (int): Pairs per scene. Defaults to 2.
        clearance (int): Every other marker is at least ``distance + clearance`` tokens from each
            target. Defaults to 2.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(n, pairs, 2)`` int64 top-left (y, x) tokens of the
        targets and of their markers.

    Raises:
        UsageError: Impossible distance, ``clearance < 1``, or a grid so small that fewer than
            :data:`MIN_ACCEPTANCE` of the candidate scenes are valid.
    """
    if pairs < 1 or clearance < 1:
        raise UsageError(f'pairs ({pairs}) and clearance ({clearance}) must be >= 1')
    all_t, all_m = pair_layouts(grid, distance, target, marker)
    if pairs == 1:
        idx = rng.integers(len(all_t), size=(n, 1))
        return all_t[idx], all_m[idx]
    out_t, out_m, got, tried = [], [], 0, 0
    chunk = max(64, 4 * n)
    while got < n:
        idx = rng.integers(len(all_t), size=(chunk, pairs))
        t, m = all_t[idx], all_m[idx]
        ok = _valid_scenes(t, m, distance, clearance, target, marker)
        out_t.append(t[ok])
        out_m.append(m[ok])
        got += int(ok.sum())
        tried += chunk
        if got < n and tried >= 20 * n / MIN_ACCEPTANCE:
            raise UsageError(
                f'a {grid}x{grid} grid is too small for {pairs} pairs at distance {distance} with '
                f'clearance {clearance}: {got} of {tried} candidate scenes valid; use a larger '
                f'grid or a smaller distance')
    return np.concatenate(out_t)[:n], np.concatenate(out_m)[:n]


def scene_acceptance(grid: int, distance: int, pairs: int = 2, clearance: int = 2,
                     target: int = 3, marker: int = 2, samples: int = 20000,
                     seed: int = 0) -> float:
    """Fraction of independently drawn pair placements that form a valid scene (1 for one pair).

    Args:
        grid (int): Tokens per side.
        distance (int): Dependency distance.
        pairs (int): Pairs per scene. Defaults to 2.
        clearance (int): See :func:`sample_scenes`. Defaults to 2.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.
        samples (int): Candidate scenes drawn. Defaults to 20000.
        seed (int): Seed. Defaults to 0.

    Returns:
        float: Valid fraction (a Monte-Carlo estimate).
    """
    if pairs == 1:
        return 1.0
    rng = np.random.default_rng(seed)
    all_t, all_m = pair_layouts(grid, distance, target, marker)
    idx = rng.integers(len(all_t), size=(samples, pairs))
    return float(_valid_scenes(all_t[idx], all_m[idx], distance, clearance, target,
                               marker).mean())


def _scene_classes(rng: np.random.Generator, n: int, pairs: int) -> np.ndarray:
    """(n, pairs) classes. Two or more pairs: each image holds as many red as blue markers (an odd
    count gives the extra one at random), assigned to the pairs at random. One pair: balanced over
    the batch (the single-cue task)."""
    if pairs == 1:
        classes = (np.arange(n) + int(rng.integers(2))) % 2
        return rng.permutation(classes)[:, None]
    base = np.arange(pairs) % 2
    if pairs % 2:
        base = np.where(np.arange(pairs) == pairs - 1, rng.integers(2, size=(n, 1)), base)
    else:
        base = np.broadcast_to(base, (n, pairs))
    return rng.permuted(base, axis=1)


def render_images(rng: np.random.Generator, targets: np.ndarray, markers: np.ndarray,
                  classes: np.ndarray, grid: int, patch: int = 4, target: int = 3,
                  marker: int = 2, background: str = 'noise') -> tuple[np.ndarray, np.ndarray]:
    """Paint images and token label maps for given scenes.

    Args:
        rng (np.random.Generator): Random generator (background only).
        targets (np.ndarray): ``(n, K, 2)`` top-left target tokens (``(n, 2)``: one pair).
        markers (np.ndarray): Their markers, the same shape.
        classes (np.ndarray): ``(n, K)`` marker classes (0 red, 1 blue) (``(n,)``: one pair).
        grid (int): Tokens per side.
        patch (int): Pixels per token side. Defaults to 4.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.
        background (str): One of :data:`BACKGROUNDS`. Defaults to 'noise'.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(n, 3, H, W)`` float32 images in [0, 1] with
        ``H = W = grid * patch``, and ``(n, grid, grid)`` int64 token labels: the class of the
        pair on its target tokens, -1 elsewhere.
    """
    if background not in BACKGROUNDS:
        raise UsageError(f'Unknown background {background!r}; valid: {", ".join(BACKGROUNDS)}')
    if targets.ndim == 2:
        targets, markers, classes = targets[:, None], markers[:, None], classes[:, None]
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
        for k in range(targets.shape[1]):
            ty, tx = (int(v) * patch for v in targets[i, k])
            images[i, :, ty:ty + ts, tx:tx + ts] = _FRAME
            images[i, :, ty + 1:ty + ts - 1, tx + 1:tx + ts - 1] = _TARGET_FILL
            my, mx = (int(v) * patch for v in markers[i, k])
            images[i, :, my:my + ms, mx:mx + ms] = palette[classes[i, k]][:, None, None]
            y, x = targets[i, k]
            labels[i, y:y + target, x:x + target] = classes[i, k]
    return images, labels


def cue_batch(seed: int | tuple[int, ...], n: int, grid: int, distance: int, patch: int = 4,
              target: int = 3, marker: int = 2, background: str = 'noise', pairs: int = 2,
              clearance: int = 2) -> dict[str, Any]:
    """One batch of the task, a pure function of its arguments.

    Args:
        seed (int | tuple[int, ...]): Seed of ``numpy.random.default_rng`` (e.g. ``(run seed,
            step)``).
        n (int): Images.
        grid (int): Tokens per side.
        distance (int): Dependency distance in tokens (the same for every pair).
        patch (int): Pixels per token side. Defaults to 4.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.
        background (str): One of :data:`BACKGROUNDS`. Defaults to 'noise'.
        pairs (int): Target-marker pairs per image. Defaults to 2.
        clearance (int): See :func:`sample_scenes`. Defaults to 2.

    Returns:
        dict: ``images`` (n, 3, H, W) float32 in [0, 1], ``labels`` (n, grid, grid) int64 (-1
        outside targets), ``classes`` (n, pairs), ``targets`` and ``markers`` (n, pairs, 2)
        top-left tokens, ``distance``, ``pairs``.
    """
    rng = np.random.default_rng(seed)
    targets, markers = sample_scenes(rng, n, grid, distance, pairs, clearance, target, marker)
    classes = _scene_classes(rng, n, pairs)
    images, labels = render_images(rng, targets, markers, classes, grid, patch, target, marker,
                                   background)
    return dict(images=images, labels=labels, classes=classes, targets=targets, markers=markers,
                distance=int(distance), pairs=int(pairs))


def image_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Image-level colour statistics, the cues a global-pooling shortcut could read.

    Args:
        images (np.ndarray): ``(n, 3, H, W)`` images in [0, 1].

    Returns:
        dict: ``mean_rb`` (n,) image-wide mean of R - B; ``histogram`` (n, 64) normalised joint
        RGB histogram with 4 bins per channel.
    """
    n = len(images)
    mean_rb = (images[:, 0] - images[:, 2]).reshape(n, -1).mean(1)
    q = np.clip((images * 4).astype(np.int64), 0, 3)  # (n, 3, H, W) bins 0..3
    code = (q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2]).reshape(n, -1)
    hist = np.stack([np.bincount(c, minlength=64) for c in code]).astype(np.float64)
    return dict(mean_rb=mean_rb, histogram=hist / hist.sum(1, keepdims=True))


def generate_longrange(out_dir: str, num_train: int = 400, num_val: int = 50, size: int = 128,
                       seed: int = 0, distance: int | None = None, patch: int = 4,
                       target: int = 3, marker: int = 2, background: str = 'noise', *,
                       pairs: int = 2, clearance: int = 2, jpeg_quality: int = 95,
                       overwrite: bool = False) -> dict[str, Any]:
    """Write the task at one distance in the ADE20K folder layout (for UperNet via mmseg).

    Args:
        out_dir (str): Dataset root (``data_root``).
        num_train (int): Training images. Defaults to 400.
        num_val (int): Validation images. Defaults to 50.
        size (int): Image side in pixels, a multiple of ``patch``. Defaults to 128.
        seed (int): Dataset seed. Defaults to 0.
        distance (int, optional): Dependency distance in stride-``patch`` tokens. Defaults to a
            quarter of the largest single-pair one (at least the smallest).
        patch (int): Pixels per token side. Defaults to 4.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.
        background (str): One of :data:`BACKGROUNDS`. Defaults to 'noise'.
        pairs (int): Target-marker pairs per image. Defaults to 2.
        clearance (int): See :func:`sample_scenes`. Defaults to 2.
        jpeg_quality (int): JPEG quality. Defaults to 95.
        overwrite (bool): Replace files already in the split folders instead of raising.
            Defaults to False.

    Returns:
        dict: Paths (``root``, ``train_img``, ``val_img``, ``train_ann``, ``val_ann``,
        ``meta_file``) and metadata (``size``, ``grid``, ``distance``, ``seed``, ``classes``,
        ``pairs``, counts and ``class_counts`` per split).

    Raises:
        FileExistsError: A split folder already holds files and not ``overwrite``.
        UsageError: ``size`` not a multiple of ``patch``, an impossible distance, or a grid too
            small for the pairs.
    """
    if size % patch:
        raise UsageError(f'size {size} is not a multiple of the token side {patch}')
    grid = size // patch
    if distance is None:
        distance = max(min_distance(target, marker), max_distance(grid, target, marker) // 4)
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
                          marker, background, pairs, clearance)
        class_counts[split] = np.bincount(batch['classes'].ravel(), minlength=2).tolist()
        records[split] = []
        prefix = 'LR_train_' if split == 'train' else 'LR_val_'
        for i in range(count):
            name = f'{prefix}{i + 1:08d}'
            img = (batch['images'][i].transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)
            label = np.kron(batch['labels'][i] + 1, np.ones((patch, patch), np.int64))
            save_image(osp.join(paths[f'{split}_img'], name + '.jpg'), img, jpeg_quality)
            save_image(osp.join(paths[f'{split}_ann'], name + '.png'), label.astype(np.uint8))
            records[split].append(dict(name=name, targets=batch['targets'][i].tolist(),
                                       markers=batch['markers'][i].tolist(),
                                       classes=batch['classes'][i].tolist()))
    meta = dict(size=int(size), grid=grid, patch=patch, distance=int(distance), seed=int(seed),
                target=target, marker=marker, background=background, pairs=int(pairs),
                clearance=int(clearance), classes=list(LONGRANGE_CLASSES),
                num_train=int(num_train), num_val=int(num_val), class_counts=class_counts)
    paths['meta_file'] = osp.join(root, 'longrange_meta.json')
    with open(paths['meta_file'], 'w') as f:
        json.dump(dict(meta, images=records), f)
    return {**paths, **meta}
