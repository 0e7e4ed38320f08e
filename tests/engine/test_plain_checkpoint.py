"""mmengine resume with torch.load(weights_only=True): PlainCheckpointHook round trip."""
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mambaout_dense.engine import from_plain, to_plain


class _Toy(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.linear(inputs).squeeze(-1)
        if mode == 'loss':
            labels = torch.stack(labels) if isinstance(labels, list) else labels
            return dict(loss=((out - labels)**2).mean())
        return out


class _Data(Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(2, generator=g)
        return dict(inputs=x, labels=x.sum())


class _Crash(RuntimeError):
    pass


class _CrashAfter(Hook):
    """Simulates a crash right after the checkpoint of iteration ``at`` was written."""
    priority = 'LOWEST'

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            raise _Crash(f'stopped after iteration {self.at}')


def _runner(work_dir, max_iters, resume=False, crash_at=None):
    hooks = [dict(type='mambaout_dense.PlainCheckpointHook')]
    if crash_at:
        hooks.append(_CrashAfter(crash_at))
    return Runner(
        model=_Toy(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=_Data(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=4, num_workers=0, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        param_scheduler=dict(type='MultiStepLR', milestones=[4], gamma=0.1, by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=hooks,
        resume=resume,
        default_scope='mmengine',
        experiment_name=f'toy_{max_iters}_{resume}_{osp.basename(str(work_dir))}',
    )


def test_history_buffer_round_trip():
    buf = HistoryBuffer([1.0, 2.5], [1, 2], max_length=10)
    back = from_plain(to_plain({'b': buf}))['b']
    assert isinstance(back, HistoryBuffer) and back.max_length == 10
    assert back.mean() == buf.mean() and list(back.data[1]) == [1, 2]


def test_resume_with_weights_only(tmp_path):
    import pytest

    import mambaout_dense.engine  # noqa: F401
    runner = _runner(tmp_path, max_iters=6, crash_at=3)
    with pytest.raises(_Crash):
        runner.train()
    ckpt = tmp_path / 'iter_3.pth'
    # the file loads with weights_only=True: nothing but tensors and plain containers
    raw = torch.load(ckpt, weights_only=True)
    assert 'message_hub' in raw and raw['meta']['iter'] == 3
    resumed = _runner(tmp_path, max_iters=6, resume=True)
    resumed.train()
    assert resumed.iter == 6
    hub = MessageHub.get_current_instance()
    assert isinstance(hub.log_scalars['train/loss'], HistoryBuffer)
    # LR schedule continued: the milestone at iter 4 was applied once
    lr = resumed.optim_wrapper.get_lr()['lr'][0]
    assert abs(lr - 0.01) < 1e-9
