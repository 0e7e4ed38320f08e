"""Crash and resume: a run SIGKILLed after its first checkpoint and restarted with ``--resume``
ends with the same weights and logs the same losses as an uninterrupted run (detection and
segmentation, deterministic CPU settings), and ``--resume auto`` never picks a torn checkpoint.

Each task trains 4 iterations (checkpoints at 2 and 4) through ``tools/train.py``: once
uninterrupted, once killed as soon as ``iter_2.pth`` is complete and then resumed. The detection
case also plants a torn ``iter_4.pth`` (half a file, named by ``last_checkpoint``, as a crash
during a non-atomic write leaves it) before resuming: the resume must skip it with a warning.
"""
import os
import os.path as osp

import pytest

from .helpers import (
    assert_same_weights,
    explain,
    kill_after_checkpoint,
    losses,
    make_ade,
    make_coco,
    read_scalars,
    run_tool,
    state_dict,
    tool_cmd,
    write_config,
)

pytestmark = pytest.mark.slow

OPTIONS = ['--cfg-options', 'train_cfg.max_iters=4', 'default_hooks.checkpoint.interval=2']


def _crash_and_resume(tmp_path, task: str, tear_newest: bool, record_property=None):
    make = make_coco if task == 'det' else make_ade
    root = make(str(tmp_path / 'data'))
    cfg = write_config(str(tmp_path), task, root)
    cwd = str(tmp_path)

    ref = str(tmp_path / 'uninterrupted')
    proc = run_tool('train.py', cfg, '--work-dir', ref, *OPTIONS, cwd=cwd)
    assert proc.returncode == 0, explain(proc)

    work = str(tmp_path / 'crashed')
    kill_after_checkpoint(tool_cmd('train.py', cfg, '--work-dir', work, *OPTIONS), work,
                          'iter_2.pth', cwd=cwd)
    assert not osp.exists(osp.join(work, 'iter_4.pth')), 'killed too late to test anything'
    first_run = read_scalars(work)
    if tear_newest:
        data = open(osp.join(ref, 'iter_4.pth'), 'rb').read()
        with open(osp.join(work, 'iter_4.pth'), 'wb') as f:
            f.write(data[:len(data) // 2])
        with open(osp.join(work, 'last_checkpoint'), 'w') as f:
            f.write(osp.join(work, 'iter_4.pth'))

    proc = run_tool('train.py', cfg, '--work-dir', work, '--resume', *OPTIONS, cwd=cwd)
    assert proc.returncode == 0, explain(proc)
    assert 'Advance dataloader 2 steps' in proc.output, explain(proc)
    if tear_newest:
        assert 'skipped 1 unusable checkpoint(s) (iter_4.pth:' in proc.output, explain(proc)
        assert 'truncated' in proc.output and 'resuming from' in proc.output, explain(proc)

    assert_same_weights(osp.join(ref, 'iter_4.pth'), osp.join(work, 'iter_4.pth'))
    if record_property is not None:  # for tools/analysis/reliability_report.py
        record_property('tensors', len(state_dict(osp.join(ref, 'iter_4.pth'))))
    expected, resumed = read_scalars(ref), read_scalars(work)
    assert sorted(expected) == [1, 2, 3, 4] and sorted(resumed) == [1, 2, 3, 4]
    for it in (1, 2):  # logged before the kill
        assert losses(first_run[it]) == losses(expected[it]), it
    for it in (3, 4):  # logged by the resumed run
        assert losses(resumed[it]) == losses(expected[it]), (it, resumed[it], expected[it])
    assert not [n for n in os.listdir(work) if n.endswith('.tmp')]


def test_detection_survives_sigkill_and_a_torn_checkpoint(tmp_path, record_property):
    _crash_and_resume(tmp_path, 'det', tear_newest=True, record_property=record_property)


def test_segmentation_survives_sigkill(tmp_path, record_property):
    _crash_and_resume(tmp_path, 'seg', tear_newest=False, record_property=record_property)
