"""What a run of the dense long-range arms depends on: settings, cells, and sequence lengths.

The arms train the toolkit's own UperNet (Xiao et al., arXiv 1807.10221) and Mask R-CNN (He et
al., arXiv 1703.06870) with Femto-sized MambaOut, VMamba and hybrid backbones on the long-range
task (:mod:`mambaout_dense.datasets.synthetic.longrange_dense`), to test the long-sequence
hypothesis of Yu & Wang ("MambaOut: Do We Really Need Mamba for Vision?", arXiv 2405.07992) in
the real stack. A *cell* is one ``tools/train.py`` run: (arm, backbone, image size, far distance,
seed). Its backbone is one of the three contenders (:data:`BACKBONES`) or the UperNet arm's
shortcut baseline (:data:`BASELINES`), which is run, stored and gated the same way and reported
apart. The scene is drawn on a fixed grid of scene tokens, so a larger image renders **the same
scenes** larger: the cue spans more pixels and more tokens in every stage while the model stays
fixed (:func:`length_table`).
"""
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from ...errors import UsageError

__all__ = ['ARMS', 'BACKBONES', 'BASELINES', 'BASELINE_ARMS', 'DenseSettings', 'DenseCell',
           'plan_cells', 'length_table', 'STRIDES']

#: Arm -> config prefix: configs/{prefix}_{backbone}_femto.py.
ARMS: Dict[str, str] = {'upernet': 'upernet_longrange', 'maskrcnn': 'mask_rcnn_longrange'}
#: Backbones, one config each: MambaOut-Femto, a VMamba of its widths, the hybrid.
BACKBONES: Tuple[str, ...] = ('mambaout', 'vmamba', 'hybrid')
#: Shortcut baselines, not contenders (configs/{prefix}_{name}_femto.py as the backbones): the
#: cheapest model that could cheat. ``local``: a one-stage MambaOut with a global-pool UperNet head,
#: which reads image-level statistics but not a far target's own marker (its reach is measured,
#: :mod:`.reach`). Not parameter-matched; kept out of the backbone comparisons.
BASELINES: Tuple[str, ...] = ('local', )
#: Arms that have the baselines' configs.
BASELINE_ARMS: Tuple[str, ...] = ('upernet', )
#: Output stride of each backbone stage (every backbone of this toolkit).
STRIDES: Tuple[int, ...] = (4, 8, 16, 32)


@dataclass(frozen=True)
class DenseSettings:
    """Everything a cell's result depends on besides (backbone, size, far distance, seed).

    Args:
        arm (str): 'upernet' or 'maskrcnn'.
        iters (int): Training iterations. Defaults to 1000.
        batch (int): Images per iteration (near and far drawn at random). Defaults to 8.
        lr (float): Peak AdamW learning rate (10% linear warm-up, cosine to 0). Defaults to 2e-4,
            tuned on seed 100: VMamba's loss spikes back to chance at 1e-3 and 5e-4.
        scene_grid (int): Scene tokens per side; ``size / scene_grid`` pixels per token.
            Defaults to 32.
        near (int): Distance of the local control, in scene tokens. Defaults to 3.
        num_train (int): Training images per group. Defaults to 1000.
        num_val (int): Validation images per group (fixed data seed 0). Defaults to 64.
        curve_points (int): Validations during training (the learning curve). Defaults to 8.
        background (str): 'noise' or 'clean'. Defaults to 'noise'.
    """
    arm: str
    iters: int = 1000
    batch: int = 8
    lr: float = 2e-4
    scene_grid: int = 32
    near: int = 3
    num_train: int = 1000
    num_val: int = 64
    curve_points: int = 8
    background: str = 'noise'

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise UsageError(f'unknown arm {self.arm!r}; valid: {", ".join(ARMS)}')
        if self.iters < 1 or self.batch < 1 or self.curve_points < 1:
            raise UsageError('--iters, --batch and --curve-points must be >= 1')

    def key(self) -> str:
        """A short hash of the settings (runs of other settings are not reused)."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def val_interval(self) -> int:
        return max(1, self.iters // self.curve_points)


@dataclass(frozen=True)
class DenseCell:
    """One ``tools/train.py`` run."""
    arm: str
    backbone: str
    size: int
    far: int  # scene tokens
    seed: int

    def key(self) -> str:
        return f'{self.arm}/{self.backbone}/s{self.size}/d{self.far}/seed{self.seed}'

    def config_name(self) -> str:
        return f'{ARMS[self.arm]}_{self.backbone}_femto'


def plan_cells(s: DenseSettings, backbones: Sequence[str], sizes: Sequence[int],
               distances: Sequence[int], seeds: Sequence[int]) -> List[DenseCell]:
    """Every cell, seed-major (each backbone and size gets seed k before seed k + 1).

    Args:
        s (DenseSettings): The settings.
        backbones (Sequence[str]): Names in :data:`BACKBONES` or :data:`BASELINES`.
        sizes (Sequence[int]): Image sides in pixels.
        distances (Sequence[int]): Far distances in scene tokens.
        seeds (Sequence[int]): Seeds.

    Raises:
        UsageError: An unknown backbone, a baseline in an arm without it, a size not a multiple
            of the scene grid (or under 128 px for Mask R-CNN), or a far distance not beyond the
            near control.
    """
    bad = [b for b in backbones if b not in BACKBONES + BASELINES]
    if bad:
        raise UsageError(f'unknown backbones {bad}; valid: {", ".join(BACKBONES + BASELINES)}')
    base = [b for b in backbones if b in BASELINES]
    if base and s.arm not in BASELINE_ARMS:
        raise UsageError(f'the shortcut baseline {", ".join(base)} exists for the '
                         f'{", ".join(BASELINE_ARMS)} arm only, not {s.arm}')
    for size in sizes:
        if size % s.scene_grid or size < s.scene_grid:
            raise UsageError(f'size {size} is not a multiple of the scene grid {s.scene_grid}')
        if s.arm == 'maskrcnn' and size < 128:
            # the FPN's stride-64 level would be 1x1: one anchor, which mmdet's RPN cannot take
            raise UsageError(f'size {size}: the Mask R-CNN arm needs images of >= 128 px')
    for d in distances:
        if d <= s.near:
            raise UsageError(f'far distance {d} must exceed the near control {s.near}')
    if not seeds:
        raise UsageError('--seeds must name at least one seed')
    return [DenseCell(s.arm, b, int(z), int(d), int(seed)) for seed in seeds for z in sizes
            for d in distances for b in backbones]


def length_table(sizes: Sequence[int], scene_grid: int, distances: Sequence[int],
                 dims: Sequence[int], strides: Sequence[int] = STRIDES) -> List[Dict[str, Any]]:
    """Per image size, stage and distance: the cue in pixels and tokens, L and L/(6D).

    Args:
        sizes (Sequence[int]): Image sides in pixels.
        scene_grid (int): Scene tokens per side.
        distances (Sequence[int]): Dependency distances in scene tokens (near and far).
        dims (Sequence[int]): Width D of each stage.
        strides (Sequence[int]): Output stride of each stage. Defaults to :data:`STRIDES`.

    Returns:
        list[dict]: ``size``, ``stage`` (1-based), ``stride``, ``side`` (tokens per side),
        ``L`` (tokens), ``D``, ``L_over_6D``, ``distance`` (scene tokens), ``distance_px`` and
        ``distance_tokens`` (in this stage's tokens).
    """
    rows = []
    for size in sizes:
        patch = size / scene_grid
        for i, (stride, dim) in enumerate(zip(strides, dims)):
            side = size // stride
            for d in distances:
                px = d * patch
                rows.append(dict(size=int(size), stage=i + 1, stride=int(stride), side=side,
                                 L=side * side, D=int(dim), L_over_6D=side * side / (6 * dim),
                                 distance=int(d), distance_px=px,
                                 distance_tokens=px / stride))
    return rows
