"""MambaOut backbone: equivalence with timm, parameter counts, the dense contract, loading."""
import pytest
import torch

from mambaout_dense.checkpoint.mambaout import convert_mambaout, timm_to_official
from mambaout_dense.models import MambaOut

timm = pytest.importorskip('timm')  # installed by tools/install.sh; fails loudly below if absent

VARIANTS = ['femto', 'kobe', 'tiny', 'small', 'base']
# Backbone parameters without classification head and final norm (docs/reference.md section 2).
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
        got = ours.forward_stages(x)  # NCHW, before the output norms
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
        got = ours.forward_stages(x)  # NCHW, before the output norms
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5 * r.abs().max().item())


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


def test_training_forward_and_gradients_equal_timm():
    """Train mode (autograd path of the block): outputs and every parameter's gradient equal
    timm's, whose block concatenates and convolves the way the official code does."""
    import timm
    torch.manual_seed(0)
    tm = timm.create_model('mambaout_femto', pretrained=False).train()
    ours = MambaOut('femto').train()
    state, _ = convert_mambaout(tm.state_dict())
    ours.load_state_dict(state, strict=False)
    x = torch.randn(2, 3, 64, 96)
    ref = tm.forward_intermediates(x, indices=4, intermediates_only=True)
    got = ours.forward_stages(x)
    cots = [torch.randn_like(r) for r in ref]
    sum((r * c).sum() for r, c in zip(ref, cots)).backward()
    sum((o * c).sum() for o, c in zip(got, cots)).backward()
    for r, o in zip(ref, got):
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5)
    timm_grads = {k: v.grad for k, v in timm_to_official(dict(tm.named_parameters())).items()}
    for name, p in ours.named_parameters():
        if name.startswith('norm'):  # output norms are ours only
            continue
        ref_grad = timm_grads[name]
        scale = ref_grad.abs().max().clamp_min(1e-12)
        assert ((p.grad - ref_grad).abs().max() / scale).item() < 1e-4, name
