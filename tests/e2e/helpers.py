"""Shared pieces of the end-to-end tests: tiny synthetic sets, config overrides, tool runs.

The tools are run as subprocesses from a working directory outside the repository, so the tests
also prove that ``tools/*.py CONFIG`` works from anywhere (paths in the overrides are absolute).
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import socket
import subprocess
import sys
from typing import Iterable, Sequence

from mambaout_dense.analysis.run_logs import scalar_records

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET_CONFIG = osp.join(REPO_ROOT, 'configs', 'mask_rcnn_mambaout_femto_synthetic.py')
SEG_CONFIG = osp.join(REPO_ROOT, 'configs', 'upernet_mambaout_femto_synthetic.py')
TINY = 128  # image side of the tiny sets; the pipelines below keep it (no upscaling)


def tool(*parts: str) -> str:
    """Absolute path of a file under ``tools/``."""
    return osp.join(REPO_ROOT, 'tools', *parts)


def tool_env(extra: dict | None = None) -> dict:
    """Environment of a tool run: this one, 2 OpenMP threads unless set, warnings off."""
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '2')
    env['PYTHONWARNINGS'] = 'ignore'
    env.update(extra or {})
    return env


def tool_cmd(script: str, *args: str) -> list[str]:
    """Command line of ``tools/<script>`` (a ``.py`` with this interpreter, a ``.sh`` with bash)."""
    path = tool(script)
    head = ['bash', path] if script.endswith('.sh') else [sys.executable, path]
    return head + [str(a) for a in args]


def run_tool(script: str, *args: str, cwd: str, timeout: float = 600,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``tools/<script>`` to completion in ``cwd``.

    Returns:
        subprocess.CompletedProcess: With ``stdout``/``stderr`` as text and ``output`` (both).
    """
    proc = subprocess.run(tool_cmd(script, *args), cwd=cwd, env=tool_env(env), text=True,
                          capture_output=True, timeout=timeout)
    proc.output = proc.stdout + proc.stderr
    return proc


def explain(proc: subprocess.CompletedProcess, tail: int = 6000) -> str:
    """The end of a run's output, for assertion messages."""
    return f'exit code {proc.returncode}; output tail:\n{proc.output[-tail:]}'


def free_port() -> int:
    """A TCP port nobody listens on right now (for torchrun's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def make_coco(root: str, train: int = 8, val: int = 4, size: int = TINY, seed: int = 0,
              **kwargs) -> str:
    """Write a tiny synthetic COCO-format set into ``root``; returns ``root``."""
    from mambaout_dense.datasets import generate_coco
    generate_coco(root, train, val, size, seed, **kwargs)
    return root


def make_ade(root: str, train: int = 8, val: int = 4, size: int = TINY, seed: int = 0) -> str:
    """Write a tiny synthetic ADE20K-format set into ``root``; returns ``root``."""
    from mambaout_dense.datasets import generate_ade
    generate_ade(root, train, val, size, seed)
    return root


def _loaders_cpu(batch_size: int) -> list[str]:
    opts = [f'train_dataloader.batch_size={batch_size}']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    return opts


def det_options(data_root: str, max_iters: int = 4, val_interval: int | None = None,
                ckpt_interval: int = 2, batch_size: int = 2) -> list[str]:
    """``--cfg-options`` that point the synthetic Mask R-CNN config at a tiny set.

    Images stay at their 128 px (the config would resize them to 256); logging every iteration
    puts the per-iteration lr into ``vis_data/scalars.json``.
    """
    ann = osp.join(data_root, 'annotations', 'instances_val2017.json')
    opts = [f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    opts += [f'train_cfg.max_iters={max_iters}',
             f'train_cfg.val_interval={val_interval or max_iters}',
             f'default_hooks.checkpoint.interval={ckpt_interval}',
             'default_hooks.logger.interval=1']
    # pipeline index 2 (train) and 1 (test) is the Resize step
    opts += [f'train_dataloader.dataset.pipeline.2.scale=({TINY},{TINY})']
    for loader in ('val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.pipeline.1.scale=({TINY},{TINY})']
    return opts + _loaders_cpu(batch_size)


def seg_options(data_root: str, max_iters: int = 4, val_interval: int | None = None,
                ckpt_interval: int = 2, batch_size: int = 2) -> list[str]:
    """``--cfg-options`` that point the synthetic UperNet config at a tiny set (128 px crops)."""
    opts = [f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    opts += [f'train_cfg.max_iters={max_iters}',
             f'train_cfg.val_interval={val_interval or max_iters}',
             f'default_hooks.checkpoint.interval={ckpt_interval}',
             'default_hooks.logger.interval=1',
             f'model.data_preprocessor.size=({TINY},{TINY})',
             # train pipeline index 2 is the crop (the images are generated at the model's size)
             f'train_dataloader.dataset.pipeline.2.crop_size=({TINY},{TINY})']
    for loader in ('val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.pipeline.1.scale=({2 * TINY},{TINY})']
    return opts + _loaders_cpu(batch_size)


def cfg_args(options: Sequence[str]) -> list[str]:
    return ['--cfg-options', *options]


def read_scalars(work_dir: str) -> list[dict]:
    """All records of every ``<timestamp>/vis_data/scalars.json`` under ``work_dir``, in order."""
    return scalar_records(work_dir)


def train_lr(records: Iterable[dict]) -> dict[int, float]:
    """Iteration -> lr of the training records (those that carry ``iter``)."""
    return {r['iter']: r['lr'] for r in records if 'iter' in r and 'lr' in r}


def pngs(folder: str) -> list[str]:
    return sorted(glob.glob(osp.join(folder, '**', '*.png'), recursive=True))
