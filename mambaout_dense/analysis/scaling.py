"""Latency and peak memory versus input size: where does a token mixer's growth bend?

Measures the claim behind the long-sequence criterion of Yu & Wang, "MambaOut: Do We Really Need
Mamba for Vision?", arXiv 2405.07992: attention costs 4·D·L² on top of the 24·D²·L of a
Transformer block, so its cost grows quadratically once L > 6D, while a Gated CNN (MambaOut) and
SS2D (Liu et al., "VMamba: Visual State Space Model", arXiv 2401.10166) grow linearly in L.

Two families of curves, each as latency (median of ``repeat`` timed forward passes after
``warmup`` passes, with CUDA synchronisation) and peak memory:

- whole backbones: MambaOut-T, VMamba-T, mmdet's Swin-T and a global-attention ViT-S (the
  quadratic reference); x-axis = L at patch 16 (the ViT's sequence), marked at ViT-S's
  L = 6D = 2304;
- single token mixers at one width D on the stride-4 token grid: the Gated CNN block, SS2D,
  global multi-head attention and 7x7 window attention (both with their q/k/v and output
  projections, through ``F.scaled_dot_product_attention``); marked at L = 6D.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the allocation before the call;
on the CPU the growth of the peak resident set of a forked child that runs the call once (so the
parent's timings are unaffected).

Skip rule: a case whose estimated memory exceeds ``max_memory_gb`` (global attention
materialising heads·L² scores) is recorded as skipped, as is a case whose latency, extrapolated
from the previous size of the same curve with the observed growth (at least linear), would exceed
``max_seconds`` per call.
"""
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..models.layers.attention import GlobalAttention, WindowAttention
from .measure import median_seconds, peak_memory_mb

__all__ = [
    'DEFAULT_SIZES', 'QUICK_SIZES', 'Case', 'default_cases', 'run_scaling', 'fit_exponents'
]

#: Default inputs (H, W): 224² to the detection resolution 800x1280.
DEFAULT_SIZES: Tuple[Tuple[int, int], ...] = ((224, 224), (320, 320), (512, 512), (640, 640),
                                              (800, 1280))
#: ``--quick`` inputs (with the tiny ``test`` architectures).
QUICK_SIZES: Tuple[Tuple[int, int], ...] = ((64, 64), (96, 96))
#: Bytes per float32 element.
_F32 = 4


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One curve: how to build the module and input for a size, and how to read the size.

    Attributes:
        name (str): Curve name.
        kind (str): 'backbone' or 'block'.
        width (int): D at which the L = 6D line of this curve's panel is drawn.
        module (Callable): ``module(h, w) -> nn.Module`` (called once per curve unless
            ``per_size_build``).
        inputs (Callable): ``inputs(h, w, device) -> Tensor``.
        tokens (Callable): ``tokens(h, w) -> L`` (the x-axis).
        memory_bytes (Callable, optional): ``memory_bytes(h, w, device)``: an estimate of the
            largest buffer, for the skip rule.
        per_size_build (bool): The module depends on the size (ViT position embeddings);
            otherwise it is built once and reused.
    """

    name: str
    kind: str
    width: int
    module: Callable[[int, int], nn.Module]
    inputs: Callable[[int, int, str], torch.Tensor]
    tokens: Callable[[int, int], int]
    memory_bytes: Optional[Callable[[int, int, str], float]] = None
    per_size_build: bool = False


def _stride4(h: int, w: int) -> Tuple[int, int]:
    return math.ceil(h / 4), math.ceil(w / 4)


def _tokens16(h: int, w: int) -> int:
    return (h // 16) * (w // 16)


def _attention_bytes(heads: int, seq: int, device: str) -> float:
    """Score-matrix bytes of global attention (three live copies on the CPU math path)."""
    if device.startswith('cuda'):
        return 0.0  # memory-efficient SDPA does not materialise the L x L scores
    return 3.0 * _F32 * heads * seq**2


def _swin_cfg(quick: bool) -> Dict[str, Any]:
    if quick:
        return dict(type='SwinTransformer', embed_dims=24, depths=(1, 1, 1, 1),
                    num_heads=(1, 2, 3, 6), window_size=7, drop_path_rate=0.0)
    return dict(type='SwinTransformer', embed_dims=96, depths=(2, 2, 6, 2),
                num_heads=(3, 6, 12, 24), window_size=7, mlp_ratio=4, qkv_bias=True,
                drop_path_rate=0.0, patch_norm=True, out_indices=(0, 1, 2, 3),
                convert_weights=False)


def _build_swin(quick: bool) -> nn.Module:
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    return MODELS.build(_swin_cfg(quick))


def _build_vit(h: int, w: int, quick: bool) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer
    if quick:
        return VisionTransformer(img_size=(h, w), patch_size=16, embed_dim=48, depth=2,
                                 num_heads=2, num_classes=0)
    import timm
    return timm.create_model('vit_small_patch16_224', pretrained=False, img_size=(h, w),
                             num_classes=0)


class _ViTFeatures(nn.Module):
    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x)


def default_cases(quick: bool = False, block_width: Optional[int] = None,
                  include: Optional[Sequence[str]] = None) -> List[Case]:
    """The backbone and token-mixer curves.

    Args:
        quick (bool): Tiny architectures (``test`` arches, a 2-block ViT, a 1-block-per-stage
            Swin) for CI. Defaults to False.
        block_width (int, optional): D of the single-mixer curves. Defaults to 96 (MambaOut-T's
            and Swin-T's stride-4 width), 16 when ``quick``.
        include (Sequence[str], optional): Keep only curves whose name contains one of these
            (case-insensitive). Defaults to all.

    Returns:
        list[Case]: Backbones first, then blocks.
    """
    from ..models.backbones.mambaout import GatedCNNBlock, MambaOut
    from ..models.backbones.vmamba import SS2D, VMamba
    arch = 'test' if quick else 'tiny'
    D = block_width or (16 if quick else 96)
    vit_dim, vit_heads = (48, 2) if quick else (384, 6)
    suffix = 'test' if quick else 'T'
    heads = max(1, D // 32)

    def image(h: int, w: int, device: str) -> torch.Tensor:
        return torch.randn(1, 3, h, w, device=device)

    def grid_input(channels_first: bool) -> Callable[[int, int, str], torch.Tensor]:
        def make(h: int, w: int, device: str) -> torch.Tensor:
            gh, gw = _stride4(h, w)
            shape = (1, D, gh, gw) if channels_first else (1, gh, gw, D)
            return torch.randn(*shape, device=device)
        return make

    def seq_input(h: int, w: int, device: str) -> torch.Tensor:
        gh, gw = _stride4(h, w)
        return torch.randn(1, gh * gw, D, device=device)

    def l4(h: int, w: int) -> int:
        gh, gw = _stride4(h, w)
        return gh * gw

    def global_bytes(h: int, w: int, device: str) -> float:
        return _attention_bytes(heads, l4(h, w), device)

    def vit_bytes(h: int, w: int, device: str) -> float:
        return _attention_bytes(vit_heads, _tokens16(h, w) + 1, device)

    cases = [
        Case(f'MambaOut-{suffix}', 'backbone', vit_dim, lambda h, w: MambaOut(arch), image,
             _tokens16),
        Case(f'VMamba-{suffix}', 'backbone', vit_dim, lambda h, w: VMamba(arch), image,
             _tokens16),
        Case(f'Swin-{suffix}', 'backbone', vit_dim, lambda h, w: _build_swin(quick), image,
             _tokens16),
        Case(f'ViT-{"test" if quick else "S"} (global attention)', 'backbone', vit_dim,
             lambda h, w: _ViTFeatures(_build_vit(h, w, quick)), image, _tokens16, vit_bytes,
             per_size_build=True),
        Case(f'Gated CNN block (D={D})', 'block', D, lambda h, w: GatedCNNBlock(D),
             grid_input(False), l4),
        Case(f'SS2D (D={D})', 'block', D,
             lambda h, w: SS2D(D, d_state=1, ssm_ratio=1.0, channels_first=True),
             grid_input(True), l4),
        Case(f'Global attention (D={D})', 'block', D, lambda h, w: GlobalAttention(D),
             seq_input, l4, global_bytes),
        Case(f'Window attention 7x7 (D={D})', 'block', D, lambda h, w: WindowAttention(D, 7),
             grid_input(False), l4),
    ]
    if include:
        keys = [k.lower() for k in include]
        cases = [c for c in cases if any(k in c.name.lower() for k in keys)]
    return cases


# ----------------------------------------------------------------------------- running
def run_scaling(cases: Sequence[Case], sizes: Sequence[Tuple[int, int]],
                devices: Sequence[str] = ('cpu', ), warmup: int = 1, repeat: int = 3,
                measure_memory: bool = True, max_memory_gb: float = 4.0,
                max_seconds: float = 30.0, progress: bool = True,
                seed: int = 0) -> List[Dict[str, Any]]:
    """Time (and measure the memory of) every case at every size on every device.

    Sizes are visited smallest first per curve so that the extrapolation rule can skip sizes
    that would exceed ``max_seconds``.

    Args:
        cases (Sequence[Case]): Curves, e.g. :func:`default_cases`.
        sizes (Sequence[tuple[int, int]]): Inputs (H, W).
        devices (Sequence[str]): 'cpu' and/or 'cuda'. Defaults to ('cpu',).
        warmup (int): Untimed calls before timing. Defaults to 1.
        repeat (int): Timed calls (median reported). Defaults to 3.
        measure_memory (bool): Also measure peak memory (one more call). Defaults to True.
        max_memory_gb (float): Skip cases whose estimated largest buffer exceeds this.
            Defaults to 4.
        max_seconds (float): Skip sizes whose extrapolated single-call latency exceeds this.
            Defaults to 30.
        progress (bool): Show a tqdm progress bar on stderr. Defaults to True.
        seed (int): Seed of weights and inputs. Defaults to 0.

    Returns:
        list[dict]: One row per (device, case, size): ``device``, ``kind``, ``curve``, ``H``,
        ``W``, ``tokens``, ``width``, ``latency_ms``, ``memory_mb``, ``status`` ('ok',
        'skipped' or 'error'), ``note``, ``threads``, ``repeat``.
    """
    from tqdm import tqdm
    sizes = sorted(sizes, key=lambda s: s[0] * s[1])
    bar = tqdm(total=len(cases) * len(sizes) * len(devices), desc='scaling', unit='case',
               disable=not progress, dynamic_ncols=True)
    rows: List[Dict[str, Any]] = []
    for device in devices:
        for case in cases:
            module: Optional[nn.Module] = None
            last: Optional[Tuple[int, float]] = None  # (tokens, seconds)
            slope = 1.0
            for h, w in sizes:
                bar.set_postfix_str(f'{device} {case.name} {h}x{w}')
                L = case.tokens(h, w)
                row = dict(device=device, kind=case.kind, curve=case.name, H=h, W=w, tokens=L,
                           width=case.width, latency_ms=float('nan'),
                           memory_mb=float('nan'), status='ok', note='',
                           threads=torch.get_num_threads(), repeat=repeat)
                rows.append(row)
                est = case.memory_bytes(h, w, device) if case.memory_bytes else 0.0
                if est > max_memory_gb * 2**30:
                    row.update(status='skipped', note=f'estimated {est / 2**30:.1f} GiB > '
                               f'{max_memory_gb:g} GiB')
                    bar.update()
                    continue
                if last is not None:
                    predicted = last[1] * (L / max(last[0], 1))**max(slope, 1.0)
                    if predicted > max_seconds:
                        row.update(status='skipped', note=f'extrapolated {predicted:.0f} s > '
                                   f'{max_seconds:g} s per call')
                        bar.update()
                        continue
                try:
                    torch.manual_seed(seed)
                    if case.per_size_build or module is None:
                        module = case.module(h, w).to(device)
                        module.eval()  # (mmdet's Swin.train() returns None: do not chain)
                    x = case.inputs(h, w, device)
                    with torch.no_grad():
                        fn = lambda m=module, x=x: m(x)  # noqa: E731
                        seconds = median_seconds(fn, device, warmup, repeat)
                        row['latency_ms'] = seconds * 1e3
                        if measure_memory:
                            row['memory_mb'] = peak_memory_mb(fn, device)
                except (RuntimeError, MemoryError) as err:  # OOM and backend failures
                    row.update(status='error', note=f'{type(err).__name__}: {str(err)[:120]}')
                    if device.startswith('cuda'):
                        torch.cuda.empty_cache()
                    bar.update()
                    continue
                if last is not None and L > last[0] and seconds > 0 and last[1] > 0:
                    slope = math.log(seconds / last[1]) / math.log(L / last[0])
                last = (L, seconds)
                bar.update()
            module = None  # free it before the next curve
    bar.close()
    return rows


def fit_exponents(rows: Sequence[Dict[str, Any]], key: str = 'latency_ms') -> List[Dict[str, Any]]:
    """Growth exponent per curve: slope of log(``key``) against log(tokens) (numpy polyfit).

    Returns:
        list[dict]: ``device``, ``kind``, ``curve``, ``exponent`` (NaN with < 2 points),
        ``points``, ``tokens_min``, ``tokens_max``.
    """
    groups: Dict[Tuple[str, str, str], List[Tuple[float, float]]] = {}
    for r in rows:
        value = r.get(key)
        ok = r['status'] == 'ok' and value is not None and np.isfinite(value) and value > 0
        groups.setdefault((r['device'], r['kind'], r['curve']), [])
        if ok:
            groups[(r['device'], r['kind'], r['curve'])].append((float(r['tokens']), value))
    fits = []
    for (device, kind, curve), pts in groups.items():
        tokens = sorted({p[0] for p in pts})
        exponent = float('nan')
        if len(tokens) >= 2:
            x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            exponent = float(np.polyfit(x, y, 1)[0])
        fits.append(dict(device=device, kind=kind, curve=curve, exponent=exponent,
                         points=len(pts), tokens_min=int(tokens[0]) if tokens else 0,
                         tokens_max=int(tokens[-1]) if tokens else 0))
    return fits
