"""VMamba backbone: parameter counts, SS2D numerics, the dense contract, official checkpoints."""
import builtins
import importlib
import math
import os
import pickle
import sys

import pytest
import torch
import torch.nn.functional as F

from mambaout_dense.checkpoint import CheckpointError
from mambaout_dense.checkpoint.vmamba import convert_vmamba
from mambaout_dense.models import VMamba
from mambaout_dense.models.backbones.vmamba import SS2D

# Backbone parameters including the four output norms (docs/reference.md section 4).
PARAMS_M = {'tiny': 29.48, 'small': 49.38, 'base': 87.53}
# A small Vanilla (v0) variant: channels-last, gated SS2D, patch merging, no MLP.
V0_TEST = dict(depths=(1, 1, 1, 1), dims=(16, 32, 48, 64), d_state=4, ssm_ratio=2.0,
               mlp_ratio=0.0, version='v0')


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _official_state_dict(model: VMamba) -> dict:
    """Our weights in the official ``VSSM`` classification layout (with its classifier)."""
    sd = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith('norm')}
    c = model.dims[-1]
    sd['classifier.norm.weight'] = torch.ones(c)
    sd['classifier.norm.bias'] = torch.zeros(c)
    sd['classifier.head.weight'] = torch.zeros(1000, c)
    sd['classifier.head.bias'] = torch.zeros(1000)
    return sd


# ---------------------------------------------------------------------------- architecture
@pytest.mark.parametrize('arch', sorted(PARAMS_M))
def test_param_count_matches_reference(arch):
    assert _params(VMamba(arch)) / 1e6 == pytest.approx(PARAMS_M[arch], abs=0.05)


def test_vanilla_tiny_param_count_matches_official_classifier():
    """Without output norms and with the 1000-class classifier: the official 22,893,448."""
    model = VMamba('vanilla_tiny')
    outnorms = sum(2 * d for d in model.dims)
    classifier = 2 * 768 + 768 * 1000 + 1000
    assert _params(model) - outnorms + classifier == 22_893_448


def test_tiny_has_the_official_key_layout():
    """Names and shapes of the v2 release (vssm1_tiny_0230s: s1l8, d_state 1, conv w/o bias)."""
    sd = VMamba('tiny').state_dict()
    expected = {
        'patch_embed.0.weight': (48, 3, 3, 3),
        'patch_embed.2.weight': (48, ),
        'patch_embed.5.weight': (96, 48, 3, 3),
        'patch_embed.7.bias': (96, ),
        'layers.0.blocks.0.norm.weight': (96, ),
        'layers.0.blocks.0.op.in_proj.weight': (96, 96),
        'layers.0.blocks.0.op.conv2d.weight': (96, 1, 3, 3),
        'layers.0.blocks.0.op.x_proj_weight': (4, 6 + 2, 96),  # dt_rank ceil(96/16) = 6
        'layers.0.blocks.0.op.dt_projs_weight': (4, 96, 6),
        'layers.0.blocks.0.op.dt_projs_bias': (4, 96),
        'layers.0.blocks.0.op.A_logs': (4 * 96, 1),
        'layers.0.blocks.0.op.Ds': (4 * 96, ),
        'layers.0.blocks.0.op.out_norm.weight': (96, ),
        'layers.0.blocks.0.op.out_proj.weight': (96, 96),
        'layers.0.blocks.0.mlp.fc1.weight': (384, 96),
        'layers.0.blocks.0.mlp.fc2.bias': (96, ),
        'layers.0.downsample.1.weight': (192, 96, 3, 3),
        'layers.0.downsample.3.weight': (192, ),
        'layers.2.blocks.7.op.x_proj_weight': (4, 24 + 2, 384),
        'layers.3.blocks.1.norm2.weight': (768, ),
        'norm3.weight': (768, ),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert 'layers.0.blocks.0.op.conv2d.bias' not in sd
    assert not any(k.startswith('layers.3.downsample') for k in sd)


def test_vanilla_tiny_has_the_v0_key_layout():
    sd = VMamba('vanilla_tiny').state_dict()
    assert tuple(sd['patch_embed.0.weight'].shape) == (96, 3, 4, 4)
    assert tuple(sd['layers.0.blocks.0.op.in_proj.weight'].shape) == (384, 96)  # x and z
    assert tuple(sd['layers.0.blocks.0.op.conv2d.bias'].shape) == (192, )
    assert tuple(sd['layers.0.blocks.0.op.A_logs'].shape) == (4 * 192, 16)
    assert tuple(sd['layers.0.downsample.reduction.weight'].shape) == (192, 384)
    assert tuple(sd['layers.0.downsample.norm.weight'].shape) == (384, )
    assert not any('.mlp.' in k or '.norm2.' in k for k in sd)


def test_ssm_initialisation_survives_init_weights():
    """dt bias = softplus^-1(dt), dt in [dt_min, dt_max]; A_logs = log(1..N); Ds = 1."""
    model = VMamba(dict(depths=(1, 1, 1, 1), dims=(16, 32, 48, 64), d_state=5))
    model.init_weights()
    op = model.layers[1].blocks[0].op
    dt = F.softplus(op.dt_projs_bias)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    assert dt.std() > 0  # random, not constant
    torch.testing.assert_close(op.A_logs, torch.log(torch.arange(1., 6.)).expand(4 * 32, 5))
    assert torch.all(op.Ds == 1)
    bound = op.dt_rank**-0.5
    assert op.dt_projs_weight.abs().max() <= bound
    # linear layers: truncated normal, std 0.02, zero bias (as the official _init_weights)
    assert op.in_proj.weight.std().item() == pytest.approx(0.02, rel=0.3)
    assert torch.all(model.layers[1].blocks[0].mlp.fc1.bias == 0)


def test_arch_errors():
    with pytest.raises(ValueError, match='valid names: .*vanilla_tiny'):
        VMamba('tinny')
    with pytest.raises(ValueError, match='unknown keys'):
        VMamba(dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), forward_type='v05_noz'))
    with pytest.raises(ValueError, match="version 'v1'"):
        VMamba(dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), version='v1'))
    with pytest.raises(TypeError):
        VMamba('test', drop_path_rte=0.1)  # a typo must not be swallowed


# --------------------------------------------------------------------------------- outputs
def test_odd_input_sizes_v0():
    model = VMamba(V0_TEST).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 65, 70))
    # 4x4 patchify floors (65 -> 16, 70 -> 17); patch merging pads odd sizes (ceil)
    assert [tuple(o.shape) for o in outs] == [(1, 16, 16, 17), (1, 32, 8, 9), (1, 48, 4, 5),
                                              (1, 64, 2, 3)]
    assert all(o.is_contiguous() for o in outs)


def test_drop_path_rates_and_behaviour():
    model = VMamba('test', drop_path_rate=0.6)
    rates = [getattr(blk.drop_path, 'drop_prob', 0.0)
             for layer in model.layers for blk in layer.blocks]
    assert rates == pytest.approx([0.0, 0.2, 0.4, 0.6])
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        model.train()
        torch.manual_seed(1)
        a = model(x)[-1]
        torch.manual_seed(2)
        b = model(x)[-1]
        model.eval()
        c, d = model(x)[-1], model(x)[-1]
    assert not torch.allclose(a, b)  # stochastic in training
    torch.testing.assert_close(c, d)  # deterministic in eval


# ------------------------------------------------------------------------ SS2D numerics
def _ss2d_reference(op: SS2D, x: torch.Tensor) -> torch.Tensor:
    """SS2D in float64 from first principles: explicit scan orders and a per-step loop."""
    p = {k: v.detach().double() for k, v in op.state_dict().items()}
    x = x.double()
    if not op.channels_first:
        x = x.permute(0, 3, 1, 2)
    h = torch.einsum('oc,bchw->bohw', p['in_proj.weight'], x)
    if op.gated:
        h, z = h.chunk(2, dim=1)
        z = F.silu(z)
    D = h.shape[1]
    h = F.silu(F.conv2d(h, p['conv2d.weight'], p.get('conv2d.bias'), padding=1, groups=D))
    batch, _, H, W = h.shape
    L, N, R = H * W, op.d_state, op.dt_rank
    row_major = [i * W + j for i in range(H) for j in range(W)]
    col_major = [i * W + j for j in range(W) for i in range(H)]
    orders = [row_major, col_major, row_major[::-1], col_major[::-1]]
    flat = h.reshape(batch, D, L)
    y = torch.zeros_like(flat)
    for k, order in enumerate(orders):
        seq = flat[:, :, order]  # (B, D, L) in scan order
        proj = torch.einsum('cd,bdl->bcl', p['x_proj_weight'][k], seq)
        dt_low, Bk, Ck = proj[:, :R], proj[:, R:R + N], proj[:, R + N:]
        dt = torch.einsum('dr,brl->bdl', p['dt_projs_weight'][k], dt_low)
        dt = F.softplus(dt + p['dt_projs_bias'][k][:, None])
        A = -torch.exp(p['A_logs'][k * D:(k + 1) * D])  # (D, N)
        skip = p['Ds'][k * D:(k + 1) * D]
        state = torch.zeros(batch, D, N, dtype=torch.float64)
        out = torch.zeros(batch, D, L, dtype=torch.float64)
        for t in range(L):
            d_t = dt[:, :, t, None]
            state = torch.exp(d_t * A) * state + d_t * Bk[:, None, :, t] * seq[:, :, t, None]
            out[:, :, t] = (state * Ck[:, None, :, t]).sum(-1) + skip * seq[:, :, t]
        y[:, :, order] += out  # back to row-major positions
    y = y.reshape(batch, D, H, W).permute(0, 2, 3, 1)  # (B, H, W, D)
    y = F.layer_norm(y, (D, ), p['out_norm.weight'], p['out_norm.bias'], op.out_norm.eps)
    if op.gated:
        y = y * z.permute(0, 2, 3, 1)
    out = torch.einsum('cd,bhwd->bhwc', p['out_proj.weight'], y)
    return out.permute(0, 3, 1, 2) if op.channels_first else out


def _randomise(op: SS2D) -> None:
    """Move every parameter off its structured init so each one matters."""
    torch.manual_seed(3)
    with torch.no_grad():
        for param in op.parameters():
            param.add_(0.3 * torch.randn_like(param))


@pytest.mark.parametrize('version', ['v2', 'v0'])
def test_ss2d_matches_float64_reference(version):
    gated = version == 'v0'
    op = SS2D(8, d_state=3, ssm_ratio=2.0, gated=gated, conv_bias=gated,
              channels_first=not gated)
    _randomise(op)
    shape = (2, 8, 5, 7) if op.channels_first else (2, 5, 7, 8)  # H != W: transposes matter
    x = torch.randn(shape)
    ref = _ss2d_reference(op, x)
    with torch.no_grad():
        # float64 end to end through the scan backends that compute in float64
        op.double()
        for backend in ('reference', 'torch'):
            op.scan_backend = backend
            torch.testing.assert_close(op(x.double()), ref, rtol=1e-9, atol=1e-9, msg=backend)
        # float32 through the backend chosen automatically for CPU tensors
        op.float().scan_backend = None
        got32 = op(x)
    torch.testing.assert_close(got32, ref.float(), rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_ss2d_directions_are_not_interchangeable():
    """Guards the reference test: swapping two directions' parameters changes the output."""
    op = SS2D(8, d_state=2)
    _randomise(op)
    x = torch.randn(1, 8, 4, 6)
    with torch.no_grad():
        before = op(x)
        op.x_proj_weight.copy_(op.x_proj_weight[[1, 0, 2, 3]])
        after = op(x)
    assert not torch.allclose(before, after, atol=1e-4)


# ------------------------------------------------------------------------- checkpoints
def test_convert_vmamba_official_legacy_and_ours():
    model = VMamba(V0_TEST)
    ours = model.state_dict()
    # the release layout: classifier dropped, rest unchanged
    official = _official_state_dict(model)
    converted, ignored = convert_vmamba(official)
    assert sorted(ignored) == sorted(k for k in official if k.startswith('classifier.'))
    assert set(converted) == {k for k in ours if not k.startswith('norm')}
    # names of the first training code, a top-level head, 1x1 projections stored as convs
    legacy = {}
    for k, v in official.items():
        if k.startswith('classifier.'):
            continue
        k = k.replace('patch_embed.0.', 'patch_embed.proj.').replace(
            'patch_embed.2.', 'patch_embed.norm.').replace('.op.', '.self_attention.').replace(
                'blocks.0.norm.', 'blocks.0.ln_1.')
        if k.endswith('in_proj.weight'):
            v = v[:, :, None, None]
        legacy[k] = v
    legacy['norm.weight'] = torch.ones(64)
    legacy['head.weight'] = torch.zeros(1000, 64)
    converted_legacy, ignored_legacy = convert_vmamba(legacy)
    assert sorted(ignored_legacy) == ['head.weight', 'norm.weight']
    assert list(converted_legacy) == list(converted)
    for k, v in converted.items():
        assert torch.equal(converted_legacy[k], v), k
    # our own layout comes back unchanged
    same, none = convert_vmamba(ours)
    assert none == [] and list(same) == list(ours)
    assert all(same[k] is ours[k] for k in ours)
    with pytest.raises(CheckpointError, match='Not a VMamba checkpoint'):
        convert_vmamba({'downsample_layers.0.conv1.weight': torch.zeros(1)})


def _fake_yacs(tmp_path, monkeypatch):
    """Put a throw-away ``yacs.config.CfgNode`` on sys.path (yacs itself is not installed)."""
    root = tmp_path / 'fake_site'
    (root / 'yacs').mkdir(parents=True)
    (root / 'yacs' / '__init__.py').write_text('')
    (root / 'yacs' / 'config.py').write_text(
        'class CfgNode(dict):\n    """Stand-in for yacs.config.CfgNode."""\n')
    monkeypatch.syspath_prepend(str(root))
    return importlib.import_module('yacs.config').CfgNode, str(root)


def _forget_fake_yacs(root: str) -> None:
    for name in [m for m in sys.modules if m == 'yacs' or m.startswith('yacs.')]:
        del sys.modules[name]
    sys.path.remove(root)
    importlib.invalidate_caches()
    assert importlib.util.find_spec('yacs') is None


@pytest.mark.parametrize('arch', ['test', 'v0'])
def test_official_checkpoint_with_yacs_config_loads(arch, tmp_path, monkeypatch):
    arch = V0_TEST if arch == 'v0' else arch
    src = VMamba(arch)
    with torch.no_grad():
        for param in src.parameters():
            param.add_(torch.randn_like(param))  # distinguishable from a fresh init
    sd = _official_state_dict(src)
    CfgNode, root = _fake_yacs(tmp_path, monkeypatch)
    config = CfgNode(MODEL=CfgNode(TYPE='vssm', NAME='vssm1_tiny_0230s'), TAG='default')
    config.__dict__['frozen'] = True  # yacs keeps state in __dict__ too (pickle BUILD)
    path = tmp_path / 'vssm1_tiny_0230s_ckpt_epoch_264.pth'
    torch.save({'model': sd, 'optimizer': {}, 'epoch': 264, 'config': config}, path)
    _forget_fake_yacs(root)

    dst = VMamba(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dst.init_weights()
    loaded = dst.state_dict()
    for key, value in sd.items():
        if not key.startswith('classifier.'):
            assert torch.equal(loaded[key], value), key
    assert not torch.equal(loaded['norm0.weight'], src.state_dict()['norm0.weight'])


def test_pretrained_wrong_shape_and_missing_key(tmp_path):
    sd = _official_state_dict(VMamba('test'))
    path = tmp_path / 'ckpt.pth'
    key = 'layers.2.blocks.0.op.x_proj_weight'  # test arch: (4, 3 + 2, 48)
    bad = dict(sd, **{key: torch.zeros(4, 3 + 32, 48)})  # a d_state-16 checkpoint
    torch.save({'model': bad}, path)
    with pytest.raises(CheckpointError,
                       match=r"shape mismatch for 'layers\.2\.blocks\.0\.op\.x_proj_weight': "
                       r'checkpoint \(4, 35, 48\) vs model \(4, 5, 48\)'):
        VMamba('test', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    missing = {k: v for k, v in sd.items() if k != 'layers.1.blocks.0.op.A_logs'}
    torch.save({'model': missing}, path)
    with pytest.raises(CheckpointError, match=r'1 missing key.*layers\.1\.blocks\.0\.op\.A_logs'):
        VMamba('test', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    # a v2 model refuses a v0 checkpoint
    torch.save({'model': _official_state_dict(VMamba(V0_TEST))}, path)
    with pytest.raises(CheckpointError):
        VMamba('test', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


class _RunsShell:

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class _RunsPython:

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f'open({self.marker!r}, "w").close()', ))


@pytest.mark.parametrize('payload', [_RunsShell, _RunsPython])
def test_malicious_checkpoint_is_refused_without_running_code(payload, tmp_path):
    # the payload is live: plain unpickling runs it
    control = tmp_path / 'control'
    pickle.loads(pickle.dumps(payload(str(control))))
    assert control.exists()

    marker = tmp_path / 'marker'
    sd = _official_state_dict(VMamba('test'))
    path = tmp_path / 'evil.pth'
    torch.save({'model': sd, 'config': payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match='Refused to load checkpoint'):
        VMamba('test', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    assert not marker.exists()


def test_dt_rank_follows_block_width():
    model = VMamba('test')
    for layer, dim in zip(model.layers, model.dims):
        assert layer.blocks[0].op.dt_rank == math.ceil(dim / 16)
