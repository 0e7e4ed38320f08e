"""What a run of the dense long-range arms depends on: settings, cells, and sequence lengths.

The arms train the toolkit's own UperNet (Xiao et al., arXiv 1807.10221) and Mask R-CNN (He et
al., arXiv 1703.06870) with Femto-sized MambaOut, VMamba and hybrid backbones on the long-range
task (:mod:`mambaout_dense.datasets.synthetic.longrange_dense`), to test the long-sequence
hypothesis of Yu & Wang ("MambaOut: Do We Really Need Mamba for Vision?", arXiv 2405.07992) in
the real stack. A *cell* is one ``tools/train.py`` run: (arm, backbone, image size, far distance,
seed). The scene is drawn on a fixed grid of scene tokens, so a larger image renders **the same
scenes** larger: the cue spans more pixels and more tokens in every stage while the model stays
fixed (:func:`length_table`).
"""
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from ...errors import UsageError

__all__ = ['ARMS', 'BACKBONES', 'DenseSettings', 'DenseCell', 'plan_cells', 'length_table',
           'STRIDES']

#: Arm -> config prefix: configs/{prefix}_{backbone}_femto.py.
ARMS: Dict[str, str] = {'upernet': 'upernet_longrange', 'maskrcnn': 'mask_rcnn_longrange'}
#: Backbones, one config each: MambaOut-Femto, a VMamba of its widths, the hybrid.
BACKBONES: Tuple[str, ...] = ('mambaout', 'vmamba', 'hybrid')
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

    Raises:
        UsageError: An unknown backbone, a size not a multiple of the scene grid (or under
            128 px for Mask R-CNN), or a far distance not beyond the near control.
    """
    bad = [b for b in backbones if b not in BACKBONES]
    if bad:
        raise UsageError(f'unknown backbones {bad}; valid: {", ".join(BACKBONES)}')
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
