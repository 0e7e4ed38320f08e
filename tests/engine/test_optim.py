"""MergedGroupsOptimWrapperConstructor: same options per parameter, far fewer groups."""
import copy

import torch
from mmengine.optim import build_optim_wrapper
from torch import nn

from mambaout_dense.engine import merge_param_groups
from mambaout_dense.models import MambaOut

CFG = dict(type='OptimWrapper',
           optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, foreach=True),
           paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'norm': dict(decay_mult=0.0)}))


def _build(model, merged):
    cfg = copy.deepcopy(CFG)
    if merged:
        cfg['constructor'] = 'mambaout_dense.MergedGroupsOptimWrapperConstructor'
    return build_optim_wrapper(model, cfg)


def _options_by_param(optimizer: torch.optim.Optimizer) -> dict:
    return {id(p): {k: v for k, v in g.items() if k != 'params'}
            for g in optimizer.param_groups for p in g['params']}


def test_same_options_fewer_groups_same_update():
    torch.manual_seed(0)
    model = MambaOut('test')
    default = _build(model, merged=False)
    merged = _build(model, merged=True)
    assert len(default.optimizer.param_groups) == len(list(model.parameters()))
    assert len(merged.optimizer.param_groups) <= 3
    assert _options_by_param(default.optimizer) == _options_by_param(merged.optimizer)
    # one step of each gives identical weights
    twin = MambaOut('test')
    twin.load_state_dict(model.state_dict())
    merged_twin = _build(twin, merged=True)
    x = torch.rand(2, 3, 64, 64)
    for m, w in ((model, default), (twin, merged_twin)):
        w.update_params(sum(o.mean() for o in m(x)))
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, msg=name)


def test_merge_param_groups_keeps_order_and_every_param():
    ps = [nn.Parameter(torch.zeros(1)) for _ in range(4)]
    groups = [dict(params=[ps[0]], lr=1), dict(params=[ps[1]], lr=2),
              dict(params=[ps[2]], lr=1), dict(params=[ps[3]], lr=2, weight_decay=0)]
    out = merge_param_groups(groups)
    assert [g['lr'] for g in out] == [1, 2, 2]
    assert out[0]['params'] == [ps[0], ps[2]] and out[2]['params'] == [ps[3]]
