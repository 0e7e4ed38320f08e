"""Shared pieces of the reliability tests: tiny synthetic sets, derived configs, tool runs.

Training runs use the repository's synthetic configs through a derived config (written into the
test's tmp folder) that only shrinks them for a CPU: 128-pixel images, slim heads (the
MambaOut-Femto backbone is unchanged), no validation, ``num_workers=0`` and
``randomness=dict(seed=0, deterministic=True)``. Per-test knobs go through ``--cfg-options``.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import os.path as osp
import signal
import subprocess
import time
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence

import torch
from e2e.helpers import (  # noqa: F401  (re-exported; make_*: 8 + 4 images of 128 px)
    DET_CONFIG,
    REPO_ROOT,
    SEG_CONFIG,
    explain,
    make_ade,
    make_coco,
    tool,
    tool_cmd,
)
from e2e.helpers import TINY as SIZE
from e2e.helpers import run_tool as _run_tool
from e2e.helpers import tool_env as _tool_env
from mmengine.logging import MMLogger

from mambaout_dense.analysis.run_logs import scalar_records

FAULTS_DIR = osp.dirname(osp.abspath(__file__))  # holds reliability_faults.py


def load_tool(*parts: str):
    """Import ``tools/<parts>`` as a module (its ``main(argv)`` runs in this process)."""
    path = tool(*parts)
    name = 'tool_' + '_'.join(p.replace('.py', '') for p in parts)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_COMMON = """
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
train_cfg = dict(type='IterBasedTrainLoop', max_iters=4, val_interval=1000)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2, max_keep_ckpts=4))
randomness = dict(seed=0, deterministic=True)
custom_imports = dict(imports={imports!r} + ['reliability_faults'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='mambaout_dense.PlainCheckpointHook')] + {hooks}
"""

_DET = """_base_ = {base!r}
data_root = {root!r}
c = 32
model = dict(
    neck=dict(out_channels=c),
    rpn_head=dict(in_channels=c, feat_channels=c),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=c),
        bbox_head=dict(in_channels=c, fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=c),
        mask_head=dict(in_channels=c, conv_out_channels=16, num_convs=1)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100),
                   rcnn=dict(sampler=dict(num=32))))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
"""

_SEG = """_base_ = {base!r}
data_root = {root!r}
crop_size = ({size}, {size})
model = dict(data_preprocessor=dict(size=crop_size), decode_head=dict(channels=32),
             auxiliary_head=dict(channels=16))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=({size2}, {size}), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
"""


def task_imports(task: str) -> List[str]:
    """The ``custom_imports`` of the synthetic config of ``task`` ('det' or 'seg')."""
    from mambaout_dense.builder import load_config
    return list(load_config(DET_CONFIG if task == 'det' else SEG_CONFIG).custom_imports.imports)


def write_config(folder: str, task: str, data_root: str, hooks: Sequence[dict] = ()) -> str:
    """A derived config for ``task`` ('det' or 'seg') on ``data_root``; returns its path."""
    template = _DET if task == 'det' else _SEG
    text = template.format(base=DET_CONFIG if task == 'det' else SEG_CONFIG,
                           root=data_root.rstrip('/') + '/', size=SIZE, size2=2 * SIZE)
    text += _COMMON.format(hooks=repr(list(hooks)), imports=task_imports(task))
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f'{task}_tiny.py')
    with open(path, 'w') as f:
        f.write(text)
    return path


def tool_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The e2e tools' environment with reliability_faults importable (fault injection)."""
    path = os.pathsep.join([FAULTS_DIR] + [p for p in [os.environ.get('PYTHONPATH')] if p])
    return _tool_env(dict({'PYTHONPATH': path}, **(extra or {})))


def run_tool(script: str, *args: str, cwd: str, timeout: float = 600,
             env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Run ``tools/<script>`` to completion (fault injection importable); ``.output`` holds
    stdout + stderr."""
    return _run_tool(script, *args, cwd=cwd, timeout=timeout, env=tool_env(env))


def kill_after_checkpoint(cmd: List[str], work_dir: str, ckpt: str, cwd: str,
                          timeout: float = 600) -> str:
    """Start a training run, SIGKILL it as soon as ``work_dir/ckpt`` is complete.

    ``last_checkpoint`` is written right after the checkpoint file, so its content naming
    ``ckpt`` means the file is complete. Returns the run's output.
    """
    log_path = osp.join(cwd, f'killed_{osp.basename(work_dir)}.log')
    pointer = osp.join(work_dir, 'last_checkpoint')
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=tool_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if osp.isfile(pointer) and open(pointer).read().strip().endswith(ckpt):
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.05)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    with open(log_path) as f:
        output = f.read()
    assert proc.returncode == -signal.SIGKILL, (
        f'the run was not killed after {ckpt} (exit code {proc.returncode}):\n{output[-4000:]}')
    return output


def read_scalars(work_dir: str) -> Dict[int, dict]:
    """Training records of all runs in ``work_dir`` by iteration (a later run wins)."""
    return {rec['iter']: rec for rec in scalar_records(work_dir)
            if 'loss' in rec and 'iter' in rec}


def losses(record: dict) -> Dict[str, float]:
    return {k: v for k, v in record.items() if k.startswith('loss')}


def state_dict(path: str) -> Dict[str, torch.Tensor]:
    from mambaout_dense.checkpoint import safe_load
    return safe_load(path)['state_dict']


def assert_same_weights(path_a: str, path_b: str) -> None:
    a, b = state_dict(path_a), state_dict(path_b)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, (f'{len(differ)} of {len(a)} tensors differ between {path_a} and '
                        f'{path_b}, e.g. {differ[:3]}')


@contextmanager
def log_messages():
    """Collect what mmengine's print_log(logger='current') emits."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def usage_error(main, argv, capsys, *expected) -> str:
    """Run ``main(argv)``; argparse errors exit through SystemExit(2), ours return 2."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert 'Traceback' not in err
    for text in expected:
        assert text in err, err
    return err
