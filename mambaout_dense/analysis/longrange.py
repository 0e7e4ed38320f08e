"""The long-range probe: training cells, a resumable results store, statistics, verdict, plots.

Measures the hypothesis of Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?",
arXiv 2405.07992: a state-space token mixer (SS2D, Liu et al., "VMamba: Visual State Space
Model", arXiv 2401.10166) may pay off where a dependency spans farther than a convolutional
mixer's receptive field, or where a stage sees a long sequence (L > 6D tokens). A *cell* is one
training run of the probe network of :mod:`mambaout_dense.analysis.probe` with one mixer, on a
``grid x grid`` token map (L = grid²), at one dependency distance d of the task of
:mod:`mambaout_dense.datasets.synthetic.longrange`, with one seed.

Each run trains on batches whose first ``local_fraction`` holds layouts at the local distance
(the control, inside every mixer's receptive field) and the rest at d; it is evaluated on fixed
held-out sets at both distances (the same sets for every mixer and seed). A run whose local
accuracy misses ``learned_threshold`` is flagged *not learned*: it failed to learn the task at
all, so its far accuracy is no evidence about range, and it is kept out of the statistics.
"""
import dataclasses
import hashlib
import json
import math
import os
import os.path as osp
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..datasets.synthetic.longrange import cue_batch, max_distance, min_distance

__all__ = ['ProbeSettings', 'Cell', 'SweepPlan', 'ResultStore', 'train_cell', 'run_cell_job',
           'exit_with_parent', 'evaluate', 'summarise', 'paired_gaps', 'verdict',
           'results_markdown', 'plot_results', 'mean_std_ci', 'complexity_markdown',
           'render_markdown', 'sessions_markdown', 'EVAL_SEED', 'CHANCE']

#: Seed of the held-out evaluation sets (never used for training batches).
EVAL_SEED = 999_983
#: Accuracy of a cue-blind model on the balanced two-class task.
CHANCE = 0.5
_MEAN, _STD = 0.5, 0.25  # input normalisation of the [0, 1] images


@dataclass(frozen=True)
class ProbeSettings:
    """Everything a cell's result depends on besides (mixer, grid, distance, seed).

    Args:
        dim (int): Width D of the probe's blocks. Defaults to 32.
        depth (int): Blocks. Defaults to 2.
        patch (int): Pixels per token side. Defaults to 4.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.
        background (str): 'noise' or 'clean'. Defaults to 'noise'.
        d_state (int): SSM state size of the SS2D blocks. Defaults to 1.
        dt_min (float): Smallest initial SSM step (VMamba's: 0.001). Defaults to 0.001.
        dt_max (float): Largest initial SSM step (VMamba's: 0.1). Defaults to 0.1.
        iters (int): Training iterations. Defaults to 350.
        batch (int): Images per iteration. Defaults to 16.
        lr (float): Peak AdamW learning rate. Defaults to 2e-3.
        weight_decay (float): AdamW weight decay. Defaults to 0.05.
        warmup (float): Fraction of the iterations of linear warm-up (then cosine to 0).
            Defaults to 0.1.
        local_fraction (float): Fraction of each batch at the local distance. Defaults to 0.5.
        curriculum (float): Fraction of the iterations over which the far part's distance ramps
            linearly from the local one up to d (0: d from the start). Defaults to 0.
        eval_samples (int): Held-out images per distance. Defaults to 256.
        learned_threshold (float): Local accuracy a run must reach to count. Defaults to 0.9.
        scan_backend (str, optional): Selective-scan backend; None chooses per device.
    """
    dim: int = 32
    depth: int = 2
    patch: int = 4
    target: int = 3
    marker: int = 2
    background: str = 'noise'
    d_state: int = 1
    dt_min: float = 0.001
    dt_max: float = 0.1
    iters: int = 350
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.1
    local_fraction: float = 0.5
    curriculum: float = 0.0
    eval_samples: int = 256
    learned_threshold: float = 0.9
    scan_backend: Optional[str] = None

    @property
    def local_distance(self) -> int:
        """The control's dependency distance: the marker right beside the target."""
        return min_distance(self.target, self.marker)

    def key(self) -> str:
        """A short hash of the settings that change results (not the scan backend)."""
        d = dataclasses.asdict(self)
        d.pop('scan_backend')
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Cell:
    """One training run: ``mixer`` on a ``grid x grid`` token map at distance ``distance``."""
    mixer: str
    grid: int
    distance: int
    seed: int

    def key(self) -> str:
        return f'{self.mixer}/g{self.grid}/d{self.distance}/s{self.seed}'


@dataclass
class SweepPlan:
    """The cells of a sweep: distances at one grid, and far distances across grids.

    Args:
        mixers (Sequence[str]): Mixers.
        seeds (Sequence[int]): Seeds.
        d_grid (int): Grid of the distance sweep.
        distances (Sequence[int]): Distances of the distance sweep (the local control is part
            of every run, so it need not be listed).
        l_grids (Sequence[int]): Grids of the sequence-length sweep.
        far_fraction (float): The far distance of a grid g is ``round(far_fraction * g)``,
            clipped to the largest one that fits.
        target (int): Target side in tokens. Defaults to 3.
        marker (int): Marker side in tokens. Defaults to 2.
    """
    mixers: Sequence[str]
    seeds: Sequence[int]
    d_grid: int
    distances: Sequence[int]
    l_grids: Sequence[int]
    far_fraction: float
    target: int = 3
    marker: int = 2

    def far_distance(self, grid: int) -> int:
        """The far distance of the sequence-length sweep at ``grid``."""
        hi = max_distance(grid, self.target, self.marker)
        return int(min(hi, max(min_distance(self.target, self.marker) + 1,
                               round(self.far_fraction * grid))))

    def grid_distances(self) -> List[Tuple[int, int]]:
        """(grid, distance) pairs, distance sweep first, without repeats."""
        pairs = [(self.d_grid, int(d)) for d in self.distances]
        pairs += [(g, self.far_distance(g)) for g in self.l_grids]
        for g, d in pairs:
            lo, hi = min_distance(self.target, self.marker), max_distance(g, self.target,
                                                                            self.marker)
            if not lo <= d <= hi:
                raise ValueError(f'distance {d} does not fit a {g}x{g} grid (valid {lo}..{hi})')
        return list(dict.fromkeys(pairs))

    def cells(self) -> List[Cell]:
        """All cells, seed-major (every (mixer, grid, distance) gets seed 0 before seed 1)."""
        return [Cell(m, g, d, s) for s in self.seeds for g, d in self.grid_distances()
                for m in self.mixers]


class ResultStore:
    """Finished cells, one JSON line each, appended as they complete (a killed sweep resumes).

    Args:
        path (str): The JSON-lines file.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self, settings_key: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
        """Records by cell key, only those of ``settings_key`` when given (later lines win)."""
        out: Dict[str, Dict[str, Any]] = {}
        if not osp.isfile(self.path):
            return out
        with open(self.path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill
                    continue
                if settings_key is None or rec.get('settings_key') == settings_key:
                    out[rec['cell']] = rec
        return out

    def append(self, record: Dict[str, Any]) -> None:
        """Append one record and flush it to disk."""
        os.makedirs(osp.dirname(osp.abspath(self.path)), exist_ok=True)
        with open(self.path, 'a') as f:
            f.write(json.dumps(record) + '\n')
            f.flush()
            os.fsync(f.fileno())


# ----------------------------------------------------------------------------- training
def _tensor_batch(b: Dict[str, Any]):
    import torch
    images = (torch.from_numpy(b['images']) - _MEAN) / _STD
    return images, torch.from_numpy(b['labels'])


def _train_batch(s: ProbeSettings, grid: int, distance: int, seed: int, step: int):
    """Images and labels of training step ``step``: the local part, then the far part."""
    import torch
    local = s.local_distance
    n_local = s.batch if distance == local else int(round(s.local_fraction * s.batch))
    far = distance
    if s.curriculum > 0 and distance != local:
        ramp = max(1, int(s.curriculum * s.iters))
        far = int(round(local + (distance - local) * min(1.0, (step + 1) / ramp)))
    parts = []
    common = dict(grid=grid, patch=s.patch, target=s.target, marker=s.marker,
                  background=s.background)
    if n_local:
        parts.append(cue_batch((seed, grid, distance, step, 0), n_local, distance=local,
                               **common))
    if s.batch - n_local:
        parts.append(cue_batch((seed, grid, distance, step, 1), s.batch - n_local,
                               distance=far, **common))
    tensors = [_tensor_batch(p) for p in parts]
    return torch.cat([t[0] for t in tensors]), torch.cat([t[1] for t in tensors])


def evaluate(model, s: ProbeSettings, grid: int, distance: int, chunk: int = 64) -> float:
    """Accuracy on the target tokens of the held-out set at ``distance`` (chance: 0.5).

    Args:
        model (nn.Module): A probe (its mode is restored afterwards).
        s (ProbeSettings): Settings (task geometry, ``eval_samples``).
        grid (int): Tokens per side.
        distance (int): Dependency distance.
        chunk (int): Images per forward pass. Defaults to 64.

    Returns:
        float: Correct target tokens / target tokens.
    """
    import torch
    batch = cue_batch((EVAL_SEED, grid, distance), s.eval_samples, grid, distance, s.patch,
                      s.target, s.marker, s.background)
    images, labels = _tensor_batch(batch)
    device = next(model.parameters()).device
    images, labels = images.to(device), labels.to(device)
    was_training = model.training
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for i in range(0, len(images), chunk):
            pred = model(images[i:i + chunk]).argmax(1)
            lab = labels[i:i + chunk]
            mask = lab >= 0
            correct += int((pred[mask] == lab[mask]).sum())
            total += int(mask.sum())
    model.train(was_training)
    return correct / max(total, 1)


def build_cell_model(s: ProbeSettings, mixer: str):
    """The probe of a cell, with the settings' SSM initialisation."""
    from .probe import build_probe, set_ssm_init
    model = build_probe(mixer, dim=s.dim, depth=s.depth, patch=s.patch, d_state=s.d_state,
                        scan_backend=s.scan_backend)
    if (s.dt_min, s.dt_max) != (0.001, 0.1):
        set_ssm_init(model, s.dt_min, s.dt_max)
    return model


def train_cell(s: ProbeSettings, cell: Cell, device: str = 'cpu',
               progress: Optional[Any] = None) -> Dict[str, Any]:
    """Train and evaluate one cell.

    Args:
        s (ProbeSettings): Settings.
        cell (Cell): The cell.
        device (str): Torch device. Defaults to 'cpu'.
        progress (Callable[[int, float], None], optional): Called with (step, loss) every 50
            steps. Defaults to None.

    Returns:
        dict: The cell's record: its fields, ``acc_local``, ``acc`` (at its distance),
        ``learned``, ``final_loss`` (mean of the last 10% of steps), ``train_s``,
        ``s_per_iter``, ``eval_s``, ``params``, ``settings_key``.
    """
    import torch
    import torch.nn.functional as F
    torch.manual_seed(cell.seed)
    model = build_cell_model(s, cell.mixer).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and 'A_logs' not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and 'A_logs' not in n)]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=s.weight_decay),
                             dict(params=no_decay, weight_decay=0.0)], lr=s.lr)
    warm = max(1, int(s.warmup * s.iters))

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, s.iters - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    losses: List[float] = []
    start = time.perf_counter()
    model.train()
    for step in range(s.iters):
        images, labels = _train_batch(s, cell.grid, cell.distance, cell.seed, step)
        images, labels = images.to(device), labels.to(device)
        loss = F.cross_entropy(model(images), labels, ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
        if progress is not None and (step + 1) % 50 == 0:
            progress(step + 1, losses[-1])
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    acc_local = evaluate(model, s, cell.grid, s.local_distance)
    acc = acc_local if cell.distance == s.local_distance else evaluate(model, s, cell.grid,
                                                                        cell.distance)
    eval_s = time.perf_counter() - start
    tail = losses[-max(1, len(losses) // 10):] or [math.nan]
    return dict(cell=cell.key(), mixer=cell.mixer, grid=cell.grid, tokens=cell.grid**2,
                distance=cell.distance, seed=cell.seed, local_distance=s.local_distance,
                acc_local=acc_local, acc=acc, learned=acc_local >= s.learned_threshold,
                final_loss=float(np.mean(tail)), iters_done=len(losses), train_s=train_s,
                s_per_iter=train_s / max(1, len(losses)), eval_s=eval_s,
                params=sum(p.numel() for p in model.parameters()), settings_key=s.key())


def exit_with_parent(parent_pid: int, interval: float = 2.0) -> None:
    """Process-pool initializer: end this worker when the driver process is gone.

    A driver killed (SIGTERM, SIGKILL) leaves its pool workers running their cells to the end;
    a daemon thread here polls the parent id and exits the worker as soon as it changes.

    Args:
        parent_pid (int): The driver's process id.
        interval (float): Seconds between polls. Defaults to 2.
    """
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_cell_job(settings: Dict[str, Any], cell: Tuple[str, int, int, int], threads: int = 1,
                 device: str = 'cpu') -> Dict[str, Any]:
    """Process-pool entry point: set the thread count, then :func:`train_cell`."""
    import torch
    torch.set_num_threads(threads)
    rec = train_cell(ProbeSettings(**settings), Cell(*cell), device=device)
    rec.update(threads=threads, device=device)
    return rec


# ----------------------------------------------------------------------------- statistics
def mean_std_ci(values: Sequence[float], level: float = 0.95) -> Dict[str, float]:
    """Mean, sample standard deviation and half-width of the Student-t interval.

    Args:
        values (Sequence[float]): Observations.
        level (float): Coverage of the interval. Defaults to 0.95.

    Returns:
        dict: ``n``, ``mean``, ``std`` (ddof 1; NaN for n < 2) and ``ci`` (half-width; NaN for
        n < 2).
    """
    x = np.asarray(values, float)
    n = len(x)
    if n == 0:
        return dict(n=0, mean=math.nan, std=math.nan, ci=math.nan)
    if n == 1:
        return dict(n=1, mean=float(x[0]), std=math.nan, ci=math.nan)
    from scipy import stats
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))
    return dict(n=n, mean=float(x.mean()), std=std, ci=half)


def summarise(records: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per (mixer, grid, distance): runs, learned runs, accuracy over learned runs.

    Returns:
        list[dict]: ``mixer``, ``grid``, ``tokens``, ``distance``, ``runs``, ``learned``,
        ``acc`` (:func:`mean_std_ci` of the learned runs' accuracy at the distance) and
        ``acc_local`` (over all runs).
    """
    groups: Dict[Tuple[str, int, int], List[Dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r['mixer'], r['grid'], r['distance']), []).append(r)
    rows = []
    for (mixer, grid, distance), rs in groups.items():
        ok = [r for r in rs if r['learned']]
        rows.append(dict(mixer=mixer, grid=grid, tokens=grid * grid, distance=distance,
                         runs=len(rs), learned=len(ok), acc=mean_std_ci([r['acc'] for r in ok]),
                         acc_local=mean_std_ci([r['acc_local'] for r in rs])))
    return rows


def paired_gaps(records: Iterable[Dict[str, Any]], mixer: str,
                reference: str = 'gated_cnn') -> List[Dict[str, Any]]:
    """Accuracy of ``mixer`` minus ``reference`` per (grid, distance), paired by seed.

    Runs of the same seed see the same training batches and the same evaluation set; a pair
    counts only when both runs are learned.

    Returns:
        list[dict]: ``mixer``, ``reference``, ``grid``, ``distance``, ``gap``
        (:func:`mean_std_ci` of the per-seed differences), ``seeds``.
    """
    by: Dict[Tuple[str, int, int, int], Dict[str, Any]] = {}
    for r in records:
        by[(r['mixer'], r['grid'], r['distance'], r['seed'])] = r
    rows = []
    for grid, distance in sorted({(g, d) for m, g, d, _ in by if m == mixer}):
        seeds, diffs = [], []
        for m, g, d, seed in sorted(by):
            if (m, g, d) != (mixer, grid, distance):
                continue
            a, b = by[(m, g, d, seed)], by.get((reference, g, d, seed))
            if b is not None and a['learned'] and b['learned']:
                seeds.append(seed)
                diffs.append(a['acc'] - b['acc'])
        rows.append(dict(mixer=mixer, reference=reference, grid=grid, distance=distance,
                         gap=mean_std_ci(diffs), seeds=seeds))
    return rows


def _pm(stat: Dict[str, float], digits: int = 2) -> str:
    if stat['n'] == 0:
        return 'n/a'
    if stat['n'] == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _signed(stat: Dict[str, float]) -> str:
    if stat['n'] < 2:
        return 'n/a' if stat['n'] == 0 else f"{stat['mean']:+.2f} (1 seed)"
    return (f"{stat['mean']:+.2f} ± {stat['std']:.2f} (95% CI {stat['mean'] - stat['ci']:+.2f}"
            f"..{stat['mean'] + stat['ci']:+.2f}, {stat['n']} seeds)")


def _gap_reading(stat: Dict[str, float]) -> str:
    """'ahead', 'behind', 'no difference beyond the seed spread' or 'too few seeds'."""
    if stat['n'] < 2:
        return 'too few learned seed pairs'
    lo, hi = stat['mean'] - stat['ci'], stat['mean'] + stat['ci']
    if lo > 0:
        return 'ahead'
    if hi < 0:
        return 'behind'
    return 'no difference beyond the seed spread'


def _above_chance(stat: Dict[str, float]) -> Optional[bool]:
    if stat['n'] < 2:
        return None
    return stat['mean'] - stat['ci'] > CHANCE


def verdict(records: Sequence[Dict[str, Any]], settings: ProbeSettings, d_grid: int,
            receptive_fields: Dict[str, float],
            far_by_grid: Optional[Dict[int, int]] = None) -> List[str]:
    """Sentences computed from the numbers (markdown bullets), whatever the outcome.

    Args:
        records (Sequence[dict]): Cell records.
        settings (ProbeSettings): Settings of the sweep.
        d_grid (int): Grid of the distance sweep.
        receptive_fields (dict[str, float]): Radius per mixer in tokens.
        far_by_grid (dict[int, int], optional): Far distance per grid of the sequence-length
            sweep; adds one bullet per mixer along L. Defaults to None.

    Returns:
        list[str]: One bullet per finding.
    """
    out = []
    rf = receptive_fields.get('gated_cnn', math.inf)
    mixers = list(dict.fromkeys(r['mixer'] for r in records))
    n_all, n_ok = len(records), sum(r['learned'] for r in records)
    failed: Dict[str, int] = {}
    for r in records:
        if not r['learned']:
            failed[r['mixer']] = failed.get(r['mixer'], 0) + 1
    listing = ', '.join(f'{m} ({n})' for m, n in sorted(failed.items()))
    out.append(f'Local control (d = {settings.local_distance}, accuracy >= '
               f'{settings.learned_threshold:g} required): {n_ok} of {n_all} runs learned'
               + (f'; not learned: {listing} — kept out of the evidence.' if failed
                  else ' — every mixer learned the task.'))
    rows = {(r['mixer'], r['grid'], r['distance']): r for r in summarise(records)}
    beyond = sorted({d for m, g, d in rows if g == d_grid and d > rf})
    inside = sorted({d for m, g, d in rows if g == d_grid and d <= rf
                     and d != settings.local_distance})
    for label, ds in (('inside', inside), ('beyond', beyond)):
        if not ds:
            continue
        parts = []
        for m in mixers:
            stats = [rows[(m, d_grid, d)]['acc'] for d in ds if (m, d_grid, d) in rows]
            flags = [_above_chance(s) for s in stats]
            known = [f for f in flags if f is not None]
            if not known:
                parts.append(f'{m}: too few learned runs')
                continue
            above = sum(known)
            accs = ', '.join(_pm(s) for s in stats)
            parts.append(f'{m} above chance at {above} of {len(known)} distances ({accs})')
        out.append(f'Grid {d_grid}x{d_grid} (L = {d_grid**2}), d {label} the Gated-CNN field '
                   f'(radius {rf:g} tokens; d = {", ".join(map(str, ds))}): '
                   + '; '.join(parts) + '.')
    for m in [m for m in mixers if m != 'gated_cnn']:
        gaps = [g for g in paired_gaps(records, m) if g['distance'] > rf]
        if not gaps:
            continue
        items = [f"d = {g['distance']} (L = {g['grid']**2}): {_signed(g['gap'])}, "
                 f"{_gap_reading(g['gap'])}" for g in gaps]
        readings = {_gap_reading(g['gap']) for g in gaps}
        if readings == {'no difference beyond the seed spread'}:
            head = 'no difference larger than the seed spread'
        elif 'ahead' in readings and 'behind' not in readings:
            head = f'{m} ahead where the interval excludes 0'
        elif 'behind' in readings and 'ahead' not in readings:
            head = f'{m} behind where the interval excludes 0'
        elif readings == {'too few learned seed pairs'}:
            head = 'too few learned seed pairs to compare'
        else:
            head = 'mixed'
        out.append(f'{m} minus gated_cnn beyond the Gated-CNN field: {head} — '
                   + '; '.join(items) + '.')
    if far_by_grid:
        grids = sorted(far_by_grid)
        for m in mixers:
            accs = [f"L = {g * g} (L/6D = {g * g / (6 * settings.dim):.2f}, d = "
                    f"{far_by_grid[g]}{'' if far_by_grid[g] <= rf else ' beyond'}): "
                    + (_pm(rows[(m, g, far_by_grid[g])]['acc'])
                       if (m, g, far_by_grid[g]) in rows else 'not run') for g in grids]
            line = f'Sequence length, {m} at the far distance: ' + '; '.join(accs)
            if m != 'gated_cnn':
                gaps = {(x['grid'], x['distance']): x['gap'] for x in paired_gaps(records, m)}
                line += '; minus gated_cnn: ' + ', '.join(
                    f"L = {g * g}: {_signed(gaps[(g, far_by_grid[g])])}" for g in grids
                    if (g, far_by_grid[g]) in gaps)
            out.append(line + '.')
    return out


# ----------------------------------------------------------------------------- reporting
def results_markdown(records: Sequence[Dict[str, Any]], settings: ProbeSettings,
                     receptive_fields: Dict[str, float]) -> str:
    """The table: accuracy (mean ± std over learned runs) per mixer, grid and distance.

    Columns: grid, L, L/(6D), d, whether d is within the Gated-CNN field, then per mixer
    ``acc (learned/runs)``, then the paired gap SS2D − Gated CNN when both are present.
    """
    rows = summarise(records)
    mixers = list(dict.fromkeys(r['mixer'] for r in records))
    keys = sorted({(r['grid'], r['distance']) for r in rows})
    by = {(r['mixer'], r['grid'], r['distance']): r for r in rows}
    rf = receptive_fields.get('gated_cnn', math.inf)
    gaps = {}
    for m in ('ss2d', 'hybrid', 'attention'):
        if m in mixers and 'gated_cnn' in mixers:
            gaps[m] = {(g['grid'], g['distance']): g['gap'] for g in paired_gaps(records, m)}
    head = ['grid', 'L', 'L/(6D)', 'd', 'd ≤ Gated-CNN radius'] + mixers + [
        f'{m} − gated_cnn' for m in gaps]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for grid, d in keys:
        cells = [str(grid), str(grid * grid), f'{grid * grid / (6 * settings.dim):.2f}', str(d),
                 'yes' if d <= rf else '**no**']
        for m in mixers:
            r = by.get((m, grid, d))
            cells.append('' if r is None else f"{_pm(r['acc'])} ({r['learned']}/{r['runs']})")
        for m in gaps:
            g = gaps[m].get((grid, d))
            cells.append('' if g is None else _signed(g).replace(' (95% CI', '<br>(95% CI'))
        lines.append('| ' + ' | '.join(cells) + ' |')
    local = ['| mixer | local accuracy (all runs) | runs learned |', '|---|---|---|']
    for m in mixers:
        rs = [r for r in records if r['mixer'] == m]
        local.append(f"| {m} | {_pm(mean_std_ci([r['acc_local'] for r in rs]))} | "
                     f"{sum(r['learned'] for r in rs)}/{len(rs)} |")
    return '\n'.join(lines) + '\n\n' + '\n'.join(local)


def plot_results(records: Sequence[Dict[str, Any]], settings: ProbeSettings, d_grid: int,
                 far_by_grid: Dict[int, int], receptive_fields: Dict[str, float],
                 out_dir: str) -> List[str]:
    """Write ``accuracy_vs_distance.png`` and ``accuracy_vs_length.png``; returns the paths.

    Points are the mean over learned runs, bars the standard deviation; the local accuracy is
    drawn at the local distance. The dashed line marks the Gated-CNN radius (distance plot) and
    L = 6D (length plot).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    rows = summarise(records)
    mixers = list(dict.fromkeys(r['mixer'] for r in records))
    paths = []

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, m in enumerate(mixers):
        pts = sorted((r['distance'], r['acc']) for r in rows
                     if r['mixer'] == m and r['grid'] == d_grid and r['acc']['n'])
        loc = mean_std_ci([r['acc_local'] for r in records
                           if r['mixer'] == m and r['grid'] == d_grid])
        if loc['n']:
            pts = [(settings.local_distance, loc)] + [p for p in pts
                                                      if p[0] != settings.local_distance]
        if not pts:
            continue
        x = np.array([p[0] for p in pts], float) + (i - len(mixers) / 2) * 0.12
        ax.errorbar(x, [p[1]['mean'] for p in pts], yerr=[np.nan_to_num(p[1]['std'])
                                                          for p in pts],
                    marker='o', capsize=3, label=m)
    rf = receptive_fields.get('gated_cnn', math.inf)
    if math.isfinite(rf):
        ax.axvline(rf, ls='--', c='grey', lw=1)
        ax.text(rf, 0.42, f' Gated-CNN radius {rf:g}', color='grey', fontsize=8)
    ax.axhline(CHANCE, ls=':', c='k', lw=1)
    ax.set(xlabel=f'dependency distance d (tokens, grid {d_grid}x{d_grid})',
           ylabel='target-token accuracy', ylim=(0.4, 1.02),
           title=f'accuracy vs distance (D = {settings.dim}, {settings.depth} blocks)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(osp.join(out_dir, 'accuracy_vs_distance.png'))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    by = {(r['mixer'], r['grid'], r['distance']): r for r in rows}
    grids = sorted(far_by_grid)
    for i, m in enumerate(mixers):
        xs, ys, es = [], [], []
        for g in grids:
            r = by.get((m, g, far_by_grid[g]))
            if r is not None and r['acc']['n']:
                xs.append(g * g)
                ys.append(r['acc']['mean'])
                es.append(np.nan_to_num(r['acc']['std']))
        if xs:
            ax.errorbar(np.array(xs) * (1 + 0.02 * (i - len(mixers) / 2)), ys, yerr=es,
                        marker='o', capsize=3, label=f'{m} (far)')
    ax.axvline(6 * settings.dim, ls='--', c='grey', lw=1)
    ax.text(6 * settings.dim, 0.42, ' L = 6D', color='grey', fontsize=8)
    ax.axhline(CHANCE, ls=':', c='k', lw=1)
    ax.set_xscale('log')
    ax.set(xlabel='tokens L at the mixing stage', ylabel='target-token accuracy',
           ylim=(0.4, 1.02), title='accuracy at the far distance vs sequence length')
    ax.minorticks_off()
    ax.set_xticks([g * g for g in grids], [f'{g * g}\n(d={far_by_grid[g]})' for g in grids])
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(osp.join(out_dir, 'accuracy_vs_length.png'))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def complexity_markdown(cx: Dict[str, Any], dim: int) -> str:
    """Receptive field, params and FLOPs per mixer (``cx``: ``receptive_field`` by mixer and
    ``rows`` with ``mixer``, ``params``, ``params_vs_gated`` and ``flops`` by grid)."""
    rows = cx['rows']
    grids = sorted({int(g) for r in rows for g in r.get('flops', {})})
    head = ['mixer', 'receptive field (tokens)', 'params', 'vs gated_cnn'] + [
        f'MFLOPs/image, L={g * g} (L/6D={g * g / (6 * dim):.2f})' for g in grids]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        rf = cx['receptive_field'][r['mixer']]
        lines.append('| ' + ' | '.join(
            [r['mixer'], 'global' if not math.isfinite(rf) else f'{rf:g}',
             f"{r['params']:,}", f"{100 * r['params_vs_gated']:+.1f}%"]
            + [f"{r['flops'][str(g)] / 1e6:.1f}" for g in grids]) + ' |')
    return '\n'.join(lines)


def sessions_markdown(sessions: Sequence[Dict[str, Any]]) -> str:
    """The commands that trained the cells, with their cell counts and wall times."""
    lines = ['| command | cells trained | wall time |', '|---|---|---|']
    lines += [f"| `{s['command']}` | {s['cells_run']} | {s['wall_s'] / 60:.1f} min |"
              for s in sessions]
    return '\n'.join(lines)


def render_markdown(res: Dict[str, Any]) -> str:
    """The results page (tables, verdict) of a results.json dict."""
    settings = ProbeSettings(**res['settings'])
    rf = {m: (math.inf if v is None else v) for m, v in res['receptive_field'].items()}
    records = res['records']
    cx = dict(receptive_field=rf, rows=res['complexity'])
    parts = [f"Probe: D = {settings.dim}, {settings.depth} blocks, {settings.patch}x"
             f"{settings.patch} patch stem; {settings.iters} iterations of batch "
             f"{settings.batch} (half at d = {settings.local_distance}, half at d), AdamW "
             f"{settings.lr:g}; {settings.eval_samples} held-out images per distance; 'learned' "
             f"= local accuracy >= {settings.learned_threshold:g}. {len(records)} of "
             f"{res['cells_planned']} cells done ({res['environment']}).", '',
             sessions_markdown(res.get('sessions', [])), '',
             complexity_markdown(cx, settings.dim), '']
    if records:
        parts += ['Target-token accuracy, mean ± std over learned seeds (learned/runs); chance '
                  '0.5. Gaps are paired by seed.', '',
                  results_markdown(records, settings, rf), '', '**Verdict** (computed from '
                  'the numbers above):', '']
        far = {int(g): d for g, d in res['plan'].get('far_by_grid', {}).items()}
        parts += [f'- {line}' for line in verdict(records, settings, res['plan']['d_grid'], rf,
                                                  far)]
    return '\n'.join(parts) + '\n'
