"""The dense long-range sweep: plan, resumable runs with progress and ETA, results, report.

Every finished cell is appended to ``WORK_DIR/{arm}_cells.jsonl``
(:class:`~mambaout_dense.analysis.longrange.store.ResultStore`); a rerun with the same settings
skips the cells already there. At the end ``WORK_DIR/{arm}_results.{json,md}`` are written from
every stored cell of these settings (and kept as ``{arm}_results_{settings key}.{json,md}``, so
sweeps of other settings in the same folder keep their reports), and, when asked, the report
section between the markers ``longrange-{arm}`` of a markdown file
(:func:`~mambaout_dense.analysis.tables.update_section`).
"""
import json
import math
import os.path as osp
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Dict, List, Optional, Sequence

from mmengine.logging import print_log

from ..longrange.store import ResultStore, provenance
from ..tables import update_section, write_json, write_text
from .erf import trained_erfs
from .plan import BASELINES, DenseCell, DenseSettings, length_table
from .reach import baseline_reach
from .report import (
    apply_gate,
    dense_gaps,
    dense_headline,
    dense_verdict,
    render_dense_markdown,
    summarise_dense,
)
from .runner import PRIMARY, ensure_data, run_cell

__all__ = ['run_sweep', 'make_record', 'build_results', 'fmt_time']


def fmt_time(seconds: float) -> str:
    """H:MM:SS, '?' when unknown."""
    if not math.isfinite(seconds):
        return '?'
    seconds = int(round(seconds))
    return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def _log(msg: str) -> None:
    print_log(f'[longrange-dense] {msg}', logger='current')


def make_record(cell: DenseCell, s: DenseSettings, run: Dict[str, Any], dim: int,
                threshold: float) -> Dict[str, Any]:
    """The stored record of a finished run: probe-compatible keys plus the dense scores.

    ``mixer``/``dim``/``grid``/``distance``/``pairs`` follow the probe's records (grid and
    distance in stride-4 tokens) so that the probe's statistics apply unchanged.
    """
    score = PRIMARY[cell.arm]['score']
    near, far = run['scores']['near'], run['scores']['far']
    patch = cell.size / s.scene_grid
    if cell.arm == 'upernet':  # every labelled target of the group is a trial
        trials = {g: int(round(2 * run['scores'][g].get('images', 0))) for g in ('near', 'far')}
    else:  # the targets found: the colour accuracy's denominator
        trials = {g: int(run['scores'][g].get('matched', 0)) for g in ('near', 'far')}
    crit = next((int(it) for it, n, _ in run['curve'] if n is not None and n >= threshold), None)
    return dict(
        cell=cell.key(), settings_key=s.key(), arm=cell.arm, backbone=cell.backbone,
        size=cell.size, far=cell.far, seed=cell.seed, mixer=cell.backbone, dim=dim,
        grid=cell.size // 4, distance=int(round(cell.far * patch / 4)), pairs=2,
        near_distance=s.near, far_px=cell.far * patch, near_px=s.near * patch,
        acc=far.get(score, math.nan), acc_control=near.get(score, math.nan),
        targets=trials['far'], targets_control=trials['near'], scores=run['scores'],
        curve=run['curve'], loss_curve=run['loss_curve'], iters_done=run['iters_done'],
        iters_to_criterion=crit, s_per_iter=run['s_per_iter'], wall_s=run['wall_s'],
        learned=bool(math.isfinite(near.get(score, math.nan))
                     and near.get(score) >= threshold),
        config=osp.basename(run['config']), cfg_options=run['cfg_options'],
        provenance=provenance())


def build_results(s: DenseSettings, records: List[Dict[str, Any]], planned: int,
                  lengths: List[Dict[str, Any]], cost: List[Dict[str, Any]], threshold: float,
                  min_recall: float, command: str,
                  sessions: Optional[List[Dict[str, Any]]] = None,
                  erf: Optional[List[Dict[str, Any]]] = None,
                  reach: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """The results JSON: gated records, summary, gaps, ERFs, the shortcut baseline's measured
    reach (rows of :func:`.reach.baseline_reach` with ``baseline``), verdict, headline,
    provenance."""
    gated = apply_gate(records, threshold, min_recall, s.val_interval)
    res = dict(settings=s.to_dict(), settings_key=s.key(), learned_threshold=threshold,
               min_recall=min_recall, command=command, cells_planned=planned,
               cells_done=len(gated), lengths=lengths, cost=cost, records=gated,
               summary=summarise_dense(gated), gaps=dense_gaps(gated), erf=erf or [],
               baseline_reach=reach or [], sessions=sessions or [], provenance=provenance())
    res['verdict'] = dense_verdict(res)
    res['headline'] = dense_headline(res)
    return res


def run_sweep(s: DenseSettings, cells: Sequence[DenseCell], work_dir: str,
              train_command: Sequence[str], config_dir: str, dims: Sequence[int],
              threshold: float = 0.9, min_recall: float = 0.5, threads: int = 1,
              jobs: int = 1, cost: Optional[List[Dict[str, Any]]] = None, command: str = '',
              results_md: Optional[str] = None, erf_images: int = 8) -> Dict[str, Any]:
    """Run the cells not yet stored, then write the results and the report.

    The shortcut baseline's cells (:data:`.plan.BASELINES`) run, are stored and are gated like
    the backbones'; when any is stored, its reach is measured at each of its sizes
    (:func:`.reach.baseline_reach`, a few seconds) and reported beside it, and it gets no
    trained-model ERF.

    Args:
        s (DenseSettings): The settings.
        cells (Sequence[DenseCell]): The plan.
        work_dir (str): Store, data, run folders and results.
        train_command (Sequence[str]): ``[python, .../tools/train.py]``.
        config_dir (str): Folder of the configs.
        dims (Sequence[int]): Stage widths (the sequence-length table).
        threshold (float): Near score a run needs to be learned. Defaults to 0.9.
        min_recall (float): Near recall a Mask R-CNN run also needs. Defaults to 0.5.
        threads (int): OpenMP threads per run. Defaults to 1.
        jobs (int): Runs at once (each its own process). Defaults to 1.
        cost (list, optional): Rows of :func:`.cost.measure_cost`. Defaults to none.
        command (str): The command line, for the report. Defaults to ''.
        results_md (str, optional): Markdown file whose section ``longrange-{arm}`` is
            rewritten. Defaults to None (none).
        erf_images (int): Images for the trained-model ERFs of each backbone's first scored
            run (:func:`.erf.trained_erfs`); 0 skips them. Defaults to 8.

    Returns:
        dict: The results of every stored run of these settings, this plan's and earlier
        commands' (also in ``WORK_DIR/{arm}_results.json``), plus ``failed`` (cells
        whose run ended without scores this session).
    """
    store = ResultStore(osp.join(work_dir, f'{s.arm}_cells.jsonl'))
    done = store.load(s.key())
    todo = [c for c in cells if c.key() not in done]
    _log(f'{s.arm}: {len(cells)} runs planned, {len(done)} stored in {store.path}, {len(todo)} '
         f'to run (settings {s.key()})')
    failed, spent, start = [], [], time.perf_counter()

    def one(cell: DenseCell) -> Dict[str, Any]:
        cell_dir = osp.join(work_dir, 'runs', s.key(), cell.key().replace('/', '_'))
        return run_cell(cell, s, roots[cell], cell_dir, train_command, config_dir, threads)

    roots = {c: ensure_data(work_dir, s, c.size, c.far) for c in todo}  # written once, up front
    # each run is its own tools/train.py process: threads here only wait on them
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo) or 1))) as pool:
        futures = {pool.submit(one, c): c for c in todo}
        for n, fut in enumerate(as_completed(futures), 1):
            cell, run = futures[fut], fut.result()
            spent.append(run['wall_s'])
            if 'scores' not in run:
                failed.append(cell.key())
                _log(f'[{n}/{len(todo)}] {cell.key()} FAILED (exit code {run["returncode"]}); '
                     f'see {run["log"]}')
                continue
            rec = make_record(cell, s, run, dims[0], threshold)
            store.append(rec)
            left = sum(spent) / len(spent) * (len(todo) - n) / max(1, jobs)
            _log(f'[{n}/{len(todo)}] {cell.key()}: near {rec["acc_control"]:.3f}, far '
                 f'{rec["acc"]:.3f}{"" if rec["learned"] else " (NOT LEARNED)"}, '
                 f'{rec["s_per_iter"]:.2f} s/iter, {run["wall_s"]:.0f} s | elapsed '
                 f'{fmt_time(time.perf_counter() - start)}, ETA {fmt_time(left)}')
    # the report holds every stored run of these settings: also those of earlier commands
    # (other backbones, sizes or seeds), so runs split over several commands add up
    stored = store.load(s.key())
    records = sorted(stored.values(), key=lambda r: (r['seed'], r['size'], r['far'],
                                                     r['backbone']))
    planned = len({c.key() for c in cells} | set(stored))
    sizes = sorted({c.size for c in cells} | {r['size'] for r in records})
    fars = {c.far for c in cells} | {r['far'] for r in records}
    lengths = length_table(sizes, s.scene_grid, sorted({s.near, *fars}), dims)
    path = osp.join(work_dir, f'{s.arm}_results.json')
    sessions = []
    if osp.isfile(path):
        with open(path) as f:
            prev = json.load(f)
        if prev.get('settings_key') == s.key():
            sessions = prev.get('sessions', [])
    if todo:
        sessions.append(dict(command=command, runs=len(todo) - len(failed),
                             wall_s=time.perf_counter() - start, provenance=provenance()))
    erf = []
    if erf_images > 0:
        gated = apply_gate(records, threshold, min_recall, s.val_interval)
        erf = trained_erfs(gated, s, work_dir, config_dir, erf_images)
        _log(f'trained-model ERFs of {len({(r["backbone"], r["size"]) for r in erf})} '
             f'backbone-size pairs in {osp.join(work_dir, "erf")}')
    reach = []  # the shortcut baseline's measured reach, beside the task's geometry
    for name in BASELINES:
        pairs = sorted({(r['size'], r['far']) for r in records if r['backbone'] == name})
        if pairs:
            config = osp.join(config_dir, DenseCell(s.arm, name, 0, 0, 0).config_name() + '.py')
            reach += [dict(row, baseline=name)
                      for row in baseline_reach(config, pairs, s.scene_grid, s.near)]
    res = build_results(s, records, planned, lengths, cost or [], threshold, min_recall,
                        command, sessions, erf, reach)
    md = render_dense_markdown(res)
    for stem in (f'{s.arm}_results', f'{s.arm}_results_{s.key()}'):  # latest, and per settings
        write_json(osp.join(work_dir, stem + '.json'), res)
        write_text(osp.join(work_dir, stem + '.md'), md)
    if results_md:
        header = (f'Generated by `tools/analysis/longrange_experiment.py --arm {s.arm}` from '
                  f'{len(records)} stored runs; do not edit.\n\n')
        update_section(results_md, f'longrange-{s.arm}', header + md)
    res['failed'] = failed
    return res
