"""Running one cell of the dense long-range arms through ``tools/train.py``, and reading it back.

Each cell is a fresh ``tools/train.py`` process (the command a user runs) on a set written by
:func:`~mambaout_dense.datasets.synthetic.longrange_dense.write_longrange_dense`, with the
schedule, data root and seed passed as ``--cfg-options``. Its record is read from the run's
scalar log: the validation scores per group (near = the local control, far = the cue), the
learning curve of both, the training loss, the seconds per iteration and the provenance.
"""
import math
import os
import os.path as osp
import shutil
import subprocess
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..run_logs import scalar_records
from .plan import DenseCell, DenseSettings

__all__ = ['PRIMARY', 'data_root', 'ensure_data', 'train_options', 'run_cell', 'read_record']

#: Per arm: metric prefix and the per-group score a run is judged on (chance 0.5).
PRIMARY: Dict[str, Dict[str, str]] = {
    'upernet': dict(prefix='lr', score='acc'),        # labelled-pixel accuracy
    'maskrcnn': dict(prefix='coco', score='colour_acc'),  # class of the found targets
}


def data_root(work_dir: str, s: DenseSettings, size: int, far: int) -> str:
    """The set of one (size, far distance) under ``work_dir/data``."""
    name = (f's{size}_g{s.scene_grid}_near{s.near}_far{far}_n{s.num_train}_{s.num_val}_'
            f'{s.background}')
    return osp.join(work_dir, 'data', name)


def ensure_data(work_dir: str, s: DenseSettings, size: int, far: int) -> str:
    """Write the set unless a finished one is there (its meta file is written last)."""
    from ...datasets.synthetic.longrange_dense import write_longrange_dense
    root = data_root(work_dir, s, size, far)
    if not osp.isfile(osp.join(root, 'longrange_meta.json')):
        write_longrange_dense(root, {'near': s.near, 'far': far}, s.num_train, s.num_val,
                              s.scene_grid, size, seed=0, background=s.background,
                              overwrite=True)
    return root


def train_options(s: DenseSettings, cell: DenseCell, root: str) -> List[str]:
    """The ``--cfg-options`` of a cell: schedule, curve, data root, batch, lr, seed."""
    iters = s.iters
    warm = max(1, int(round(0.1 * iters)))
    opts = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={s.val_interval}',
            f'param_scheduler.0.end={warm}', f'param_scheduler.1.begin={warm}',
            f'param_scheduler.1.end={max(iters, warm + 1)}',
            f'param_scheduler.1.T_max={max(1, iters - warm)}',
            f'default_hooks.checkpoint.interval={iters}',
            f'default_hooks.logger.interval={max(1, min(10, iters // 5))}',
            f'train_dataloader.batch_size={s.batch}', f'optim_wrapper.optimizer.lr={s.lr}',
            f'randomness.seed={cell.seed}']
    for split in ('train', 'val', 'test'):
        opts.append(f'{split}_dataloader.dataset.data_root={root}/')
    if cell.arm == 'upernet':
        opts.append(f'model.data_preprocessor.size=({cell.size},{cell.size})')
    else:
        ann = osp.join(root, 'annotations', 'instances_validation.json')
        opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    return opts


def _group_scores(rec: Dict[str, Any], prefix: str) -> Dict[str, Dict[str, float]]:
    out: Dict[str, Dict[str, float]] = {}
    for k, v in rec.items():
        if not k.startswith(prefix + '/'):
            continue
        group, _, name = k[len(prefix) + 1:].partition('_')
        if group in ('near', 'far'):
            out.setdefault(group, {})[name] = float(v) if v is not None else math.nan
    return out


def read_record(cell_dir: str, arm: str) -> Optional[Dict[str, Any]]:
    """Final scores, learning curve, loss curve and s/iter of a finished run (None: no scores).

    A validation record's iteration is its ``step`` when that is an iteration, else the one of
    the training record before it (mmdet's logger may label it by epoch).
    """
    prefix, score = PRIMARY[arm]['prefix'], PRIMARY[arm]['score']
    curve, losses, times, last_iter, final = [], [], [], 0, None
    for r in scalar_records(cell_dir, newest_only=True):
        if 'loss' in r and 'iter' in r:
            last_iter = int(r['iter'])
            losses.append([last_iter, float(r['loss'])])
            times.append(float(r['time']))
            continue
        groups = _group_scores(r, prefix)
        if 'near' in groups and 'far' in groups:
            final = groups
            # the validation step when it is an iteration (not an epoch number)
            step = int(r['step']) if int(r.get('step', -1)) >= last_iter else last_iter
            curve.append([step, groups['near'].get(score, math.nan),
                          groups['far'].get(score, math.nan)])
    if final is None:
        return None
    # the first logged iterations carry the start-up; the median of the rest is the pace
    pace = float(np.median(times[1:] if len(times) > 1 else times)) if times else math.nan
    return dict(scores=final, curve=curve, loss_curve=losses, s_per_iter=pace,
                iters_done=last_iter)


def run_cell(cell: DenseCell, s: DenseSettings, root: str, cell_dir: str,
             train_command: Sequence[str], config_dir: str, threads: int = 1,
             extra_options: Sequence[str] = ()) -> Dict[str, Any]:
    """Train one cell in a fresh ``tools/train.py`` process; returns its record.

    Args:
        cell (DenseCell): The cell.
        s (DenseSettings): The settings.
        root (str): Its data root (:func:`ensure_data`).
        cell_dir (str): Its work dir (emptied first: a killed run restarts).
        train_command (Sequence[str]): ``[python, .../tools/train.py]``.
        config_dir (str): Folder of the ``configs/*.py``.
        threads (int): OpenMP threads of the run. Defaults to 1.
        extra_options (Sequence[str]): More ``--cfg-options``. Defaults to none.

    Returns:
        dict: ``returncode``, ``wall_s``, ``log`` and, when it finished with scores, the fields
        of :func:`read_record`.
    """
    if osp.isdir(cell_dir):
        shutil.rmtree(cell_dir)
    os.makedirs(cell_dir)
    config = osp.join(config_dir, cell.config_name() + '.py')
    cmd = [*train_command, config, '--work-dir', cell_dir, '--cfg-options',
           *train_options(s, cell, root), *extra_options]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONWARNINGS='ignore')
    log = osp.join(cell_dir, 'train_stdout.log')
    t0 = time.perf_counter()
    with open(log, 'w') as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - t0
    out: Dict[str, Any] = dict(returncode=rc, wall_s=wall, log=log, config=config,
                               cfg_options=list(train_options(s, cell, root)) + list(extra_options))
    rec = read_record(cell_dir, cell.arm) if rc == 0 else None
    if rec is not None:
        out.update(rec)
    return out
