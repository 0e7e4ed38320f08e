"""Synthetic semantic-segmentation set in the ADEChallengeData2016 layout.

Stands in for ADE20K (Zhou et al., "Scene Parsing through ADE20K Dataset", CVPR 2017;
"Semantic Understanding of Scenes through the ADE20K Dataset", arXiv:1608.05442) when training
UperNet (Xiao et al., arXiv:1807.10221) quickly on a CPU. Each image is a layered outdoor scene:
sky above a wavy horizon, ground split into grass / water / a perspective road, buildings and
trees standing on the horizon, and ball / box objects on top. Class pairs share colour statistics
on purpose (sky and water, wall and road, tree and grass; ball and box take any colour), so a
model must use texture, shape and context. Label 0 ("other") marks one-pixel boundaries between
regions and small un-annotated clutter, and is ignored through ``reduce_zero_label=True`` as in
ADE20K.

The PNG values are the ADE20K-150 label ids of the classes (:data:`ADE_LABEL_IDS`: wall = 1,
sky = 3, ..., ball = 120), not ``1..K``. mmseg's ``ADE20KDataset`` given
``metainfo=dict(classes=ADE_CLASSES)`` builds a ``label_map`` from the 150 ADE20K names to the new
ones and applies it to every label map; with these ids it maps them onto ``0..K-1`` in
:data:`ADE_CLASSES` order (anything else onto 255), whereas ``1..K`` would be silently scrambled.
Without a ``metainfo`` override the set reads as ordinary 150-class ADE20K. The layout is the one
mmseg's ``ADE20KDataset`` configs expect::

    out_dir/images/training/ADE_train_00000001.jpg ...
    out_dir/images/validation/ADE_val_00000001.jpg ...
    out_dir/annotations/training/ADE_train_00000001.png ...     (uint8, single channel)
    out_dir/annotations/validation/ADE_val_00000001.png ...

Image ``i`` of a split is drawn from ``numpy.random.default_rng((seed, 1, split, i))``.
"""
from __future__ import annotations

import math
import os.path as osp
from collections.abc import Callable

import cv2
import numpy as np

from .shapes import (
    TEXTURES,
    bbox_slices,
    blob_polygon,
    finish_image,
    gaussian_noise,
    jitter_colour,
    paint,
    prepare_out_dirs,
    rasterize,
    save_image,
    smooth_curve,
    smooth_field,
    texture,
)

__all__ = ['ADE_CLASSES', 'ADE_LABEL_IDS', 'ADE_PALETTE', 'ADE_SPLITS', 'ade_rng',
           'render_ade_image', 'ade_sample', 'generate_ade']

#: Class names, a subset of the ADE20K-150 names in ADE20K order; training index ``i`` (after
#: mmseg's ``label_map``) is ``ADE_CLASSES[i]``.
ADE_CLASSES: tuple[str, ...] = ('wall', 'sky', 'tree', 'road', 'grass', 'water', 'box', 'ball')
#: PNG value of each class: its ADE20K-150 index + 1 (0 is "other").
ADE_LABEL_IDS: tuple[int, ...] = (1, 3, 5, 7, 10, 22, 42, 120)
#: The ADE20K palette entries of the classes (``metainfo['palette']`` in mmseg).
ADE_PALETTE: list[list[int]] = [
    [120, 120, 120], [6, 230, 230], [4, 200, 3], [140, 140, 140], [4, 250, 7], [61, 230, 250],
    [0, 255, 20], [255, 0, 163]]
#: Split name -> (index used in the per-image seed, folder name, file-name prefix).
ADE_SPLITS: dict[str, tuple[int, str, str]] = {
    'train': (0, 'training', 'ADE_train_'), 'val': (1, 'validation', 'ADE_val_')}

# Classes while drawing: 1 + their index in ADE_CLASSES; mapped to ADE_LABEL_IDS at the end.
WALL, SKY, TREE, ROAD, GRASS, WATER, BOX, BALL = range(1, 9)
_TO_LABEL_ID = np.zeros(256, np.uint8)
_TO_LABEL_ID[1:len(ADE_LABEL_IDS) + 1] = ADE_LABEL_IDS
_DATASET_TAG = 1


def ade_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator that draws image ``index`` of ``split``.

    Args:
        seed (int): Dataset seed.
        split (str): ``'train'`` or ``'val'``.
        index (int): Zero-based image index within the split.

    Returns:
        np.random.Generator: A fresh generator seeded with ``(seed, 1, split_id, index)``.
    """
    return np.random.default_rng((seed, _DATASET_TAG, ADE_SPLITS[split][0], index))


# --------------------------------------------------------------------------- stuff textures
def _sky(rng: np.random.Generator, h: int, w: int, top: np.ndarray) -> np.ndarray:
    """Vertical gradient towards a lighter horizon with soft clouds; almost no fine grain."""
    low = np.clip(top + rng.uniform(20, 60), 0, 255)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None] ** rng.uniform(0.6, 1.5)
    img = np.broadcast_to(top + t * (low - top), (h, w, 3)).copy()
    clouds = np.clip(smooth_field(rng, h, w, int(rng.integers(3, 7))) - rng.uniform(0.0, 1.0),
                     0, None)
    img += clouds[..., None] * rng.uniform(15, 45)
    img += gaussian_noise(rng, (h, w, 3), 1.5)
    return img


def _water(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """Horizontal ripples (noise stretched along x) with bright specular streaks."""
    rows = max(8, h // int(rng.integers(2, 5)))
    grid = rng.standard_normal((rows, max(3, w // 40))).astype(np.float32)
    ripple = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    img = colour + ripple[..., None] * rng.uniform(8, 20)
    glint = np.clip(ripple - 1.3, 0, None)
    img += glint[..., None] * rng.uniform(40, 90)
    img += smooth_field(rng, h, w, 3, 3) * 10
    return img


def _grass(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """Fine vertical blade streaks over slow brightness variation."""
    blades = cv2.blur(rng.standard_normal((h, w), dtype=np.float32), (1, int(rng.integers(3, 8))))
    img = colour + blades[..., None] * rng.uniform(35, 60)
    img *= 1 + 0.12 * smooth_field(rng, h, w, 4)[..., None]
    return img


def _road(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """Fine isotropic asphalt grain."""
    return colour + gaussian_noise(rng, (h, w, 3), rng.uniform(5, 10)) \
        + smooth_field(rng, h, w, 5)[..., None] * 6


def _wall(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """Brick courses with mortar lines, or a facade with a grid of windows."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.broadcast_to(colour, (h, w, 3)).copy()
    if rng.random() < 0.55:
        bh = rng.uniform(4, 9)
        bw = bh * rng.uniform(2.0, 3.0)
        row = np.floor(y / bh)
        xs = x + (row % 2) * bw / 2
        col = np.floor(xs / bw)
        shade = rng.normal(0, 10, (int(row.max()) + 1, int(col.max()) + 1)).astype(np.float32)
        img += shade[row.astype(int), col.astype(int)][..., None]  # per-brick brightness
        mortar = ((y % bh) < 1.2) | ((xs % bw) < 1.2)
        img[mortar] = np.clip(colour + rng.uniform(-60, 60), 0, 255)
    else:
        px, py = rng.uniform(10, 22), rng.uniform(12, 26)
        win = ((x % px) < px * rng.uniform(0.4, 0.6)) & ((y % py) < py * rng.uniform(0.4, 0.6))
        img[win] = np.clip(colour * rng.uniform(0.2, 0.5) + rng.uniform(0, 40, 3), 0, 255)
    img += gaussian_noise(rng, (h, w, 3), 4)
    return img


def _foliage(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """Blotchy leaves: mid-frequency light/dark clumps."""
    clumps = smooth_field(rng, h, w, max(4, w // int(rng.integers(5, 10))), 1)
    img = colour + clumps[..., None] * rng.uniform(20, 35)
    img += gaussian_noise(rng, (h, w, 3), 5)
    return img


# --------------------------------------------------------------------------- scene
def _stuff_colours(rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Base colours of the stuff classes, with the deliberate look-alike pairs."""
    if rng.random() < 0.3:  # overcast: grey sky
        g = rng.uniform(140, 215)
        sky = np.array([g, g, g + rng.uniform(0, 15)], np.float32)
    else:
        sky = np.array([rng.uniform(40, 120), rng.uniform(100, 180), rng.uniform(180, 250)],
                       np.float32)
    g = rng.uniform(70, 160)
    road = np.clip(np.array([g, g, g], np.float32) + rng.uniform(-12, 12, 3), 0, 255)
    grass = np.array([rng.uniform(40, 120), rng.uniform(100, 180), rng.uniform(20, 70)],
                     np.float32)
    if rng.random() < 0.2:  # dry grass
        grass = np.array([rng.uniform(140, 190), rng.uniform(140, 180), rng.uniform(50, 90)],
                         np.float32)
    colours = {SKY: sky, ROAD: road, GRASS: grass}
    colours[WATER] = (jitter_colour(rng, sky * 0.85, 20) if rng.random() < 0.5 else
                      np.array([rng.uniform(10, 80), rng.uniform(70, 150), rng.uniform(120, 210)],
                               np.float32))
    if rng.random() < 0.4:
        colours[WALL] = jitter_colour(rng, road, 20)
    else:
        base = [(rng.uniform(150, 200), rng.uniform(80, 110), rng.uniform(60, 90)),  # brick
                (rng.uniform(180, 230), rng.uniform(170, 210), rng.uniform(130, 170))]  # beige
        colours[WALL] = np.asarray(base[int(rng.integers(2))], np.float32)
    colours[TREE] = (jitter_colour(rng, grass * 0.75, 20) if rng.random() < 0.5 else
                     np.array([rng.uniform(20, 80), rng.uniform(70, 140), rng.uniform(10, 60)],
                              np.float32))
    return colours


def render_ade_image(rng: np.random.Generator, size: int,
                     boundary_prob: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Draws one scene and its label map.

    Args:
        rng (np.random.Generator): Random generator.
        size (int): Image side in pixels (images are square).
        boundary_prob (float): Probability that one-pixel region boundaries are labelled 0.
            Defaults to 0.8.

    Returns:
        tuple[np.ndarray, np.ndarray]: The ``(size, size, 3)`` uint8 RGB image and the
        ``(size, size)`` uint8 label map (0 = other, ``ADE_LABEL_IDS[i]`` = ``ADE_CLASSES[i]``).
    """
    h = w = int(size)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    colours = _stuff_colours(rng)
    label = np.zeros((h, w), np.uint8)
    img = np.zeros((h, w, 3), np.float32)

    def put(mask: np.ndarray, cls: int, make: Callable[[slice, slice], np.ndarray]) -> None:
        """Paints ``mask`` with ``make(rows, cols)``, a patch for the mask's bounding box."""
        box = bbox_slices(mask)
        if box is not None:
            sub = mask[box]
            np.copyto(img[box], make(*box), where=sub[..., None])
            label[box][sub] = cls

    def sized(fn: Callable, colour: np.ndarray) -> Callable[[slice, slice], np.ndarray]:
        """Adapts a ``fn(rng, h, w, colour)`` texture to :func:`put`."""
        return lambda ys, xs: fn(rng, ys.stop - ys.start, xs.stop - xs.start, colour)

    # sky above a wavy horizon; the ground below
    horizon = size * rng.uniform(0.28, 0.55) + smooth_curve(rng, w, size * rng.uniform(0.0, 0.06))
    above = yy < horizon[None, :]
    put(above, SKY, sized(_sky, colours[SKY]))
    ground_tex = {GRASS: sized(_grass, colours[GRASS]), WATER: sized(_water, colours[WATER])}
    base = GRASS if rng.random() < 0.65 else WATER
    other = WATER if base == GRASS else GRASS
    put(~above, base, ground_tex[base])
    r = rng.random()
    if r < 0.4:  # a second ground region beyond a wavy, roughly vertical boundary
        edge = size * rng.uniform(0.2, 0.8) + smooth_curve(rng, h, size * 0.08)
        side = (xx < edge[:, None]) if rng.random() < 0.5 else (xx >= edge[:, None])
        put(~above & side, other, ground_tex[other])
    elif r < 0.75:  # a pond (or an island)
        cy = rng.uniform(horizon.max() + size * 0.1, size)
        poly = blob_polygon(rng, size * rng.uniform(0.1, 0.25), 0.3, aspect=rng.uniform(0.3, 0.6))
        pond = rasterize(h, w, [poly], offset=(rng.uniform(0, w), cy)) & ~above
        put(pond, other, ground_tex[other])
    if rng.random() < 0.55:  # a road narrowing towards a vanishing point on the horizon
        vx = rng.uniform(0.2, 0.8) * size
        vy = float(horizon[int(np.clip(vx, 0, w - 1))])
        bx, bw = rng.uniform(0.1, 0.9) * size, rng.uniform(0.15, 0.4) * size
        t = np.clip((yy - vy) / max(size - vy, 1.0), 0, 1)
        centre = vx + t * (bx - vx) + smooth_curve(rng, h, size * 0.02)[:, None] * t
        half = size * 0.01 + t * bw
        road = ~above & (np.abs(xx - centre) < half)
        put(road, ROAD, sized(_road, colours[ROAD]))
        lane = road & (np.abs(xx - centre) < 0.6 + 0.03 * half) & (((yy - vy) / 6 % 2) < 1.1)
        paint_colour = np.float32([[235, 235, 230], [230, 200, 60]][int(rng.integers(2))])
        put(lane, ROAD, lambda ys, xs: np.broadcast_to(paint_colour, (ys.stop - ys.start,
                                                                      xs.stop - xs.start, 3)))

    # buildings and trees standing on the horizon
    for _ in range(int(rng.integers(0, 3))):
        x0 = rng.uniform(-0.1, 0.9) * size
        x1 = x0 + rng.uniform(0.15, 0.45) * size
        top = max(0.02 * size, horizon.min() - rng.uniform(0.1, 0.35) * size)
        bottom = horizon + size * rng.uniform(0.0, 0.03)
        wall = (xx >= x0) & (xx < x1) & (yy >= top) & (yy < bottom[None, :])
        put(wall, WALL, sized(_wall, colours[WALL]))
    for _ in range(int(rng.integers(0, 5))):
        bx = rng.uniform(0, w)
        ground = float(horizon[int(np.clip(bx, 0, w - 1))]) + size * rng.uniform(0.0, 0.04)
        rad = size * rng.uniform(0.06, 0.15)
        cy = ground - rad * rng.uniform(1.2, 2.2)
        polys = [blob_polygon(rng, rad, 0.3) + np.float32([bx, cy])]
        for _ in range(int(rng.integers(1, 4))):
            off = rng.normal(0, rad * 0.5, 2).astype(np.float32)
            polys.append(blob_polygon(rng, rad * rng.uniform(0.5, 0.8), 0.2) + np.float32(
                [bx, cy]) + off)
        tw = rad * rng.uniform(0.15, 0.3)
        polys.append(np.float32([[bx - tw, cy], [bx + tw, cy], [bx + tw, ground],
                                 [bx - tw, ground]]))
        put(rasterize(h, w, polys), TREE, sized(_foliage, jitter_colour(rng, colours[TREE], 15)))

    # things: balls and boxes of any colour, mostly on the ground
    for _ in range(int(rng.integers(1, 6))):
        d = size * rng.uniform(0.07, 0.22)
        cx = rng.uniform(0, w)
        cy = (rng.uniform(horizon.mean(), size) if rng.random() < 0.85 else rng.uniform(0, size))
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        if rng.random() < 0.5:
            t = np.linspace(0, 2 * math.pi, max(24, int(d * 1.5)), endpoint=False)
            disc = np.stack([np.cos(t), np.sin(t)], 1).astype(np.float32) * d / 2
            lx, ly = cx - d * rng.uniform(0.1, 0.3), cy - d * rng.uniform(0.1, 0.3)

            def shaded(ys: slice, xs: slice, c=colour, lx=lx, ly=ly, d=d) -> np.ndarray:
                shade = 1.25 - np.hypot(xx[ys, xs] - lx, yy[ys, xs] - ly) / d
                return c * np.clip(shade, 0.35, 1.3)[..., None]

            put(rasterize(h, w, [disc], offset=(cx, cy)), BALL, shaded)
        else:
            a, b = d / 2, d / 2 * rng.uniform(0.55, 1.0)
            ang = rng.uniform(-0.4, 0.4)
            rot = np.float32([[math.cos(ang), math.sin(ang)], [-math.sin(ang), math.cos(ang)]])
            rect = np.float32([[-a, -b], [a, -b], [a, b], [-a, b]]) @ rot
            mask = rasterize(h, w, [rect], offset=(cx, cy))
            second = jitter_colour(rng, colour * 0.7, 20)
            put(mask, BOX, lambda ys, xs, c=colour, c2=second: texture(
                rng, ys.stop - ys.start, xs.stop - xs.start, 'gradient', c, c2))
            outline = np.zeros((h, w), np.uint8)
            pts = np.round((rect + np.float32([cx, cy])) * 16).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(outline, [pts], True, 1, thickness=int(rng.integers(1, 3)), shift=4)
            edge_colour = colour * 0.35
            put(mask & outline.astype(bool), BOX, lambda ys, xs, c=edge_colour: np.broadcast_to(
                c, (ys.stop - ys.start, xs.stop - xs.start, 3)))

    # un-annotated clutter
    for _ in range(int(rng.integers(0, 4))):
        poly = blob_polygon(rng, size * rng.uniform(0.015, 0.05), 0.6, aspect=rng.uniform(0.4, 1))
        mask = rasterize(h, w, [poly], offset=(rng.uniform(0, w), rng.uniform(0, h)))
        kind = str(rng.choice(TEXTURES))
        paint(img, mask, lambda ph, pw, k=kind: texture(rng, ph, pw, k, rng.uniform(0, 255, 3)))
        label[mask] = 0

    if rng.random() < boundary_prob:  # one-pixel unlabelled boundaries between regions
        edge = np.zeros((h, w), bool)
        edge[:, :-1] |= label[:, :-1] != label[:, 1:]
        edge[:-1, :] |= label[:-1, :] != label[1:, :]
        label[edge] = 0

    return finish_image(rng, np.clip(img, 0, 255), blur=0.8), _TO_LABEL_ID[label]


def ade_sample(seed: int, split: str, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of ``split`` exactly as :func:`generate_ade` draws it.

    Args:
        seed (int): Dataset seed.
        split (str): ``'train'`` or ``'val'``.
        index (int): Zero-based image index.
        size (int): Image side in pixels.

    Returns:
        tuple[np.ndarray, np.ndarray]: As :func:`render_ade_image`.
    """
    return render_ade_image(ade_rng(seed, split, index), size)


def generate_ade(out_dir: str, num_train: int = 800, num_val: int = 200, size: int = 320,
                 seed: int = 0, *, jpeg_quality: int = 95,
                 overwrite: bool = False) -> dict[str, str]:
    """Writes the synthetic ADE20K-format semantic-segmentation set.

    Args:
        out_dir (str): Dataset root (``data_root`` in mmseg configs).
        num_train (int): Number of training images. Defaults to 800.
        num_val (int): Number of validation images. Defaults to 200.
        size (int): Image side in pixels. Defaults to 320.
        seed (int): Dataset seed. Defaults to 0.
        jpeg_quality (int): JPEG quality of the images. Defaults to 95.
        overwrite (bool): Delete images and label maps already in the split folders (mmseg lists
            folders, so stale files would join the set) instead of raising. Defaults to False.

    Returns:
        dict[str, str]: Absolute paths: ``root``, ``train_img``, ``val_img``, ``train_ann``,
        ``val_ann``.

    Raises:
        FileExistsError: If a split folder already holds files and not ``overwrite``.
    """
    root = osp.abspath(out_dir)
    paths = {'root': root}
    for split, (_, folder, _) in ADE_SPLITS.items():
        paths[f'{split}_img'] = osp.join(root, 'images', folder)
        paths[f'{split}_ann'] = osp.join(root, 'annotations', folder)
    prepare_out_dirs([paths['train_img'], paths['val_img']], '.jpg', overwrite)
    prepare_out_dirs([paths['train_ann'], paths['val_ann']], '.png', overwrite)
    for split, count in (('train', num_train), ('val', num_val)):
        prefix = ADE_SPLITS[split][2]
        for index in range(count):
            img, label = ade_sample(seed, split, index, size)
            name = f'{prefix}{index + 1:08d}'
            save_image(osp.join(paths[f'{split}_img'], name + '.jpg'), img, jpeg_quality)
            save_image(osp.join(paths[f'{split}_ann'], name + '.png'), label)
    return paths
