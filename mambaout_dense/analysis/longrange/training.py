"""Training and measuring one long-range probe cell: batches, evaluation, curves, cost.

Each run trains on batches whose ``control_fraction`` holds scenes at the control distances
(inside every probe's field) and the rest at the cell's distance d; it is evaluated on held-out
scenes drawn for its own seed, at every control distance and at d. A run whose accuracy misses
``learned_threshold`` at any control distance is *not learned*: it failed to learn the task at
all, so its accuracy at d is no evidence about range, and the statistics leave it out.
"""
import math
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...datasets.synthetic.longrange import cue_batch
from .settings import Cell, ProbeSettings

__all__ = ['EVAL_TAG', 'build_cell_model', 'evaluate', 'train_cell', 'run_cell_job',
           'exit_with_parent', 'measure_cost']

#: First element of every evaluation seed, ``(EVAL_TAG, run seed, ...)``: never a training seed.
EVAL_TAG = 999_983
_MEAN, _STD = 0.5, 0.25  # input normalisation of the [0, 1] images


def _batch(s: ProbeSettings, seed, n: int, grid: int, distance: int, pairs: int):
    import torch
    b = cue_batch(seed, n, grid, distance, s.patch, s.target, s.marker, s.background, pairs,
                  s.clearance)
    return (torch.from_numpy(b['images']) - _MEAN) / _STD, torch.from_numpy(b['labels'])


def _train_batch(s: ProbeSettings, cell: Cell, step: int):
    """Images and labels of training step ``step``: the control parts, then the far part."""
    import torch
    parts = [_batch(s, (cell.seed, cell.grid, cell.distance, cell.pairs, step, k), n,
                    cell.grid, d, cell.pairs)
             for k, (d, n) in enumerate(s.batch_parts(cell.distance)) if n]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _eval_set(s: ProbeSettings, cell: Cell, distance: int):
    """The held-out scenes of a run at ``distance``: drawn for the run's seed."""
    return _batch(s, (EVAL_TAG, cell.seed, cell.grid, distance, cell.pairs), s.eval_samples,
                  cell.grid, distance, cell.pairs)


def evaluate(model, images, labels, chunk: int = 64) -> Tuple[int, int]:
    """Correct and total labelled tokens of ``model`` on a held-out set.

    Args:
        model (nn.Module): A probe (its mode is restored afterwards).
        images (Tensor): (n, 3, H, W) normalised images.
        labels (Tensor): (n, grid, grid) token labels, -1 unlabelled.
        chunk (int): Images per forward pass. Defaults to 64.

    Returns:
        tuple[int, int]: (correct, total) target tokens.
    """
    import torch
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for i in range(0, len(images), chunk):
            pred = model(images[i:i + chunk].to(device)).argmax(1)
            lab = labels[i:i + chunk].to(device)
            mask = lab >= 0
            correct += int((pred[mask] == lab[mask]).sum())
            total += int(mask.sum())
    model.train(was_training)
    return correct, total


def build_cell_model(s: ProbeSettings, mixer: str, dim: int):
    """The probe of a cell, with the settings' SSM initialisation."""
    from ..probe import build_probe, set_ssm_init
    model = build_probe(mixer, dim=dim, depth=s.depth, patch=s.patch, d_state=s.d_state,
                        scan_backend=s.scan_backend, dilation=s.dilation)
    if (s.dt_min, s.dt_max) != (0.001, 0.1):
        set_ssm_init(model, s.dt_min, s.dt_max)
    return model


def _first_reaching(curve: List[List[float]], column: int, threshold: float) -> Optional[int]:
    for point in curve:
        if point[column] >= threshold:
            return int(point[0])
    return None


def train_cell(s: ProbeSettings, cell: Cell, device: str = 'cpu',
               progress: Optional[Callable[[int, float], None]] = None) -> Dict[str, Any]:
    """Train and evaluate one cell.

    Args:
        s (ProbeSettings): Settings.
        cell (Cell): The cell.
        device (str): Torch device. Defaults to 'cpu'.
        progress (Callable[[int, float], None], optional): Called with (step, loss) at every
            curve point. Defaults to None.

    Returns:
        dict: The cell's record: its fields, ``distances`` (controls, then d), ``acc`` (at d),
        ``acc_by_distance``, ``tokens_by_distance`` (correct, total), ``targets`` (held-out
        targets per distance), ``learned``, ``curve`` (rows ``[step, loss, acc at each of
        distances]`` on ``curve_samples`` images), ``iters_to_criterion`` (first curve step at
        ``learned_threshold`` per distance, None if never), ``final_loss``, ``train_s``,
        ``s_per_iter``, ``eval_s``, ``params``, ``settings_key``.
    """
    import torch
    import torch.nn.functional as F
    torch.manual_seed(cell.seed)
    model = build_cell_model(s, cell.mixer, cell.dim).to(device)
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
    distances = list(dict.fromkeys([*s.controls, cell.distance]))
    evals = {d: _eval_set(s, cell, d) for d in distances}
    curve: List[List[float]] = []
    losses: List[float] = []
    train_s = 0.0
    model.train()
    for step in range(s.iters):
        start = time.perf_counter()
        images, labels = _train_batch(s, cell, step)
        images, labels = images.to(device), labels.to(device)
        loss = F.cross_entropy(model(images), labels, ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        train_s += time.perf_counter() - start
        if not math.isfinite(losses[-1]):
            break
        if (step + 1) % s.curve_every == 0 or step + 1 == s.iters:
            point = [step + 1, float(np.mean(losses[-s.curve_every:]))]
            for d in distances:
                x, y = evals[d]
                c, t = evaluate(model, x[:s.curve_samples], y[:s.curve_samples])
                point.append(c / max(t, 1))
            curve.append(point)
            if progress is not None:
                progress(step + 1, losses[-1])
    start = time.perf_counter()
    tokens = {d: evaluate(model, *evals[d]) for d in distances}
    eval_s = time.perf_counter() - start
    acc = {d: c / max(t, 1) for d, (c, t) in tokens.items()}
    learned = all(acc[c] >= s.learned_threshold for c in s.controls)
    tail = losses[-max(1, len(losses) // 10):] or [math.nan]
    return dict(cell=cell.key(), mixer=cell.mixer, dim=cell.dim, grid=cell.grid,
                tokens=cell.grid**2, distance=cell.distance, pairs=cell.pairs, seed=cell.seed,
                controls=list(s.controls), distances=distances, acc=acc[cell.distance],
                acc_by_distance={str(d): a for d, a in acc.items()},
                tokens_by_distance={str(d): list(v) for d, v in tokens.items()},
                targets=s.eval_samples * cell.pairs, learned=bool(learned), curve=curve,
                iters_to_criterion={str(d): _first_reaching(curve, 2 + i, s.learned_threshold)
                                    for i, d in enumerate(distances)},
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
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_cell_job(settings: Dict[str, Any], cell: Tuple, threads: int = 1,
                 device: str = 'cpu') -> Dict[str, Any]:
    """Process-pool entry point: set the thread count, train the cell, add its provenance."""
    import torch

    from .store import provenance
    torch.set_num_threads(threads)
    rec = train_cell(ProbeSettings.from_dict(settings), Cell(*cell), device=device)
    rec['provenance'] = provenance(threads, device)
    return rec


def measure_cost(s: ProbeSettings, configs: Sequence[Tuple[str, int, int]], device: str = 'cpu',
                 batch: int = 16, repeat: int = 5,
                 flops: bool = True) -> Dict[Tuple[str, int, int], Dict[str, Any]]:
    """Parameters, FLOPs per image and forward latency per image of each (mixer, D, grid).

    Latency: inference (``eval``, no gradients) on ``batch`` images, the median of ``repeat``
    rounds in which every configuration of the same grid runs once, in turns
    (:func:`~mambaout_dense.analysis.measure.interleaved_median_seconds`), divided by ``batch``.

    Args:
        s (ProbeSettings): Settings (depth, patch, SSM sizes).
        configs (Sequence[tuple]): (mixer, D, grid) triples.
        device (str): Torch device. Defaults to 'cpu'.
        batch (int): Images per timed forward. Defaults to 16.
        repeat (int): Timed rounds. Defaults to 5.
        flops (bool): Count FLOPs (mmengine's analyzer; slow on big grids). Defaults to True.

    Returns:
        dict: (mixer, D, grid) -> ``params``, ``flops`` and ``flops_by_op`` (per image; None
        without ``flops``), ``latency_ms`` (per image).
    """
    import torch

    from ..measure import interleaved_median_seconds
    from ..probe import probe_complexity
    out: Dict[Tuple[str, int, int], Dict[str, Any]] = {}
    for grid in sorted({g for _, _, g in configs}):
        models, fns = {}, {}
        x = torch.randn(batch, 3, grid * s.patch, grid * s.patch, device=device)
        for mixer, dim, g in configs:
            if g != grid:
                continue
            torch.manual_seed(0)
            model = build_cell_model(s, mixer, dim).to(device).eval()
            models[(mixer, dim, g)] = model

            def fn(model=model):
                with torch.no_grad():
                    model(x)
            fns[f'{mixer}/{dim}'] = fn
        times = interleaved_median_seconds(fns, device, warmup=1, repeat=repeat)
        for (mixer, dim, g), model in models.items():
            res = probe_complexity(model.cpu(), g) if flops else None
            out[(mixer, dim, g)] = dict(
                params=sum(p.numel() for p in model.parameters()),
                flops=None if res is None else res['flops'],
                flops_by_op=None if res is None else res['flops_by_op'],
                latency_ms=1000 * times[f'{mixer}/{dim}'] / batch)
    return out
