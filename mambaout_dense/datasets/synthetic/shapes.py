"""Drawing primitives shared by the synthetic COCO- and ADE20K-format generators.

Everything here is a pure function of its arguments and a ``numpy.random.Generator``, so a
generator seeded identically reproduces the same pixels. Images are ``float32`` arrays of shape
``(H, W, 3)`` in RGB order with values in ``[0, 255]`` until :func:`finish_image` converts them to
``uint8``. Masks are ``bool`` arrays of shape ``(H, W)``.

Polygons are rasterised by OpenCV with 4 fractional bits (``shift=4``) and no anti-aliasing, so a
mask is exactly the set of pixels that a shape paints into the image.
"""
from __future__ import annotations

import math
import os
import os.path as osp
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from ...errors import OutputExistsError

__all__ = [
    'SHAPES', 'TEXTURES', 'random_colour', 'jitter_colour', 'gaussian_noise', 'smooth_field',
    'smooth_curve', 'texture', 'background', 'shape_polygons', 'rasterize', 'blob_polygon',
    'bbox_slices', 'paint', 'finish_image', 'colour_distance', 'prepare_out_dirs', 'save_image',
]

#: Shape kinds understood by :func:`shape_polygons`.
SHAPES = ('disc', 'square', 'triangle', 'star', 'ring', 'cross')
#: Texture kinds understood by :func:`texture`.
TEXTURES = ('solid', 'stripes', 'checker', 'noise', 'gradient')

_SHIFT = 4  # fractional bits used for sub-pixel polygon coordinates in cv2.fillPoly
_SCALE = float(1 << _SHIFT)


def random_colour(rng: np.random.Generator, low: float = 0.0, high: float = 255.0) -> np.ndarray:
    """Draws a uniformly random RGB colour.

    Args:
        rng (np.random.Generator): Random generator.
        low (float): Lower bound of every channel. Defaults to 0.
        high (float): Upper bound of every channel. Defaults to 255.

    Returns:
        np.ndarray: ``(3,)`` float32 colour.
    """
    return rng.uniform(low, high, size=3).astype(np.float32)


def jitter_colour(rng: np.random.Generator, colour: Sequence[float],
                  amount: float) -> np.ndarray:
    """Returns ``colour`` moved by a random offset of up to ``amount`` per channel, clipped.

    Args:
        rng (np.random.Generator): Random generator.
        colour (Sequence[float]): RGB colour in ``[0, 255]``.
        amount (float): Largest absolute change of one channel.

    Returns:
        np.ndarray: ``(3,)`` float32 colour.
    """
    out = np.asarray(colour, np.float32) + rng.uniform(-amount, amount, size=3)
    return np.clip(out, 0, 255).astype(np.float32)


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean float32 Gaussian noise.

    Args:
        rng (np.random.Generator): Random generator.
        shape (tuple[int, ...]): Output shape.
        sigma (float): Standard deviation.

    Returns:
        np.ndarray: float32 array of ``shape``.
    """
    out = rng.standard_normal(shape, dtype=np.float32)
    out *= np.float32(sigma)
    return out


def colour_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Euclidean distance between two RGB colours.

    Args:
        a (Sequence[float]): First colour.
        b (Sequence[float]): Second colour.

    Returns:
        float: Distance in RGB units.
    """
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))


def smooth_field(rng: np.random.Generator, h: int, w: int, cells: int,
                 channels: int = 1) -> np.ndarray:
    """Low-frequency noise: a coarse Gaussian grid upsampled bicubically.

    Args:
        rng (np.random.Generator): Random generator.
        h (int): Output height.
        w (int): Output width.
        cells (int): Grid cells along the longer side; more cells give finer structure.
        channels (int): Number of independent channels. Defaults to 1.

    Returns:
        np.ndarray: ``(h, w)`` (one channel) or ``(h, w, channels)`` float32 field with roughly
        zero mean and unit standard deviation.
    """
    cells = max(2, int(cells))
    gh = max(2, round(cells * h / max(h, w)) + 1)
    gw = max(2, round(cells * w / max(h, w)) + 1)
    grid = rng.standard_normal((gh, gw, channels)).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    field = field.reshape(h, w, channels)
    std = float(field.std()) or 1.0
    field = (field - field.mean()) / std
    return field[..., 0] if channels == 1 else field


def smooth_curve(rng: np.random.Generator, n: int, amplitude: float,
                 num_waves: int = 3) -> np.ndarray:
    """A smooth random 1-D curve: a sum of sinusoids with random phases.

    Args:
        rng (np.random.Generator): Random generator.
        n (int): Number of samples.
        amplitude (float): Largest absolute value of the curve.
        num_waves (int): Number of sinusoids (frequencies 1..num_waves cycles). Defaults to 3.

    Returns:
        np.ndarray: ``(n,)`` float32 curve.
    """
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    curve = np.zeros(n, np.float32)
    for k in range(1, num_waves + 1):
        curve += rng.uniform(0.2, 1.0) / k * np.sin(
            2 * math.pi * (k * rng.uniform(0.5, 1.5) * t + rng.uniform()))
    peak = float(np.abs(curve).max()) or 1.0
    return (curve / peak * amplitude).astype(np.float32)


def _rotated_coords(h: int, w: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by ``angle`` radians: ``(u, v)`` each ``(h, w)`` float32."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    return x * c + y * s, -x * s + y * c


def texture(rng: np.random.Generator, h: int, w: int, kind: str, colour: Sequence[float],
            second: Sequence[float] | None = None, period: float | None = None) -> np.ndarray:
    """Fills an ``(h, w)`` patch with a texture.

    Args:
        rng (np.random.Generator): Random generator.
        h (int): Patch height.
        w (int): Patch width.
        kind (str): One of :data:`TEXTURES`.
        colour (Sequence[float]): Main RGB colour.
        second (Sequence[float], optional): Second colour of two-colour textures. Defaults to a
            random jitter of ``colour``.
        period (float, optional): Spatial period in pixels of stripes/checkers and the noise
            grain. Defaults to a random value in ``[4, 14]``.

    Returns:
        np.ndarray: ``(h, w, 3)`` float32 patch in ``[0, 255]``.
    """
    if kind not in TEXTURES:
        # internal invariant: the renderers draw kinds from TEXTURES; no user value reaches it
        raise ValueError(f'unknown texture {kind!r}; expected one of {TEXTURES}')
    c1 = np.asarray(colour, np.float32)
    c2 = jitter_colour(rng, c1, 90.0) if second is None else np.asarray(second, np.float32)
    period = float(rng.uniform(4.0, 14.0)) if period is None else float(period)
    if kind == 'solid':
        out = np.broadcast_to(c1, (h, w, 3)) + gaussian_noise(rng, (h, w, 3), 4.0)
    elif kind == 'stripes':
        u, _ = _rotated_coords(h, w, rng.uniform(0, math.pi))
        t = ((u / period + rng.uniform()) % 1.0 < rng.uniform(0.35, 0.65)).astype(np.float32)
        out = c1 + t[..., None] * (c2 - c1)
    elif kind == 'checker':
        u, v = _rotated_coords(h, w, rng.uniform(0, math.pi / 2))
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
        out = c1 + t[..., None] * (c2 - c1)
    elif kind == 'noise':
        grain = smooth_field(rng, h, w, cells=max(2, int(max(h, w) / period * 2)), channels=3)
        out = c1 + grain * rng.uniform(12.0, 35.0)
    else:  # gradient
        u, _ = _rotated_coords(h, w, rng.uniform(0, 2 * math.pi))
        span = float(u.max() - u.min()) or 1.0
        t = (u - u.min()) / span
        out = c1 + t[..., None] * (c2 - c1)
    return np.clip(out, 0, 255).astype(np.float32)


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A cluttered textured background: blotchy colour field plus a low-contrast pattern.

    Args:
        rng (np.random.Generator): Random generator.
        h (int): Image height.
        w (int): Image width.

    Returns:
        np.ndarray: ``(h, w, 3)`` float32 image in ``[0, 255]``.
    """
    base = random_colour(rng, 30, 225)
    blotches = smooth_field(rng, h, w, cells=int(rng.integers(2, 7)), channels=3)
    img = base + blotches * rng.uniform(15.0, 45.0)
    kind = rng.choice(['noise', 'gradient', 'stripes', 'checker'], p=[0.35, 0.3, 0.25, 0.1])
    pattern = texture(rng, h, w, str(kind), random_colour(rng, 30, 225),
                      period=rng.uniform(6.0, 30.0))
    alpha = rng.uniform(0.15, 0.45)
    img = img * (1 - alpha) + pattern * alpha
    img += gaussian_noise(rng, (h, w, 3), rng.uniform(2.0, 8.0))
    return np.clip(img, 0, 255).astype(np.float32)


def shape_polygons(kind: str, size: float, angle: float,
                   rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Outline of a shape centred on the origin.

    Args:
        kind (str): One of :data:`SHAPES`.
        size (float): Diameter of the circumscribed circle in pixels.
        angle (float): Rotation in radians.
        rng (np.random.Generator): Random generator for the per-instance shape parameters
            (aspect, vertex jitter, star/ring/cross proportions).

    Returns:
        tuple[list[np.ndarray], list[np.ndarray]]: ``(fill, holes)``: lists of ``(N, 2)`` float32
        ``(x, y)`` polygons; the shape is the union of ``fill`` minus the union of ``holes``.
    """
    r = size / 2.0
    holes: list[np.ndarray] = []
    n_round = max(24, int(size * 1.5))
    if kind == 'disc':
        t = np.linspace(0, 2 * math.pi, n_round, endpoint=False)
        fill = [np.stack([np.cos(t), np.sin(t)], 1) * r]
    elif kind == 'ring':
        t = np.linspace(0, 2 * math.pi, n_round, endpoint=False)
        unit = np.stack([np.cos(t), np.sin(t)], 1)
        fill = [unit * r]
        holes = [unit * r * rng.uniform(0.45, 0.62)]
    elif kind == 'square':
        aspect = rng.uniform(0.85, 1.0)
        a, b = r / math.sqrt(2), r / math.sqrt(2) * aspect
        fill = [np.array([[-a, -b], [a, -b], [a, b], [-a, b]])]
    elif kind == 'triangle':
        t = np.array([-math.pi / 2, math.pi / 6, 5 * math.pi / 6]) + rng.uniform(-0.12, 0.12, 3)
        rad = r * rng.uniform(0.9, 1.0, 3)
        fill = [np.stack([np.cos(t) * rad, np.sin(t) * rad], 1)]
    elif kind == 'star':
        inner = rng.uniform(0.38, 0.5)
        t = np.arange(10) * math.pi / 5 - math.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, r, r * inner)
        fill = [np.stack([np.cos(t) * rad, np.sin(t) * rad], 1)]
    elif kind == 'cross':
        a = r / math.sqrt(1 + rng.uniform(0.28, 0.4) ** 2)  # arm half-length
        b = a * rng.uniform(0.28, 0.4)  # arm half-width
        fill = [np.array([[-a, -b], [a, -b], [a, b], [-a, b]]),
                np.array([[-b, -a], [b, -a], [b, a], [-b, a]])]
    else:  # internal invariant: the renderers draw kinds from SHAPES; no user value reaches it
        raise ValueError(f'unknown shape {kind!r}; expected one of {SHAPES}')
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]], np.float32)
    return ([(p @ rot).astype(np.float32) for p in fill],
            [(p @ rot).astype(np.float32) for p in holes])


def blob_polygon(rng: np.random.Generator, radius: float, irregularity: float = 0.35,
                 aspect: float = 1.0, num_points: int = 48) -> np.ndarray:
    """A smooth random blob: a circle whose radius is perturbed by low-order harmonics.

    Args:
        rng (np.random.Generator): Random generator.
        radius (float): Mean radius in pixels.
        irregularity (float): Relative amplitude of the perturbation. Defaults to 0.35.
        aspect (float): Ratio of the y to the x semi-axis before a random rotation.
            Defaults to 1.
        num_points (int): Number of vertices. Defaults to 48.

    Returns:
        np.ndarray: ``(num_points, 2)`` float32 polygon centred on the origin.
    """
    t = np.linspace(0, 2 * math.pi, num_points, endpoint=False)
    rad = np.ones_like(t)
    for k in range(2, 6):
        rad += irregularity / (k - 1) * rng.uniform(-1, 1) * np.cos(k * t + rng.uniform(0, 6.3))
    rad = np.clip(rad, 0.25, None) * radius
    pts = np.stack([np.cos(t) * rad, np.sin(t) * rad * aspect], 1)
    a = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return (pts @ rot).astype(np.float32)


def rasterize(h: int, w: int, fill: Sequence[np.ndarray], holes: Sequence[np.ndarray] = (),
              offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Rasterises polygons into a boolean mask (no anti-aliasing, sub-pixel vertices).

    Args:
        h (int): Mask height.
        w (int): Mask width.
        fill (Sequence[np.ndarray]): ``(N, 2)`` ``(x, y)`` polygons to fill.
        holes (Sequence[np.ndarray]): Polygons cleared after filling. Defaults to none.
        offset (tuple[float, float]): ``(x, y)`` added to every vertex. Defaults to (0, 0).

    Returns:
        np.ndarray: ``(h, w)`` bool mask.
    """
    canvas = np.zeros((h, w), np.uint8)
    off = np.asarray(offset, np.float32)

    def fixed(p: np.ndarray) -> np.ndarray:
        return np.round((p + off) * _SCALE).astype(np.int32).reshape(-1, 1, 2)

    for poly in fill:
        cv2.fillPoly(canvas, [fixed(poly)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    for poly in holes:
        cv2.fillPoly(canvas, [fixed(poly)], 0, lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


def bbox_slices(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Row and column slices of the tight bounding box of a mask.

    Args:
        mask (np.ndarray): ``(H, W)`` bool mask.

    Returns:
        tuple[slice, slice] | None: ``(rows, cols)``, or None for an empty mask.
    """
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def paint(img: np.ndarray, mask: np.ndarray, patch_fn: Callable[[int, int], np.ndarray]) -> None:
    """Paints the pixels of ``mask`` in place with a texture generated for its bounding box.

    Args:
        img (np.ndarray): ``(H, W, 3)`` float32 image, modified in place.
        mask (np.ndarray): ``(H, W)`` bool mask.
        patch_fn (Callable[[int, int], np.ndarray]): Called as ``patch_fn(h, w)`` with the size of
            the mask's bounding box; returns an ``(h, w, 3)`` patch.
    """
    box = bbox_slices(mask)
    if box is None:
        return
    ys, xs = box
    patch = patch_fn(ys.stop - ys.start, xs.stop - xs.start)
    np.copyto(img[box], patch, where=mask[box][..., None])


def finish_image(rng: np.random.Generator, img: np.ndarray, blur: float = 0.6,
                 noise: float = 3.0) -> np.ndarray:
    """Camera-like finish: random global gain/bias, light blur and sensor noise, to ``uint8``.

    Args:
        rng (np.random.Generator): Random generator.
        img (np.ndarray): ``(H, W, 3)`` float32 image in ``[0, 255]``.
        blur (float): Largest Gaussian sigma in pixels; the sigma is drawn in
            ``[0.3 * blur, blur]``. Defaults to 0.6.
        noise (float): Largest standard deviation of the additive noise. Defaults to 3.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB image.
    """
    out = img * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15)
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(rng.uniform(0.3 * blur, blur)))
    out = out + gaussian_noise(rng, out.shape, rng.uniform(0.3 * noise, noise))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def prepare_out_dirs(dirs: list[str], pattern_ext: str, overwrite: bool) -> None:
    """Creates output folders, refusing to mix a new set with files of an old one.

    Args:
        dirs (list[str]): Folders to create.
        pattern_ext (str): File-name ending (``'.jpg'``) of the files this generator writes.
        overwrite (bool): Delete such files already present instead of raising.

    Raises:
        OutputExistsError: If a folder holds such files and not ``overwrite`` (a
            ``FileExistsError``).
    """
    for d in dirs:
        os.makedirs(d, exist_ok=True)
        stale = sorted(f for f in os.listdir(d) if f.endswith(pattern_ext))
        if stale and not overwrite:
            raise OutputExistsError(f'{d} already holds {len(stale)} {pattern_ext} files; '
                                  'pass overwrite=True (--overwrite) to replace them')
        for f in stale:
            os.remove(osp.join(d, f))


def save_image(path: str, img: np.ndarray, jpeg_quality: int = 95) -> None:
    """Writes an RGB image or a single-channel label map; the format follows the extension.

    Args:
        path (str): Output file (``.jpg`` or ``.png``).
        img (np.ndarray): ``(H, W, 3)`` uint8 RGB image or ``(H, W)`` uint8 map.
        jpeg_quality (int): JPEG quality. Defaults to 95.

    Raises:
        OSError: If OpenCV cannot write the file.
    """
    data = img[..., ::-1] if img.ndim == 3 else img  # RGB -> BGR for OpenCV
    is_jpeg = path.lower().endswith(('.jpg', '.jpeg'))
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if is_jpeg else []
    if not cv2.imwrite(path, np.ascontiguousarray(data), params):
        raise OSError(f'could not write {path}')
