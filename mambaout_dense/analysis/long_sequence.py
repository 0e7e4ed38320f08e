"""The long-sequence probe: is a backbone stage's token sequence long in the paper's sense?

Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?", arXiv 2405.07992 (CVPR 2025),
section 3: a Transformer block on L tokens of width D costs 24·D²·L + 4·D·L² FLOPs, whose
quadratic part dominates when L/(6D) > 1, so a task is *long-sequence* when L > 6D (ViT-S,
D = 384: τ = 2304 tokens; ViT-B, D = 768: τ = 4608). The paper applies the rule to the
patch-16 sequence of a plain ViT; here it is also applied to every stage of a hierarchical
backbone (MambaOut, VMamba (Liu et al., arXiv 2401.10166), the hybrid), whose stage i runs on
ceil(H/s_i)·ceil(W/s_i) tokens of width D_i.

Token counts: a hierarchical stage at stride s has ceil(H/s)·ceil(W/s) tokens (its stride-2
3x3 convolutions pad, so odd sizes round up); a ViT at patch p has floor(H/p)·floor(W/p) tokens
(the patch embedding does not pad).

Default input shapes of a config come from the ``Resize`` of its test pipeline
(:func:`config_test_shape`): a ``keep_ratio`` scale ``(long, short)`` gives H = short and W = long
rounded down to a multiple of 64, which is the papers' FLOP-counting convention (COCO's
(1333, 800) -> 800×1280, ADE20K's (2048, 512) -> 512×2048); a fixed scale ``(w, h)`` gives
H = h, W = w.
"""
import math
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config

from ..errors import ConfigError, UsageError

__all__ = [
    'VIT_REFERENCES', 'long_sequence_rows', 'vit_rows', 'analyse',
    'stage_grid_markdown', 'rows_markdown', 'format_ratio', 'config_test_shape',
    'backbone_geometry', 'parse_shapes'
]

#: Plain ViTs the paper uses as reference: name -> (width D, patch size).
VIT_REFERENCES: Dict[str, Tuple[int, int]] = {'ViT-S': (384, 16), 'ViT-B': (768, 16)}
#: Multiple that the long side of a keep-ratio test scale is rounded down to.
LONG_SIDE_MULTIPLE = 64


def format_ratio(ratio: float) -> str:
    """The paper's rounding of L/(6D): one decimal from 10 up, two below (5.44, 111.1)."""
    return f'{ratio:.1f}' if ratio >= 10 else f'{ratio:.2f}'


def long_sequence_rows(dims: Sequence[int], strides: Sequence[int], shape: Tuple[int, int],
                       model: str = '') -> List[Dict[str, Any]]:
    """Per-stage token counts and L/(6D) of a hierarchical backbone at one input.

    Args:
        dims (Sequence[int]): Width D of each stage.
        strides (Sequence[int]): Stride of each stage.
        shape (tuple[int, int]): Input (H, W).
        model (str): Name written in the rows. Defaults to ''.

    Returns:
        list[dict]: One row per stage: ``model``, ``input`` ('HxW'), ``H``, ``W``, ``stage``
        (1-based), ``stride``, ``grid`` ('h×w'), ``tokens`` (L), ``width`` (D), ``threshold``
        (6D), ``ratio`` (L/(6D)) and ``long_sequence`` (L > 6D).
    """
    h, w = shape
    rows = []
    for i, (d, s) in enumerate(zip(dims, strides)):
        gh, gw = math.ceil(h / s), math.ceil(w / s)
        rows.append(_row(model, h, w, i + 1, s, gh, gw, int(d)))
    return rows


def vit_rows(shape: Tuple[int, int],
             references: Optional[Dict[str, Tuple[int, int]]] = None) -> List[Dict[str, Any]]:
    """The paper's plain-ViT references at one input (tokens = floor(H/p)·floor(W/p)).

    Args:
        shape (tuple[int, int]): Input (H, W).
        references (dict, optional): name -> (D, patch). Defaults to :data:`VIT_REFERENCES`.

    Returns:
        list[dict]: Rows as :func:`long_sequence_rows` (``stage`` is '-').
    """
    h, w = shape
    return [_row(name, h, w, '-', p, h // p, w // p, d)
            for name, (d, p) in (references or VIT_REFERENCES).items()]


def _row(model: str, h: int, w: int, stage: Any, stride: int, gh: int, gw: int,
         d: int) -> Dict[str, Any]:
    tokens = gh * gw
    ratio = tokens / (6 * d)
    return dict(model=model, input=f'{h}x{w}', H=h, W=w, stage=stage, stride=stride,
                grid=f'{gh}×{gw}', tokens=tokens, width=d, threshold=6 * d, ratio=ratio,
                long_sequence=tokens > 6 * d)


def analyse(dims: Sequence[int], strides: Sequence[int], shapes: Iterable[Tuple[int, int]],
            model: str = '', with_vit: bool = True) -> List[Dict[str, Any]]:
    """Rows of :func:`long_sequence_rows` (plus :func:`vit_rows`) for several inputs."""
    rows: List[Dict[str, Any]] = []
    for shape in shapes:
        rows += long_sequence_rows(dims, strides, shape, model)
        if with_vit:
            rows += vit_rows(shape)
    return rows


def rows_markdown(rows: Sequence[Dict[str, Any]]) -> str:
    """One markdown line per row: model, input, stage, stride, grid, L, D, 6D, L/(6D), long?"""
    head = ['model', 'input (H×W)', 'stage', 'stride', 'grid', 'tokens L', 'width D', '6D',
            'L/(6D)', 'long-sequence']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['H']}×{r['W']} | {r['stage']} | {r['stride']} | "
                     f"{r['grid']} | {r['tokens']} | {r['width']} | {r['threshold']} | "
                     f"{format_ratio(r['ratio'])} | {'yes' if r['long_sequence'] else 'no'} |")
    return '\n'.join(lines)


def stage_grid_markdown(rows: Sequence[Dict[str, Any]]) -> str:
    """The paper's compact layout (docs/reference.md): one line per input, one column per stride.

    Cells read ``L, L/(6D)``; the first cell of a line is ``L=...``. ViT rows are left out.
    """
    stage_rows = [r for r in rows if r['stage'] != '-']
    strides = sorted({r['stride'] for r in stage_rows})
    inputs: Dict[str, Dict[int, Dict[str, Any]]] = {}
    for r in stage_rows:
        inputs.setdefault(f"{r['H']}×{r['W']}", {})[r['stride']] = r
    lines = ['| input | ' + ' | '.join(f'stride {s}' for s in strides) + ' |',
             '|---|' + '---|' * len(strides)]
    for name, by_stride in inputs.items():
        cells = []
        for j, s in enumerate(strides):
            r = by_stride.get(s)
            cells.append('' if r is None else
                         f"{'L=' if j == 0 else ''}{r['tokens']}, {format_ratio(r['ratio'])}")
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- inputs
def parse_shapes(tokens: Sequence[str]) -> List[Tuple[int, int]]:
    """Parse ``['224', '224', '800x1280']`` into ``[(224, 224), (800, 1280)]``.

    Args:
        tokens (Sequence[str]): 'HxW' items, or integers taken in (H, W) pairs.

    Returns:
        list[tuple[int, int]]: (H, W) shapes.

    Raises:
        UsageError: An odd number of loose integers, or a malformed item.
    """
    shapes: List[Tuple[int, int]] = []
    pending: List[int] = []
    for tok in tokens:
        m = re.fullmatch(r'(\d+)[x×X*](\d+)', str(tok).strip())
        if m:
            if pending:
                raise UsageError(f'shape {pending[0]} has no width before {tok!r}')
            shapes.append((int(m.group(1)), int(m.group(2))))
        elif re.fullmatch(r'\d+', str(tok).strip()):
            pending.append(int(tok))
            if len(pending) == 2:
                shapes.append((pending[0], pending[1]))
                pending = []
        else:
            raise UsageError(f"cannot read shape {tok!r}: use 'H W' pairs or 'HxW'")
    if pending:
        raise UsageError(f'shape {pending[0]} has no width (give H W pairs)')
    return shapes


def _find_resize(pipeline: Any) -> Optional[dict]:
    for step in pipeline or []:
        if isinstance(step, dict) and str(step.get('type', '')).split('.')[-1].endswith(
                'Resize') and 'scale' in step:
            return step
        if isinstance(step, dict) and 'transforms' in step:  # TestTimeAug and similar
            found = _find_resize(step['transforms'])
            if found is not None:
                return found
    return None


def config_test_shape(cfg: Config) -> Tuple[int, int]:
    """The (H, W) the long-sequence probe uses by default for a config (see module docstring).

    Looks for the ``Resize`` (with a ``scale``) of ``test_dataloader.dataset.pipeline`` (through
    dataset wrappers), then of ``test_pipeline``.

    Args:
        cfg (Config): A detection or segmentation config.

    Returns:
        tuple[int, int]: (H, W).

    Raises:
        ConfigError: The config has no test Resize with a scale.
    """
    candidates = []
    loader = cfg.get('test_dataloader', None)
    dataset = loader.get('dataset', None) if loader else None
    while isinstance(dataset, dict):
        candidates.append(dataset.get('pipeline'))
        dataset = dataset.get('dataset')
    candidates.append(cfg.get('test_pipeline', None))
    for pipeline in candidates:
        resize = _find_resize(pipeline)
        if resize is not None:
            break
    else:
        raise ConfigError('the config has no Resize with a scale in its test pipeline; '
                         'pass --shape H W')
    scale = resize['scale']
    if isinstance(scale, (int, float)):
        scale = (scale, scale)
    a, b = int(scale[0]), int(scale[1])
    if resize.get('keep_ratio', False):
        long, short = max(a, b), min(a, b)
        return short, max(short, long // LONG_SIDE_MULTIPLE * LONG_SIDE_MULTIPLE)
    return b, a  # mmcv scales are (w, h)


def backbone_geometry(model: torch.nn.Module,
                      probe: Tuple[int, int] = (256, 256)) -> Tuple[List[int], List[int]]:
    """Width and stride of each stage: ``model.dims``/``model.strides`` when present.

    Backbones without that metadata (mmdet's Swin, ResNet) are probed with one forward pass of a
    ``probe`` input; then only the returned stages are known.

    Returns:
        tuple[list[int], list[int]]: (dims, strides).
    """
    if hasattr(model, 'dims') and hasattr(model, 'strides'):
        return list(model.dims), list(model.strides)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outs = model(torch.zeros(1, 3, *probe))
    model.train(was_training)
    dims = [int(o.shape[1]) for o in outs]
    strides = [int(round(probe[0] / o.shape[2])) for o in outs]
    return dims, strides
