"""How far the shortcut baseline sees, measured, against how far the task's markers are.

The UperNet arm's shortcut baseline (``configs/upernet_longrange_local_femto.py``; after Geirhos
et al., "Shortcut learning in deep neural networks", arXiv 2004.07780) must see the whole near
marker from every near target pixel and no pixel of a far target's own marker, while a global
average pool hands it the image's statistics. Both sides are computed here, not typed:

- :func:`task_geometry`: over **every** single-pair placement the generator can draw at a
  distance (:func:`~mambaout_dense.datasets.synthetic.longrange.pair_layouts`), rendered at
  ``size // grid`` pixels per scene token, the largest Chebyshev distance between a target pixel
  and a pixel of its own marker (a field of that radius holds the whole marker from every target
  pixel) and the smallest (a field of smaller radius holds none of it from any target pixel).
- :func:`measure_reach`: the exact receptive field of the segmentor's per-pixel logits (after the
  head's resize to the image, the map a pixel's label is read from), by autograd: the input
  pixels with a non-zero gradient of one output pixel's logits, for the 16 output pixels of one
  stride-4 cell at the image centre (every phase of the stride), in eval mode (BatchNorm on its
  running statistics, as the scores are computed). The global pool's branch is detached (a
  forward hook on the head's pyramid pooling module), since it makes every pixel depend on every
  input pixel by design; what is left is the positional path.

In training, BatchNorm's batch statistics are one more image-level, non-positional channel, like
the pool.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...datasets.synthetic.longrange import pair_layouts

__all__ = ['task_geometry', 'measure_reach', 'baseline_reach']


def _pixel_interval(start, side: int, patch: int) -> Tuple[np.ndarray, np.ndarray]:
    """First and last pixel of boxes starting at token ``start`` and ``side`` tokens wide."""
    start = np.asarray(start)
    return start * patch, (start + side) * patch - 1


def task_geometry(size: int, grid: int, distance: int, target: int = 3,
                  marker: int = 2) -> Dict[str, int]:
    """Target-to-own-marker pixel distances over every placement the generator draws.

    Args:
        size (int): Image side in pixels (a multiple of ``grid``).
        grid (int): Scene tokens per side.
        distance (int): Dependency distance in scene tokens.
        target (int): Target side in scene tokens. Defaults to 3 (the generator's).
        marker (int): Marker side in scene tokens. Defaults to 2 (the generator's).

    Returns:
        dict: ``size``, ``distance``, ``patch``, ``placements``, ``full_view_px`` (max over
        placements, target pixels and marker pixels of the Chebyshev distance) and ``gap_px``
        (min over the same).
    """
    patch = size // grid
    t, m = pair_layouts(grid, distance, target, marker)  # (M, 2) top-left (y, x) tokens
    t0, t1 = _pixel_interval(t, target, patch)
    m0, m1 = _pixel_interval(m, marker, patch)
    # per axis: farthest pixel pair, and nearest (0 where the intervals overlap)
    far_axis = np.maximum(m1 - t0, t1 - m0)
    near_axis = np.maximum(0, np.maximum(m0 - t1, t0 - m1))
    # Chebyshev: the axes are chosen independently, so max (min) of the per-axis extremes
    return dict(size=int(size), distance=int(distance), patch=int(patch), placements=len(t),
                full_view_px=int(far_axis.max(1).max()), gap_px=int(near_axis.max(1).min()))


def _support_radii(support: np.ndarray, y: int, x: int) -> Tuple[int, int, bool]:
    """(farthest pixel of ``support`` from (y, x), largest full square around it, clipped).

    Chebyshev distances; ``clipped``: the support touches the image border (the field may go on
    beyond it)."""
    ys, xs = np.nonzero(support)
    if not len(ys):
        return -1, -1, False
    far = int(np.maximum(np.abs(ys - y), np.abs(xs - x)).max())
    h, w = support.shape
    clipped = bool(ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1)
    full = -1
    while True:
        r = full + 1
        if y - r < 0 or x - r < 0 or y + r >= h or x + r >= w:
            break
        if not support[y - r:y + r + 1, x - r:x + r + 1].all():
            break
        full = r
    return far, full, clipped


def measure_reach(cfg: Any, size: int, seed: int = 0, detach_pool: bool = True,
                  stride: int = 4) -> Dict[str, Any]:
    """The receptive field of a segmentor's per-pixel logits, by autograd.

    Args:
        cfg (Config | str): A segmentation config or its path (random weights of its
            initialisation, seeded).
        size (int): Image side in pixels.
        seed (int): Seed of the weights and the N(0, 1) input. Defaults to 0.
        detach_pool (bool): Detach the output of the decode head's pyramid pooling module
            (``decode_head.psp_modules``), so that only the positional path counts. Defaults to
            True.
        stride (int): The head's output stride: the output pixels measured are the
            ``stride x stride`` cell at the centre (every phase). Defaults to 4.

    Returns:
        dict: ``size``, ``reach_px`` (the farthest input pixel, Chebyshev, that any of the
        measured output pixels depends on), ``full_px`` (the largest radius whose whole square
        every measured output pixel depends on), ``clipped`` (a support touches the image
        border: ``reach_px`` is then a lower bound), ``whole_image`` (every measured output
        pixel depends on every input pixel), ``pool_detached``, ``phases``.

    Raises:
        UsageError: ``detach_pool`` on a head without ``psp_modules``.
    """
    import torch
    from mmengine.config import Config

    from ...builder import build_model, load_config
    from ...errors import UsageError
    from ..erf import init_weights_quietly
    if not isinstance(cfg, Config):
        cfg = load_config(cfg)
    torch.manual_seed(seed)
    model = build_model(cfg)
    init_weights_quietly(model)
    model.eval()
    hook = None
    if detach_pool:
        ppm = getattr(model.decode_head, 'psp_modules', None)
        if ppm is None:
            raise UsageError('detach_pool: the decode head has no pyramid pooling module '
                             '(psp_modules)')
        hook = ppm.register_forward_hook(lambda mod, args, out: [o.detach() for o in out])
    try:
        c = size // 2 - (size // 2) % stride  # top-left pixel of the centre cell
        phases = [(c + a, c + b) for a in range(stride) for b in range(stride)]
        n = len(phases)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(1, 3, size, size, generator=gen).repeat(n, 1, 1, 1).requires_grad_()
        metas = [dict(img_shape=(size, size), ori_shape=(size, size))] * n
        # (n, classes, H, W): eval mode, so the n copies do not interact
        logits = model.encode_decode(x, metas)
        ys = torch.tensor([p[0] for p in phases])
        xs = torch.tensor([p[1] for p in phases])
        support = torch.zeros(n, size, size, dtype=torch.bool)
        for k in range(logits.shape[1]):  # the union over classes: what the pixel depends on
            (grad, ) = torch.autograd.grad(logits[torch.arange(n), k, ys, xs].sum(), x,
                                           retain_graph=k + 1 < logits.shape[1])
            support |= grad.abs().sum(1) != 0
    finally:
        if hook is not None:
            hook.remove()
    radii = [_support_radii(support[i].numpy(), y, x_) for i, (y, x_) in enumerate(phases)]
    return dict(size=int(size), reach_px=max(r[0] for r in radii),
                full_px=min(r[1] for r in radii), clipped=any(r[2] for r in radii),
                whole_image=bool(support.all()), pool_detached=bool(detach_pool), phases=n)


def baseline_reach(config: str, sizes_fars: Sequence[Tuple[int, int]], grid: int, near: int,
                   reach_of: Optional[Dict[int, Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """Per (size, far distance): the baseline's measured reach beside the task's geometry.

    Args:
        config (str): The baseline's config.
        sizes_fars (Sequence[tuple[int, int]]): (image size, far distance in scene tokens).
        grid (int): Scene tokens per side.
        near (int): The near group's distance in scene tokens.
        reach_of (dict[int, dict], optional): :func:`measure_reach` results by size, to reuse.
            Defaults to None (measured here).

    Returns:
        list[dict]: ``size``, ``far``, ``reach_px``, ``full_px``, ``clipped``,
        ``near_view_px`` (the near marker fully in view needs a full square this wide),
        ``far_gap_px`` (a far target's own marker starts this far), ``near_in_view`` and
        ``far_out_of_view`` (the two conditions of a valid baseline).
    """
    reach_of = dict(reach_of or {})
    rows = []
    for size, far in sorted(set(sizes_fars)):
        if size not in reach_of:
            reach_of[size] = measure_reach(config, size)
        r = reach_of[size]
        need = task_geometry(size, grid, near)['full_view_px']
        gap = task_geometry(size, grid, far)['gap_px']
        rows.append(dict(size=int(size), far=int(far), reach_px=r['reach_px'],
                         full_px=r['full_px'], clipped=r['clipped'], near_view_px=need,
                         far_gap_px=gap, near_in_view=bool(r['full_px'] >= need),
                         far_out_of_view=bool(not r['clipped'] and r['reach_px'] < gap)))
    return rows
