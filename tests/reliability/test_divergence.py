"""Divergence: a NaN/Inf loss or gradient stops the run (or skips the step) with a message naming
the iteration and the loss term, and never becomes the latest checkpoint.

Fast tests drive mmengine's Runner in-process with a toy model; the slow one runs
``tools/train.py`` on the synthetic Mask R-CNN config with a NaN injected into ``loss_mask``.
"""
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mambaout_dense.engine  # noqa: F401  (registers the hooks)
from mambaout_dense.checkpoint import safe_load
from mambaout_dense.engine import DivergenceGuardHook
from mambaout_dense.errors import DivergenceError

from . import reliability_faults  # noqa: F401  (registers the fault-injection hooks)
from .helpers import explain, make_coco, run_tool, write_config


class _Toy(BaseModel):
    """Two loss terms; ``grad_bomb`` adds a term whose value is 0 but whose gradient is NaN."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        self.grad_bomb_at = None
        self.calls = 0

    def forward(self, inputs, labels=None, mode='tensor'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.linear(inputs).squeeze(-1)
        if mode != 'loss':
            return out
        self.calls += 1
        labels = torch.stack(labels) if isinstance(labels, list) else labels
        losses = dict(loss_fit=((out - labels)**2).mean(), loss_reg=1e-3 * out.abs().mean())
        if self.calls == self.grad_bomb_at:  # sqrt'(0) = inf, times 0 -> NaN gradients
            losses['loss_reg'] = losses['loss_reg'] + torch.sqrt((self.linear.weight * 0).sum())
        return losses


class _Data(Dataset):

    def __len__(self):
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(2, generator=g)
        return dict(inputs=x, labels=x.sum())


class _Weights(Hook):
    """Records a copy of the weights after every iteration."""

    def __init__(self):
        self.after = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.after[runner.iter + 1] = {k: v.clone() for k, v in runner.model.state_dict().items()}


def _runner(work_dir, action='stop', max_iters=5, poison=None, grad_bomb_at=None, hooks=(),
            max_skips=20):
    model = _Toy()
    model.grad_bomb_at = grad_bomb_at
    custom = [dict(type='mambaout_dense.PlainCheckpointHook'),
              dict(type='mambaout_dense.DivergenceGuardHook', action=action,
                   max_consecutive_skips=max_skips)]
    if poison:
        custom.append(dict(type='InjectNonFiniteHook', **poison))
    return Runner(
        model=model, work_dir=str(work_dir),
        train_dataloader=dict(dataset=_Data(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=4, num_workers=0, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=custom + list(hooks), default_scope='mmengine',
        experiment_name=f'div_{osp.basename(str(work_dir))}_{action}')


def _pointer(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return osp.basename(f.read().strip())


def _finite(state):
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_nan_loss_stops_with_iteration_and_term_and_no_nan_checkpoint(tmp_path):
    runner = _runner(tmp_path, poison=dict(at=3, term='loss_reg'))
    with pytest.raises(DivergenceError) as info:
        runner.train()
    msg = str(info.value)
    assert 'iteration 3' in msg and 'loss_reg=nan' in msg and 'loss_fit' not in msg, msg
    assert _pointer(tmp_path) == 'iter_2.pth'
    assert not (tmp_path / 'iter_3.pth').exists()
    assert _finite(safe_load(tmp_path / 'iter_2.pth')['state_dict'])
    assert _finite(runner.model.state_dict())  # the bad step was not applied


def test_inf_loss_is_caught_too(tmp_path):
    with pytest.raises(DivergenceError, match=r'iteration 2: non-finite loss term\(s\) '
                       r'loss_fit=inf'):
        _runner(tmp_path, poison=dict(at=2, term='loss_fit', value='inf')).train()


def test_nan_gradient_with_finite_loss_stops(tmp_path):
    runner = _runner(tmp_path, grad_bomb_at=2)
    with pytest.raises(DivergenceError, match='iteration 2: non-finite gradients'):
        runner.train()
    assert _pointer(tmp_path) == 'iter_1.pth'
    assert _finite(runner.model.state_dict())


def test_skip_mode_continues_and_leaves_the_bad_step_out(tmp_path):
    weights = _Weights()
    runner = _runner(tmp_path, action='skip', poison=dict(at=3, term='loss_fit'),
                     hooks=[weights])
    runner.train()
    assert runner.iter == 5
    guard = next(h for h in runner.hooks if isinstance(h, DivergenceGuardHook))
    assert guard.skipped == [3]
    # iteration 3 changed nothing; the others did
    for key in weights.after[3]:
        assert torch.equal(weights.after[3][key], weights.after[2][key]), key
    assert not torch.equal(weights.after[4]['linear.weight'], weights.after[3]['linear.weight'])
    assert _pointer(tmp_path) == 'iter_5.pth'
    assert _finite(safe_load(tmp_path / 'iter_5.pth')['state_dict'])
    assert runner.message_hub.get_info('divergence_skipped') == [3]


def test_skip_mode_gives_up_after_consecutive_bad_steps(tmp_path):
    runner = _runner(tmp_path, action='skip', max_iters=8, max_skips=3,
                     poison=dict(at=2, until=8, term='loss_fit'))
    with pytest.raises(DivergenceError, match='3 consecutive iterations up to 4'):
        runner.train()


def test_nan_weights_are_never_saved(tmp_path):
    """Even if NaN reaches the weights some other way, the checkpoint is refused."""

    class _Corrupt(Hook):
        priority = 'HIGHEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == 2:
                with torch.no_grad():
                    runner.model.linear.weight.fill_(float('nan'))

    runner = _runner(tmp_path, hooks=[_Corrupt()])
    with pytest.raises(DivergenceError, match="Refusing to save a checkpoint at iteration 2: "
                       "weight 'linear.weight' holds NaN"):
        runner.train()
    assert _pointer(tmp_path) == 'iter_1.pth'
    assert not (tmp_path / 'iter_2.pth').exists()


def test_invalid_action_is_rejected():
    with pytest.raises(ValueError, match="'stop' or 'skip'"):
        DivergenceGuardHook(action='ignore')


@pytest.mark.slow
def test_train_tool_stops_on_nan_loss_mask(tmp_path):
    """tools/train.py on Mask R-CNN: NaN in loss_mask at iteration 2 -> exit 1, message, and
    last_checkpoint names iter_1.pth."""
    root = make_coco(str(tmp_path / 'coco'))
    cfg = write_config(str(tmp_path), 'det', root,
                       hooks=[dict(type='InjectNonFiniteHook', at=2, term='loss_mask')])
    work = tmp_path / 'work'
    proc = run_tool('train.py', cfg, '--work-dir', work, '--cfg-options',
                    'train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=1',
                    cwd=str(tmp_path))
    assert proc.returncode == 1, explain(proc)
    assert 'Training diverged at iteration 2' in proc.stderr, explain(proc)
    assert 'loss_mask=nan' in proc.stderr and 'Traceback' not in proc.stderr, explain(proc)
    assert _pointer(work) == 'iter_1.pth'
    assert not (work / 'iter_2.pth').exists()
    assert _finite(safe_load(work / 'iter_1.pth')['state_dict'])
