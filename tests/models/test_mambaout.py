"""MambaOut backbone: equivalence with timm, parameter counts, the dense contract, loading."""
import pytest
import torch

from mambaout_dense.checkpoint import CheckpointError
from mambaout_dense.checkpoint.mambaout import convert_mambaout, timm_to_official
from mambaout_dense.models import MambaOut
from mambaout_dense.registry import MODELS

timm = pytest.importorskip('timm')  # installed by tools/install.sh; fails loudly below if absent

VARIANTS = ['femto', 'kobe', 'tiny', 'small', 'base']
# Backbone parameters without classification head and final norm (REFERENCE.md section 2).
PARAMS_M = {'femto': 5.82, 'kobe': 7.65, 'tiny': 22.90, 'small': 44.85, 'base': 79.37}


def _backbone_params(model: MambaOut) -> int:
    return sum(p.numel() for k, p in model.named_parameters() if not k.startswith('norm'))


def _timm_stage_outputs(tm, x):
    return tm.forward_intermediates(x, indices=4, intermediates_only=True, output_fmt='NCHW')


@pytest.mark.parametrize('arch', VARIANTS)
def test_param_count_matches_paper(arch):
    model = MambaOut(arch)
    assert _backbone_params(model) / 1e6 == pytest.approx(PARAMS_M[arch], abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize('arch', VARIANTS)
@pytest.mark.parametrize('layout', ['timm', 'official'])
def test_equivalent_to_timm(arch, layout, tmp_path):
    """Stage outputs (before our output norms) equal timm's forward_intermediates."""
    torch.manual_seed(0)
    tm = timm.create_model(f'mambaout_{arch}', pretrained=False).eval()
    sd = tm.state_dict()
    if layout == 'official':
        sd = timm_to_official(sd)
        # the official head is named differently; it is dropped either way
        sd = {k: v for k, v in sd.items() if not k.startswith('head.')}
        sd['head.fc1.weight'] = torch.zeros(4, 4)
        sd['norm.weight'] = torch.ones(8)
    path = tmp_path / 'ckpt.pth'
    torch.save(sd, path)
    ours = MambaOut(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    ours.init_weights()
    ours.eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ref = _timm_stage_outputs(tm, x)
        got = [f.permute(0, 3, 1, 2) for f in ours.forward_stages(x)]
    for r, g in zip(ref, got):
        assert g.shape == r.shape
        rel = (g - r).abs().max() / r.abs().max()
        assert rel <= 1e-5


def test_timm_equivalence_fast_on_femto():
    """A quick always-on version of the equivalence check (femto, one small input)."""
    tm = timm.create_model('mambaout_femto', pretrained=False).eval()
    ours = MambaOut('femto').eval()
    sd, ignored = convert_mambaout(tm.state_dict())
    missing, unexpected = ours.load_state_dict(sd, strict=False)
    assert unexpected == [] and all(k.startswith('norm') for k in missing)
    assert ignored and all(k.startswith('head.') for k in ignored)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        ref = _timm_stage_outputs(tm, x)
        got = [f.permute(0, 3, 1, 2) for f in ours.forward_stages(x)]
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5 * r.abs().max().item())


def test_registry_build_and_outputs():
    model = MODELS.build(
        dict(type='mambaout_dense.MambaOut', arch='test', out_indices=(1, 3))).eval()
    outs = model(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 24, 8, 8), (2, 48, 2, 2)]
    assert model.out_channels == [24, 48] and model.out_strides == [8, 32]
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3') and not hasattr(model, 'norm0')


def test_mmdet_and_mmseg_registries_find_the_scoped_backbone():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for registry in (DET_MODELS, SEG_MODELS):
        model = registry.build(dict(type='mambaout_dense.MambaOut', arch='test'))
        assert isinstance(model, MambaOut)


@pytest.mark.parametrize('hw', [(511, 511), (112, 137), (33, 65)])
def test_odd_input_sizes(hw):
    model = MambaOut('test').eval()
    h, w = hw
    outs = model(torch.rand(1, 3, h, w))
    for out, stride in zip(outs, (4, 8, 16, 32)):
        assert out.shape[-2:] == (-(-h // stride), -(-w // stride))


def test_arch_errors():
    with pytest.raises(ValueError, match='valid names: .*femto'):
        MambaOut('tinny')
    with pytest.raises(ValueError, match='misses keys'):
        MambaOut(dict(depths=(1, 1, 1, 1)))
    with pytest.raises(ValueError, match='unknown keys'):
        MambaOut(dict(depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), width=3))
    with pytest.raises(ValueError, match='out_indices'):
        MambaOut('test', out_indices=(4, ))
    with pytest.raises(TypeError):
        MambaOut('test', drop_path_rte=0.1)  # a typo must not be swallowed
    custom = MambaOut(dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), kernel_size=5))
    assert custom.stages[0][0].conv.kernel_size == (5, 5)


def test_frozen_stages_get_no_grad_and_stay_eval():
    model = MambaOut('test', frozen_stages=2, drop_path_rate=0.1)
    model.init_weights()
    model.train()
    assert not model.downsample_layers[0].training
    assert not model.stages[1].training and model.stages[2].training
    out = model(torch.rand(1, 3, 64, 64))
    sum(o.sum() for o in out).backward()
    for name, p in model.named_parameters():
        frozen = name.startswith(('downsample_layers.0.', 'stages.0.', 'stages.1.',
                                  'downsample_layers.1.', 'norm0.', 'norm1.'))
        assert (p.grad is None) == frozen, name
        assert p.requires_grad != frozen


def test_with_cp_same_gradients():
    torch.manual_seed(0)
    a = MambaOut('test')
    b = MambaOut('test', with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 64, 64)
    for m in (a, b):
        m.train()
        sum(o.square().mean() for o in m(x)).backward()
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-6, msg=na)


def test_drop_path_rates_increase_linearly():
    model = MambaOut('test', drop_path_rate=0.4)
    rates = [blk.drop_path.drop_prob if hasattr(blk.drop_path, 'drop_prob') else 0.0
             for stage in model.stages for blk in stage]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.4)
    assert rates == sorted(rates)


def test_pretrained_errors(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        MambaOut('test', init_cfg=dict(type='Pretrained',
                                       checkpoint=str(tmp_path / 'nope.pth'))).init_weights()
    # another size: first mismatching key and both shapes
    path = tmp_path / 'other.pth'
    torch.save(MambaOut(dict(depths=(1, 1, 2, 1), dims=(16, 24, 32, 64))).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"Shape mismatch for .*\(64, 32, 3, 3\).*\(48, 32"):
        MambaOut('test', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    # a missing block
    sd = MambaOut('test').state_dict()
    del sd['stages.2.1.fc1.weight']
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r'1 missing key.*stages\.2\.1\.fc1\.weight'):
        MambaOut('test', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    # an unknown extra key
    sd = MambaOut('test').state_dict()
    sd['stages.0.0.extra.weight'] = torch.zeros(1)
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match='unexpected key.*extra'):
        MambaOut('test', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    with pytest.raises(ValueError, match='Unknown Pretrained init_cfg keys'):
        MambaOut('test', init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                       strcit=True)).init_weights()


def test_pretrained_loads_weights_and_keeps_output_norms_new(tmp_path):
    src = MambaOut('test')
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith('norm')}
    sd['head.fc2.weight'] = torch.zeros(10, 8)
    path = tmp_path / 'official.pth'
    torch.save({'model': sd}, path)
    dst = MambaOut('test', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dst.init_weights()
    for k, v in sd.items():
        if not k.startswith('head.'):
            torch.testing.assert_close(dst.state_dict()[k], v)
