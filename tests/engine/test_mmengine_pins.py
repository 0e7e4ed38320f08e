"""Pins on the private parts of mmengine 0.10.7 that the engine hooks rely on.

There is no public extension point for these; when mmengine changes them, these tests fail
loudly instead of the hooks misbehaving silently.

- :class:`~mambaout_dense.engine.pruning.SafeCheckpointHook` overrides
  ``CheckpointHook._save_checkpoint_with_step(runner, step, meta)`` and its use of
  ``max_keep_ckpts`` / ``keep_ckpt_ids``.
- :class:`~mambaout_dense.engine.divergence.DivergenceGuardHook` replaces
  ``OptimWrapper.update_params(loss, step_kwargs, zero_kwargs)`` and advances
  ``OptimWrapper._inner_count`` for a skipped step.
- :class:`~mambaout_dense.engine.plain_checkpoint.PlainCheckpointHook` reads and writes
  ``HistoryBuffer._log_history`` / ``_count_history``.
"""
import inspect

import mmengine
import torch
from mmengine.hooks import CheckpointHook
from mmengine.logging import HistoryBuffer
from mmengine.optim import OptimWrapper


def test_mmengine_version_is_the_pinned_one():
    assert mmengine.__version__ == '0.10.7'


def test_checkpoint_hook_private_save_method_is_what_safe_hook_overrides():
    params = list(inspect.signature(CheckpointHook._save_checkpoint_with_step).parameters)
    assert params == ['self', 'runner', 'step', 'meta']
    source = inspect.getsource(CheckpointHook._save_checkpoint_with_step)
    # the parent prunes before it saves, through these attributes
    assert 'max_keep_ckpts' in source and 'keep_ckpt_ids' in source
    assert source.index('keep_ckpt_ids') < source.index('save_checkpoint(')


def test_optim_wrapper_update_params_and_inner_count():
    params = list(inspect.signature(OptimWrapper.update_params).parameters)
    assert params[:4] == ['self', 'loss', 'step_kwargs', 'zero_kwargs']
    wrapper = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    assert wrapper._inner_count == 0
    loss = (wrapper.optimizer.param_groups[0]['params'][0] * 2).sum()
    wrapper.update_params(loss)
    assert wrapper._inner_count == 1  # backward() counts micro-batches here


def test_history_buffer_private_arrays():
    buf = HistoryBuffer()
    buf.update(1.5, 2)
    assert list(buf._log_history) == [1.5] and list(buf._count_history) == [2]
