"""What a long-range probe run depends on: the settings, one cell, and the sweep plan.

A *cell* is one training run of the probe network (:mod:`mambaout_dense.analysis.probe`): one
mixer at width D on a ``grid x grid`` token map (L = grid²), at one dependency distance d of the
task of :mod:`mambaout_dense.datasets.synthetic.longrange`, with one seed. The plan names the
cells of each *axis*, each changing one variable while the others stay fixed:

- ``d``: the distance at a fixed grid and width;
- ``L``: the grid (so L) at a fixed distance and width;
- ``D``: the width at a fixed grid and distance;
- ``shortcut``: the single-pair task of the earlier design (one coloured marker per image), run
  by the Gated CNN and the shortcut baseline only, to show the shortcut that task allowed;
- ``factorial``: every width x grid x distance of the plan whose scenes fit (for a GPU).
"""
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ...datasets.synthetic.longrange import (
    MIN_ACCEPTANCE,
    max_distance,
    min_distance,
    scene_acceptance,
)
from ...errors import UsageError

__all__ = ['ProbeSettings', 'Cell', 'SweepPlan', 'AXES', 'DEFAULT_MIXERS', 'SHORTCUT_MIXERS']

#: The axes a plan can hold (see the module docstring).
AXES = ('d', 'L', 'D', 'shortcut', 'factorial')
#: Mixers of the d, L and D axes: the Gated CNN, its field-matched (dilated) version, SS2D, the
#: hybrid, global attention with positions and the shortcut baseline.
DEFAULT_MIXERS = ('gated_cnn', 'gated_cnn_dilated', 'ss2d', 'hybrid', 'attention',
                  'gated_cnn_gap')
#: Mixers of the shortcut axis.
SHORTCUT_MIXERS = ('gated_cnn', 'gated_cnn_gap')


@dataclass(frozen=True)
class ProbeSettings:
    """Everything a cell's result depends on besides (mixer, D, grid, distance, pairs, seed).

    The values below were fixed on tuning seeds (100, 101) before any reported run; see
    docs/longrange.md, "Budget, fixed before the final runs".

    Args:
        depth (int): Blocks of the probe. Defaults to 2.
        patch (int): Pixels per token side. Defaults to 4.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.
        background (str): 'noise' or 'clean'. Defaults to 'noise'.
        clearance (int): Every other marker is at least d + clearance tokens from each target.
            Defaults to 2.
        d_state (int): SSM state size of the SS2D blocks. Defaults to 1.
        dt_min (float): Smallest initial SSM step (VMamba's: 0.001). Defaults to 0.001.
        dt_max (float): Largest initial SSM step (VMamba's: 0.1). Defaults to 0.1.
        dilation (int): Dilation factor of ``gated_cnn_dilated`` (blocks 1, f, ...). Defaults
            to 2.
        iters (int): Training iterations. Defaults to 800.
        batch (int): Images per iteration. Defaults to 16.
        lr (float): Peak AdamW learning rate. Defaults to 4e-3.
        weight_decay (float): AdamW weight decay. Defaults to 0.05.
        warmup (float): Fraction of the iterations of linear warm-up (then cosine to 0).
            Defaults to 0.1.
        controls (tuple[int, ...]): Control distances, in every run's batches and evaluations:
            inside every probe's field. Defaults to (3, 5): 5 lies beyond the radius-3 Gated CNN
            block of the hybrid, so the hybrid passes only through its SS2D block.
        control_fraction (float): Fraction of each batch at the control distances (split
            equally); the rest is at the cell's distance. Defaults to 0.5.
        eval_samples (int): Held-out images per distance, drawn per seed. Defaults to 256.
        curve_every (int): Iterations between learning-curve points. Defaults to 100.
        curve_samples (int): Held-out images per distance for a curve point. Defaults to 64.
        learned_threshold (float): Accuracy a run must reach at every control distance to count.
            Defaults to 0.9.
        scan_backend (str, optional): Selective-scan backend; None chooses per device.
    """
    depth: int = 2
    patch: int = 4
    target: int = 3
    marker: int = 2
    background: str = 'noise'
    clearance: int = 2
    d_state: int = 1
    dt_min: float = 0.001
    dt_max: float = 0.1
    dilation: int = 2
    iters: int = 800
    batch: int = 16
    lr: float = 4e-3
    weight_decay: float = 0.05
    warmup: float = 0.1
    controls: Tuple[int, ...] = (3, 5)
    control_fraction: float = 0.5
    eval_samples: int = 256
    curve_every: int = 100
    curve_samples: int = 64
    learned_threshold: float = 0.9
    scan_backend: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, 'controls', tuple(int(c) for c in self.controls))
        if not self.controls or min(self.controls) < min_distance(self.target, self.marker):
            raise UsageError(f'controls {self.controls} must be >= the smallest distance '
                             f'{min_distance(self.target, self.marker)}')
        if not 0 < self.control_fraction < 1:
            raise UsageError(f'control_fraction must be in (0, 1), got {self.control_fraction}')

    def key(self) -> str:
        """A short hash of the settings that change results (not the scan backend)."""
        d = dataclasses.asdict(self)
        d.pop('scan_backend')
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d['controls'] = list(self.controls)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'ProbeSettings':
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if k == 'controls' else v) for k, v in d.items()
                      if k in names})

    def batch_parts(self, distance: int) -> List[Tuple[int, int]]:
        """(distance, images) of one training batch: the controls, then the cell's distance."""
        n_ctrl = int(round(self.control_fraction * self.batch / len(self.controls)))
        parts = [(c, n_ctrl) for c in self.controls]
        return parts + [(distance, self.batch - n_ctrl * len(self.controls))]


@dataclass(frozen=True)
class Cell:
    """One training run."""
    mixer: str
    dim: int
    grid: int
    distance: int
    pairs: int
    seed: int

    def key(self) -> str:
        return (f'{self.mixer}/D{self.dim}/g{self.grid}/d{self.distance}/p{self.pairs}/'
                f's{self.seed}')

    @property
    def point(self) -> Tuple[int, int, int, int]:
        """(D, grid, distance, pairs): the cell without mixer and seed."""
        return (self.dim, self.grid, self.distance, self.pairs)


@dataclass
class SweepPlan:
    """The cells of the chosen axes.

    Args:
        mixers (Sequence[str]): Mixers of the d, L and D axes.
        seeds (Sequence[int]): Seeds.
        axes (Sequence[str]): Axes to run (see :data:`AXES`).
        dim (int): Width of the d and L axes (and of the shortcut axis).
        d_grid (int): Grid of the d axis.
        distances (Sequence[int]): Distances of the d axis, besides the controls (which every
            run evaluates).
        l_grids (Sequence[int]): Grids of the L axis.
        l_distance (int): Distance of the L and D axes and of the shortcut axis.
        dims (Sequence[int]): Widths of the D axis.
        dim_grid (int): Grid of the D axis.
        pairs (int): Target-marker pairs per image. Defaults to 2.
        clearance (int): See :class:`ProbeSettings`. Defaults to 2.
        shortcut_mixers (Sequence[str]): Mixers of the shortcut axis.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.
    """
    mixers: Sequence[str]
    seeds: Sequence[int]
    axes: Sequence[str]
    dim: int
    d_grid: int
    distances: Sequence[int]
    l_grids: Sequence[int]
    l_distance: int
    dims: Sequence[int]
    dim_grid: int
    pairs: int = 2
    clearance: int = 2
    shortcut_mixers: Sequence[str] = field(default_factory=lambda: list(SHORTCUT_MIXERS))
    target: int = 3
    marker: int = 2

    def points(self) -> Dict[str, List[Tuple[int, int, int, int]]]:
        """(D, grid, distance, pairs) of each chosen axis."""
        unknown = [a for a in self.axes if a not in AXES]
        if unknown:
            raise UsageError(f'unknown axes {unknown}; valid: {", ".join(AXES)}')
        out = {}
        if 'd' in self.axes:
            out['d'] = [(self.dim, self.d_grid, int(d), self.pairs) for d in self.distances]
        if 'L' in self.axes:
            out['L'] = [(self.dim, int(g), self.l_distance, self.pairs) for g in self.l_grids]
        if 'D' in self.axes:
            out['D'] = [(int(D), self.dim_grid, self.l_distance, self.pairs) for D in self.dims]
        if 'shortcut' in self.axes:
            out['shortcut'] = [(self.dim, self.d_grid, self.l_distance, 1)]
        if 'factorial' in self.axes:
            out['factorial'] = [(int(D), int(g), int(d), self.pairs) for D in self.dims
                                for g in self.l_grids
                                for d in sorted({*self.distances, self.l_distance})
                                if self._fits(g, d, self.pairs)]
        for axis, pts in out.items():
            for _, g, d, p in pts:
                if not self._fits(g, d, p):
                    raise UsageError(f'axis {axis}: {p} pair(s) at distance {d} do not fit a '
                                     f'{g}x{g} grid (distances {min_distance(self.target)}..'
                                     f'{max_distance(g, self.target, self.marker)} for one '
                                     f'pair; two need room for the clearance)')
        return out

    def _fits(self, grid: int, distance: int, pairs: int) -> bool:
        lo, hi = min_distance(self.target, self.marker), max_distance(grid, self.target,
                                                                        self.marker)
        if not lo <= distance <= hi:
            return False
        return scene_acceptance(grid, distance, pairs, self.clearance, self.target, self.marker,
                                samples=20000) >= MIN_ACCEPTANCE

    def cells(self) -> List[Cell]:
        """All cells without repeats, seed-major (every point gets seed s before seed s + 1)."""
        pts = self.points()
        per_point: Dict[Tuple[int, int, int, int], List[str]] = {}
        for axis, ps in pts.items():
            mixers = self.shortcut_mixers if axis == 'shortcut' else self.mixers
            for p in ps:
                have = per_point.setdefault(p, [])
                have += [m for m in mixers if m not in have]
        return [Cell(m, *p, seed=s) for s in self.seeds for p, ms in per_point.items()
                for m in ms]

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d['points'] = {a: [list(p) for p in ps] for a, ps in self.points().items()}
        return d
