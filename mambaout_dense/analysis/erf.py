"""Effective receptive field (ERF) of each backbone stage.

How far does a stage's output actually look? The long-sequence argument of Yu & Wang, "MambaOut:
Do We Really Need Mamba for Vision?", arXiv 2405.07992, rests on token mixers that see
globally (attention, the SS2D of Liu et al., "VMamba: Visual State Space Model",
arXiv 2401.10166) against ones that see a 7x7 window per block (MambaOut's Gated CNN). The ERF
(Luo et al., NeurIPS 2016; the aggregation of Ding et al., RepLKNet, CVPR 2022) measures it: for
stage i, the gradient of the central output location (summed over channels) with respect to the
input image, |grad| summed over the colour channels and averaged over N images. The central
location is reduced to a scalar as RepLKNet's ERF code does, ``sum_c ReLU(out[c, h/2, w/2])``:
the plain channel sum of a LayerNorm output (every stage output here passes one) is the constant
sum of the norm's biases, whose gradient is zero.

Summaries: the radius around the map's centre (its centroid: the input position of the central
location, which depends on how the stem pads) that holds 50% and 90% of the gradient mass, in
input pixels. Heat-maps are drawn on a log scale relative to their maximum. With random weights a
residual network's ERF is dominated by its identity paths (the stem's few pixels); trained weights
spread it.

Images: ``scene`` (default) draws natural-looking scenes with the synthetic ADE20K renderer of
:mod:`mambaout_dense.datasets.synthetic.ade`, ``noise`` draws N(0, 1) pixels, and
:func:`dataset_images` takes the config's validation images; all are normalised with the
config's ``data_preprocessor`` mean/std.
"""
import copy
import json
import math
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch import nn

from ..checkpoint.io import extract_state_dict, safe_load
from ..errors import DataError, UsageError

__all__ = [
    'IMAGENET_MEAN', 'IMAGENET_STD', 'load_backbone_checkpoint', 'synthetic_images',
    'dataset_images', 'erf_maps', 'mass_radii', 'erf_summary', 'plot_erf', 'erf_markdown',
    'run_erf', 'preprocessor_stats', 'init_weights_quietly'
]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


# ----------------------------------------------------------------------------- weights
def load_backbone_checkpoint(model: nn.Module, path: str) -> Dict[str, Any]:
    """Load a checkpoint into a backbone, strictly.

    A detector/segmentor checkpoint (keys under ``backbone.``) must match the backbone exactly.
    Otherwise the file is taken as a backbone or classification checkpoint and passed through the
    backbone's ``convert_checkpoint`` when it has one; only the dense-prediction output norms
    (``new_param_patterns``) may then be missing (they keep their initialisation).

    Args:
        model (nn.Module): The backbone (already initialised).
        path (str): Checkpoint file.

    Returns:
        dict: ``loaded`` (number of tensors), ``source`` ('backbone.' or 'converted' or
        'plain'), ``new`` (model keys left at their initialisation).

    Raises:
        CheckpointError: Unreadable file, missing or unexpected keys, or a shape mismatch.
    """
    from ..checkpoint.loading import TASK_PREFIXES, load_pretrained
    raw = extract_state_dict(safe_load(path), path)
    prefix = next((p for p in TASK_PREFIXES if any(k.startswith(p) for k in raw)), None)
    if prefix is not None:  # a detector/segmentor checkpoint: its backbone must match exactly
        report = load_pretrained(model, path, lambda state: (dict(state), []), prefix=prefix)
        source = prefix
    elif hasattr(model, 'convert_checkpoint'):
        report = load_pretrained(model, path, model.convert_checkpoint,
                                 allow_missing=getattr(model, 'new_param_patterns', ()))
        source = 'converted'
    else:
        report = load_pretrained(model, path, lambda state: (dict(state), []))
        source = 'plain'
    return dict(loaded=len(report.loaded), source=source, new=report.new)


def init_weights_quietly(model: nn.Module) -> None:
    """``model.init_weights()`` without mmengine's per-parameter INFO dump."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


# ----------------------------------------------------------------------------- images
def preprocessor_stats(cfg: Optional[Config]) -> Tuple[Tuple[float, ...], Tuple[float, ...], bool]:
    """(mean, std, bgr_to_rgb) of ``cfg.model.data_preprocessor`` (ImageNet's by default)."""
    pre = (cfg.model.get('data_preprocessor', None) or {}) if cfg is not None else {}
    mean = tuple(pre.get('mean', IMAGENET_MEAN) or IMAGENET_MEAN)
    std = tuple(pre.get('std', IMAGENET_STD) or IMAGENET_STD)
    return mean, std, bool(pre.get('bgr_to_rgb', True))


def _normalise(rgb: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (rgb.float() - m) / s


def synthetic_images(num: int, shape: Tuple[int, int], seed: int = 0, kind: str = 'scene',
                     mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Normalised input images, (N, 3, H, W) float32.

    Args:
        num (int): N.
        shape (tuple[int, int]): (H, W).
        seed (int): Seed. Defaults to 0.
        kind (str): 'scene' (synthetic ADE20K-like scenes, resized to the shape) or 'noise'
            (standard-normal pixels after normalisation). Defaults to 'scene'.
        mean, std (Sequence[float]): RGB normalisation.

    Returns:
        Tensor: (N, 3, H, W).
    """
    h, w = shape
    if kind == 'noise':
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(num, 3, h, w, generator=gen)
    if kind != 'scene':
        raise UsageError(f"Unknown image kind {kind!r}; valid: 'scene', 'noise'")
    from ..datasets.synthetic.ade import ade_sample
    imgs = []
    for i in range(num):
        img, _ = ade_sample(seed, 'val', i, max(h, w))  # (S, S, 3) uint8 RGB
        t = torch.from_numpy(img).permute(2, 0, 1)[None].float()  # (1, 3, S, S)
        imgs.append(F.interpolate(t, size=(h, w), mode='bilinear', align_corners=False))
    return _normalise(torch.cat(imgs), mean, std)


def dataset_images(cfg: Config, num: int, shape: Tuple[int, int]) -> torch.Tensor:
    """The first ``num`` images of the config's validation set, resized and normalised.

    Builds ``val_dataloader.dataset`` (with its test pipeline) in the config's task scope.

    Returns:
        Tensor: (N, 3, H, W).

    Raises:
        DataError: The dataset is missing (see :func:`check_data_paths`) or empty.
    """
    from mmengine.registry import DefaultScope

    from ..builder import init_task_scope
    from ..datasets.paths import check_data_paths
    scope = init_task_scope(cfg)
    check_data_paths(cfg, ('val_dataloader', ))
    if scope == 'mmdet':
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    mean, std, bgr_to_rgb = preprocessor_stats(cfg)
    with DefaultScope.overwrite_default_scope(scope):
        dataset = DATASETS.build(copy.deepcopy(cfg.val_dataloader.dataset))
        imgs = []
        for i in range(min(num, len(dataset))):
            x = dataset[i]['inputs'].float()[None]  # (1, 3, h, w), BGR as loaded by cv2
            if bgr_to_rgb:
                x = x.flip(1)
            imgs.append(F.interpolate(x, size=shape, mode='bilinear', align_corners=False))
    if not imgs:
        raise DataError('the validation set of the config is empty')
    return _normalise(torch.cat(imgs), mean, std)


# ----------------------------------------------------------------------------- ERF
def erf_maps(model: nn.Module, images: torch.Tensor, batch_size: int = 2,
             progress: bool = False) -> List[Dict[str, Any]]:
    """Per-stage ERF maps: mean over images of |d sum_c ReLU(centre_c)/d input|, summed over RGB.

    Args:
        model (nn.Module): Backbone returning a tuple of NCHW maps (in eval mode: images must not
            interact, as they would through BatchNorm batch statistics).
        images (Tensor): (N, 3, H, W) normalised images.
        batch_size (int): Images per forward pass. Defaults to 2.
        progress (bool): tqdm progress bar over batches. Defaults to False.

    Returns:
        list[dict]: One per output: ``map`` ((H, W) float64 array), ``grid`` ((h, w) of the
        output), ``centre_out`` ((row, col) on the output grid), ``centre`` ((y, x) in input
        pixels: the centroid of the map), ``stride`` ((H/h, W/w)).
    """
    from tqdm import tqdm
    model.eval()
    n, _, H, W = images.shape
    acc: Optional[List[torch.Tensor]] = None
    grids: List[Tuple[int, int]] = []
    batches = range(0, n, batch_size)
    for start in tqdm(batches, desc='erf', unit='batch', disable=not progress):
        x = images[start:start + batch_size].clone().requires_grad_(True)
        outs = model(x)
        outs = outs if isinstance(outs, (tuple, list)) else (outs, )
        if acc is None:
            acc = [torch.zeros(H, W, dtype=torch.float64) for _ in outs]
            grids = [(int(o.shape[2]), int(o.shape[3])) for o in outs]
        for i, out in enumerate(outs):
            h, w = grids[i]
            # ReLU, then sum over channels (and images, which do not interact in eval mode)
            target = F.relu(out[:, :, h // 2, w // 2]).sum()
            (grad, ) = torch.autograd.grad(target, x, retain_graph=i < len(outs) - 1)
            acc[i] += grad.detach().abs().sum(dim=(0, 1)).double()  # (H, W)
        del outs
    results = []
    for i, total in enumerate(acc or []):
        h, w = grids[i]
        sy, sx = H / h, W / w
        erf = (total / n).numpy()
        results.append(dict(map=erf, grid=(h, w), centre_out=(h // 2, w // 2),
                            centre=_centroid(erf, ((h // 2 + 0.5) * sy - 0.5,
                                                   (w // 2 + 0.5) * sx - 0.5)),
                            stride=(sy, sx)))
    return results


def _centroid(erf: np.ndarray, default: Tuple[float, float]) -> Tuple[float, float]:
    """(y, x) first moment of a non-negative map; ``default`` for an all-zero map."""
    total = erf.sum()
    if not total > 0:
        return default
    h, w = erf.shape
    return (float(erf.sum(1) @ np.arange(h) / total), float(erf.sum(0) @ np.arange(w) / total))


def mass_radii(erf: np.ndarray, centre: Tuple[float, float],
               fractions: Sequence[float] = (0.5, 0.9)) -> Dict[float, float]:
    """Smallest radius around ``centre`` whose disc holds each fraction of the map's mass.

    Args:
        erf (np.ndarray): (H, W) non-negative map.
        centre (tuple[float, float]): (y, x) in pixels.
        fractions (Sequence[float]): Mass fractions. Defaults to (0.5, 0.9).

    Returns:
        dict[float, float]: fraction -> radius in pixels (NaN for an all-zero map).
    """
    h, w = erf.shape
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.hypot(yy - centre[0], xx - centre[1]).ravel()
    order = np.argsort(dist, kind='stable')
    mass = erf.ravel()[order]
    total = mass.sum()
    if not total > 0:
        return {f: float('nan') for f in fractions}
    cum = np.cumsum(mass) / total
    return {f: float(dist[order][min(int(np.searchsorted(cum, f)), cum.size - 1)])
            for f in fractions}


def erf_summary(maps: Sequence[Dict[str, Any]], stage_indices: Sequence[int],
                name: str = '') -> List[Dict[str, Any]]:
    """One row per stage: stride, grid, r50, r90 (pixels), and both relative to the input."""
    rows = []
    for idx, m in zip(stage_indices, maps):
        H, W = m['map'].shape
        radii = mass_radii(m['map'], m['centre'])
        rows.append(dict(model=name, stage=idx + 1, stride=round(m['stride'][0], 2),
                         grid=f"{m['grid'][0]}×{m['grid'][1]}", input=f'{H}x{W}',
                         centre=[round(c, 2) for c in m['centre']],
                         r50=round(radii[0.5], 2), r90=round(radii[0.9], 2),
                         r50_rel=round(radii[0.5] / math.hypot(H, W) * 2, 4),
                         r90_rel=round(radii[0.9] / math.hypot(H, W) * 2, 4)))
    return rows


def erf_markdown(rows: Sequence[Dict[str, Any]]) -> str:
    """Markdown table of :func:`erf_summary` rows."""
    lines = ['| model | input | stage | stride | grid | r50 (px) | r90 (px) | '
             'r90 / half-diagonal |', '|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['model']} | {r['input'].replace('x', '×')} | {r['stage']} | "
                     f"{r['stride']:g} | {r['grid']} | {r['r50']:.1f} | {r['r90']:.1f} | "
                     f"{r['r90_rel']:.2f} |")
    return '\n'.join(lines)


def plot_erf(maps: Sequence[Dict[str, Any]], rows: Sequence[Dict[str, Any]], path: str,
             title: str = '', floor: float = 1e-6) -> str:
    """Heat-maps, one panel per stage: log10(map / max) clipped at ``floor``, r50/r90 circles."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle
    fig, axes = plt.subplots(1, len(maps), figsize=(3.6 * len(maps), 3.8), squeeze=False)
    for ax, m, r in zip(axes[0], maps, rows):
        peak = m['map'].max()
        img = np.log10(np.clip(m['map'] / peak if peak > 0 else m['map'], floor, None))
        im = ax.imshow(img, cmap='viridis', vmin=math.log10(floor), vmax=0)
        cy, cx = m['centre']
        for radius, style in ((r['r50'], '--'), (r['r90'], ':')):
            if np.isfinite(radius):
                ax.add_patch(Circle((cx, cy), radius, fill=False, color='w', linestyle=style,
                                    linewidth=1.2))
        ax.set_title(f"stage {r['stage']} (stride {r['stride']:g})\n"
                     f"r50 {r['r50']:.0f} px, r90 {r['r90']:.0f} px", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label='log10(|grad| / max)')
    if title:
        fig.suptitle(title, fontsize=10)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)
    return path


def run_erf(model: nn.Module, images: torch.Tensor, out_dir: str, name: str,
            stage_indices: Optional[Sequence[int]] = None, batch_size: int = 2,
            progress: bool = False, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Compute the ERF of every output and write ``erf_{name}.png``/``.json``/``.md``.

    Args:
        model (nn.Module): Backbone (initialised or loaded).
        images (Tensor): (N, 3, H, W) normalised images.
        out_dir (str): Output folder.
        name (str): Model name used in file names and tables.
        stage_indices (Sequence[int], optional): Stage index of each output. Defaults to
            ``model.out_indices`` or 0..n-1.
        batch_size (int): Images per forward pass. Defaults to 2.
        progress (bool): Progress bar. Defaults to False.
        extra (dict, optional): Written into the JSON (checkpoint, image source ...).

    Returns:
        dict: ``rows`` (summary), ``files`` (written paths).
    """
    maps = erf_maps(model, images, batch_size=batch_size, progress=progress)
    if stage_indices is None:
        stage_indices = list(getattr(model, 'out_indices', range(len(maps))))
    rows = erf_summary(maps, stage_indices, name)
    os.makedirs(out_dir, exist_ok=True)
    stem = osp.join(out_dir, f'erf_{name}')
    h, w = images.shape[-2:]
    plot_erf(maps, rows, stem + '.png',
             title=f'ERF of {name}: {images.shape[0]} images of {h}×{w}')
    with open(stem + '.json', 'w') as f:
        json.dump(dict(model=name, images=int(images.shape[0]), shape=[int(h), int(w)],
                       stages=rows, **(extra or {})), f, indent=1)
    with open(stem + '.md', 'w') as f:
        f.write(erf_markdown(rows) + '\n')
    return dict(rows=rows, files=[stem + '.png', stem + '.json', stem + '.md'])
