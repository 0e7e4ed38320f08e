"""The dense-backbone contract, pinned once for MambaOut, VMamba (v2 and v0) and the hybrid.

Shapes and strides of every output, ``out_indices`` and its metadata, ``forward_stages`` (the
stage outputs before their norms), ``frozen_stages`` with re-freezing in ``train()``,
``norm_eval``, ``with_cp``, linear drop-path rates, ``get_layer_depth``, registry builds from
mmdet's and mmseg's scopes, and strict loading of pretrained weights.
"""
import re
from typing import Any, Callable, NamedTuple, Tuple

import pytest
import torch

from mambaout_dense.errors import CheckpointError
from mambaout_dense.models import HybridBackbone, MambaOut, VMamba

V0_TEST = dict(depths=(1, 1, 1, 1), dims=(16, 32, 48, 64), d_state=4, ssm_ratio=2.0,
               mlp_ratio=0.0, version='v0')
GATED_FROZEN_AT_2 = ('downsample_layers.0.', 'downsample_layers.1.', 'stages.0.', 'stages.1.',
                     'norm0.', 'norm1.')
VMAMBA_FROZEN_AT_2 = ('patch_embed.', 'layers.0.', 'layers.1.', 'norm0.', 'norm1.')


class Case(NamedTuple):
    name: str
    cls: type
    arch: Any
    dims: Tuple[int, ...]
    frozen_at_2: Tuple[str, ...]  # parameter prefixes frozen by frozen_stages=2
    stem_prefix: str
    block_param: Callable[[int, int], str]  # (stage, block) -> a parameter of that block
    floor_stem: bool = False  # v0's 4x4 patchify floors odd sizes; later stages pad (ceil)

    def build(self, **kwargs: Any) -> torch.nn.Module:
        return self.cls(self.arch, **kwargs)


CASES = [
    Case('mambaout', MambaOut, 'test', (16, 24, 32, 48), GATED_FROZEN_AT_2,
         'downsample_layers.0.', lambda s, b: f'stages.{s}.{b}.fc1.weight'),
    Case('vmamba', VMamba, 'test', (16, 32, 48, 64), VMAMBA_FROZEN_AT_2, 'patch_embed.',
         lambda s, b: f'layers.{s}.blocks.{b}.op.in_proj.weight'),
    Case('vmamba_v0', VMamba, V0_TEST, (16, 32, 48, 64), VMAMBA_FROZEN_AT_2, 'patch_embed.',
         lambda s, b: f'layers.{s}.blocks.{b}.op.in_proj.weight', floor_stem=True),
    Case('hybrid', HybridBackbone, 'test', (16, 24, 32, 48), GATED_FROZEN_AT_2,
         'downsample_layers.0.', lambda s, b: f'stages.{s}.{b}.norm.weight'),
]
IDS = [c.name for c in CASES]


@pytest.fixture(params=CASES, ids=IDS)
def case(request) -> Case:
    return request.param


@pytest.mark.parametrize('hw', [(64, 64), (65, 97), (33, 47)])
def test_outputs_shapes_strides_and_metadata(case, hw):
    model = case.build().eval()
    h, w = hw
    with torch.no_grad():
        outs = model(torch.rand(2, 3, h, w))
    gh, gw = (h // 4, w // 4) if case.floor_stem else (-(-h // 4), -(-w // 4))
    grids = [(gh, gw)]
    for _ in range(3):
        grids.append((-(-grids[-1][0] // 2), -(-grids[-1][1] // 2)))
    assert [tuple(o.shape) for o in outs] == [(2, c, *g) for c, g in zip(case.dims, grids)]
    assert all(o.is_contiguous() for o in outs)
    assert model.out_channels == list(case.dims) and model.out_strides == [4, 8, 16, 32]
    assert {k: (v.channels, v.stride) for k, v in model.output_shape().items()} == {
        f'stage{i}': (c, s) for i, (c, s) in enumerate(zip(case.dims, (4, 8, 16, 32)))}


def test_out_indices_subset_builds_only_their_norms(case):
    model = case.build(out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, case.dims[1], 8, 8), (1, case.dims[3], 2, 2)]
    assert model.out_channels == [case.dims[1], case.dims[3]] and model.out_strides == [8, 32]
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3') and not hasattr(model, 'norm0')
    assert case.build(out_indices=(-1, )).out_indices == (3, )
    with pytest.raises(ValueError, match='out_indices'):
        case.build(out_indices=(4, ))
    with pytest.raises(ValueError, match='duplicates'):
        case.build(out_indices=(1, 1))


def test_forward_stages_are_the_outputs_before_their_norms(case):
    model = case.build().eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        stages = model.forward_stages(x)
        outs = model(x)
    assert [tuple(s.shape) for s in stages] == [tuple(o.shape) for o in outs]
    for i, (stage, out) in enumerate(zip(stages, outs)):
        norm = getattr(model, f'norm{i}')
        normed = norm(stage.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # LN over channels
        torch.testing.assert_close(normed, out)


def test_frozen_stages_stay_frozen_after_train(case):
    model = case.build(frozen_stages=2, drop_path_rate=0.1)
    model.init_weights()
    model.train()  # must re-freeze
    frozen_modules = list(model._frozen_modules())
    assert frozen_modules and not any(m.training for m in frozen_modules)
    sum(o.sum() for o in model(torch.rand(1, 3, 64, 64))).backward()
    for name, p in model.named_parameters():
        frozen = name.startswith(case.frozen_at_2)
        assert p.requires_grad != frozen, name
        assert (p.grad is None) == frozen, name
    model.eval().train()
    assert not any(m.training for m in frozen_modules)
    with pytest.raises(ValueError, match='frozen_stages'):
        case.build(frozen_stages=5)


def test_norm_eval_keeps_batchnorm_in_eval(case):
    model = case.build(norm_eval=True)
    model.extra_bn = torch.nn.BatchNorm2d(4)  # these backbones use LN; the rule still applies
    model.train()
    assert not model.extra_bn.training
    assert any(m.training for m in model.modules() if m is not model.extra_bn)
    plain = case.build()
    plain.extra_bn = torch.nn.BatchNorm2d(4)
    plain.train()
    assert plain.extra_bn.training


def test_with_cp_gives_the_same_gradients(case):
    torch.manual_seed(0)
    a = case.build()
    b = case.build(with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 64, 64)
    for m in (a, b):
        m.train()
        sum(o.square().mean() for o in m(x)).backward()
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_drop_path_rates_increase_linearly_over_all_blocks(case):
    model = case.build(drop_path_rate=0.4)
    rates = [getattr(m.drop_path, 'drop_prob', 0.0) for m in model.modules()
             if hasattr(m, 'drop_path') and isinstance(m.drop_path, torch.nn.Module)]
    assert len(rates) == sum(model.depths)
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.4) and rates == sorted(rates)


def test_get_layer_depth_follows_mmpretrain_convention(case):
    model = case.build()
    num_layers = sum(model.depths) + 2
    names = [n for n, _ in model.named_parameters()]
    depth = {n: model.get_layer_depth(f'backbone.{n}', 'backbone.') for n in names}
    assert all(nl == num_layers for _, nl in depth.values())
    assert all(depth[n][0] == 0 for n in names if n.startswith(case.stem_prefix))
    assert all(depth[n][0] == num_layers - 1 for n in names if re.match(r'norm\d\.', n))
    # every block its own depth, in order across stages
    blocks = [(s, b) for s in range(4) for b in range(model.depths[s])]
    assert [depth[case.block_param(s, b)][0] for s, b in blocks] == list(
        range(1, len(blocks) + 1))
    assert set(d for d, _ in depth.values()) == set(range(num_layers))
    # outside the backbone: the last depth
    assert model.get_layer_depth('neck.lateral_convs.0.conv.weight', 'backbone.') == (
        num_layers - 1, num_layers)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_task_registries_build_the_scoped_backbone(case, scope):
    import importlib
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    built = registry.build(dict(type=f'mambaout_dense.{case.cls.__name__}', arch=case.arch))
    assert type(built) is case.cls


def test_strict_loading_of_own_weights_and_its_errors(case, tmp_path):
    src = case.build()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.5)
    path = tmp_path / 'own.pth'
    torch.save(src.state_dict(), path)
    dst = case.build(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dst.init_weights()
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v, msg=k)

    def load(state, **extra):
        torch.save(state, path)
        case.build(init_cfg=dict(type='Pretrained', checkpoint=str(path), **extra)).init_weights()

    missing = dict(src.state_dict())
    del missing[case.block_param(2, 0)]
    with pytest.raises(CheckpointError,
                       match=r'1 missing key.*' + re.escape(case.block_param(2, 0))):
        load(missing)
    extra = dict(src.state_dict(), **{'stages_extra.weight': torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r'unexpected key.*stages_extra'):
        load(extra)
    wrong = dict(src.state_dict())
    key = case.block_param(1, 0)
    wrong[key] = torch.zeros(*wrong[key].shape[:-1], wrong[key].shape[-1] + 1)
    with pytest.raises(CheckpointError, match=r'shape mismatch for ' + re.escape(repr(key))):
        load(wrong)
    # a whole detector checkpoint: named, with the prefix to use
    detector = {'state_dict': {f'backbone.{k}': v for k, v in src.state_dict().items()}}
    with pytest.raises(CheckpointError,
                       match=r"detector/segmentor checkpoint.*prefix='backbone\.'"):
        load(detector)
    load(detector, prefix='backbone.')  # and with the prefix it loads
    with pytest.raises(CheckpointError, match='not found'):
        case.build(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'nope.pth'))
                   ).init_weights()
    with pytest.raises(ValueError, match='Unknown Pretrained init_cfg keys'):
        load(src.state_dict(), strcit=True)


def test_unknown_arch_lists_the_valid_names(case):
    with pytest.raises(ValueError, match='valid names: .*test'):
        case.cls('tinny')
    with pytest.raises(ValueError, match='misses keys'):
        case.cls(dict(depths=(1, 1, 1, 1)))
    with pytest.raises(ValueError, match='unknown keys'):
        case.cls(dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), width=3))
    with pytest.raises(TypeError):
        case.cls('test', drop_path_rte=0.1)  # a typo must not be swallowed
