"""Selective-scan backends against the sequential reference, and VMamba's cross-scan.

The ``triton`` backend is checked in ``test_scan_triton.py`` (under the Triton interpreter on
CPU), the FLOP handle in ``test_scan_flops.py``.
"""
import os

import pytest
import torch

import mambaout_dense.ops.scan as ss
import mambaout_dense.ops.scan_torch as scan_torch
from mambaout_dense.ops import (
    available_backends,
    cross_merge,
    cross_scan,
    get_default_backend,
    selective_scan,
    set_default_backend,
)
from mambaout_dense.ops.scan_inputs import random_scan_inputs

# Backends that run on CPU tensors here, besides the reference (triton: test_scan_triton.py).
CPU_BACKENDS = [b for b in available_backends('cpu') if b not in ('reference', 'triton')]
# Backends that compute in float32 whatever the input dtype.
FLOAT32_BACKENDS = {'cpu', 'triton', 'mamba_ssm'}
NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')


def make_inputs(batch=2, dim=4, length=37, n_state=3, groups=2, **kwargs):
    """Random scan inputs as a dict of keyword arguments of ``selective_scan``."""
    return random_scan_inputs(batch, dim, length, n_state, groups, **kwargs)


def rel_err(actual, expected):
    """max |actual - expected| / max |expected| (absolute when expected is ~0)."""
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-6)).item()


def tolerance(backend, dtype=torch.float64, length=64):
    """Relative tolerance of a backend compared with the float64 reference."""
    if backend in FLOAT32_BACKENDS or dtype == torch.float32:
        return 2e-5 if length <= 1024 else 1e-4
    return 1e-9


def run(x, backend, softplus=True, last=True, grads=True, seed=1):
    """Outputs and gradients of every input (w.r.t. a random cotangent of out and last)."""
    leaves = {k: v.detach().clone().requires_grad_(grads) for k, v in x.items()}
    res = selective_scan(**leaves, delta_softplus=softplus, return_last_state=last,
                         backend=backend)
    out, state = res if last else (res, None)
    result = dict(out=out.detach())
    if state is not None:
        result['last'] = state.detach()
    if grads:
        g = torch.Generator().manual_seed(seed)
        outs = [out] + ([state] if state is not None else [])
        cots = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype) for o in outs]
        gs = torch.autograd.grad(outs, list(leaves.values()), cots)
        result.update({f'd{k}': v for k, v in zip(leaves, gs)})
    return result


def assert_close(result, expected, tol, what=''):
    assert result.keys() == expected.keys()
    for k in expected:
        assert torch.isfinite(result[k]).all(), f'{what} {k} not finite'
        err = rel_err(result[k], expected[k])
        assert err < tol, f'{what} {k}: relative error {err:.2e} >= {tol:.1e}'


CASES = {
    'all_options_groups2_N3': dict(shape=(2, 4, 37, 3, 2), opts={}, softplus=True, last=True),
    'N1_groups4': dict(shape=(1, 8, 50, 1, 4), opts={}, softplus=True, last=False),
    'N1_channels_not_multiple_of_4': dict(shape=(1, 6, 45, 1, 2), opts={}, softplus=True,
                                          last=True),
    'N16_groups1': dict(shape=(2, 4, 29, 16, 1), opts={}, softplus=True, last=True),
    'N16_groups4_no_softplus': dict(shape=(1, 8, 40, 16, 4), opts={}, softplus=False,
                                    last=True),
    'no_D_no_z_no_bias': dict(shape=(2, 6, 33, 2, 3), opts=dict(D=False, z=False, bias=False),
                              softplus=True, last=True),
    'z_only': dict(shape=(1, 4, 20, 4, 2), opts=dict(D=False, bias=False), softplus=False,
                   last=False),
    'B_C_without_group_axis': dict(shape=(2, 3, 25, 5, 1), opts=dict(b3d=True), softplus=True,
                                   last=True),
    'length_1': dict(shape=(2, 4, 1, 3, 2), opts={}, softplus=True, last=True),
}


@pytest.fixture(scope='module')
def reference_results():
    """Reference forward and gradients of every case (float64), computed once."""
    results = {}
    for name, case in CASES.items():
        x = make_inputs(*case['shape'], **case['opts'])
        results[name] = (x, run(x, 'reference', case['softplus'], case['last']))
    return results


@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_backend_matches_reference_forward_and_gradients(backend, case, reference_results):
    x, expected = reference_results[case]
    got = run(x, backend, CASES[case]['softplus'], CASES[case]['last'])
    assert_close(got, expected, tolerance(backend), f'{backend}/{case}')


@pytest.mark.parametrize('n_state,groups', [(1, 4), (16, 2)])
def test_long_sequence_matches_reference(n_state, groups):
    """L = 4096 through every CPU backend (one 64 x 64 block of the torch backend)."""
    x = make_inputs(1, 4, 4096, n_state, groups, seed=3)
    expected = run(x, 'reference')
    for backend in CPU_BACKENDS:
        assert_close(run(x, backend), expected, tolerance(backend, length=4096), backend)


def test_torch_backend_blocks_and_padding(monkeypatch):
    """Several blocks, a padded last block and a padded last chunk, against the reference."""
    monkeypatch.setattr(scan_torch, '_BLOCK_ELEMS', 2 * 4 * 3 * 50)
    monkeypatch.setattr(scan_torch, '_MIN_BLOCK', 8)
    plan = scan_torch._blocks(237, 2 * 4 * 3)
    assert len(plan) > 3 and plan[-1][1] == 237
    assert all(e - s == T * nC for s, e, T, nC in plan[:-1])
    x = make_inputs(2, 4, 237, 3, 2, seed=5)
    assert_close(run(x, 'torch'), run(x, 'reference'), 1e-9)


@pytest.mark.parametrize('backend', ['torch', 'reference'])
@pytest.mark.parametrize('softplus', [True, False])
def test_gradcheck(backend, softplus):
    x = make_inputs(1, 4, 7, 2, 2, seed=7)
    names = list(x)

    def fn(*tensors):
        out, last = selective_scan(**dict(zip(names, tensors)), delta_softplus=softplus,
                                   return_last_state=True, backend=backend)
        return out, last

    inputs = tuple(v.clone().requires_grad_() for v in x.values())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_large_decays_stay_finite_and_exact():
    """delta up to 50 and A down to -100 (decays down to exp(-5000)) over L = 2048."""
    g = torch.Generator().manual_seed(11)
    batch, dim, length, n_state, groups = 1, 4, 2048, 4, 2
    x = make_inputs(batch, dim, length, n_state, groups, z=False, seed=11)
    x['delta'] = torch.rand(batch, dim, length, generator=g, dtype=torch.float64)**3 * 50
    x['A'] = -torch.rand(dim, n_state, generator=g, dtype=torch.float64) * 100
    x.pop('delta_bias')
    expected = run(x, 'reference', softplus=False)
    for backend in CPU_BACKENDS:
        got = run(x, backend, softplus=False)
        assert_close(got, expected, tolerance(backend, length=length), backend)
    # Large delta through softplus as well (delta + bias around 40).
    x['delta'] = x['delta'] - 10
    expected = run(x, 'reference', softplus=True)
    for backend in CPU_BACKENDS:
        assert_close(run(x, backend, softplus=True), expected, tolerance(backend, length=length),
                     backend)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_half_inputs_on_cpu_compute_in_float32(backend, dtype):
    x = make_inputs(2, 4, 300, 3, 2, dtype=dtype, seed=13)
    got = run(x, backend)
    assert got['out'].dtype == dtype
    assert got['last'].dtype == torch.float32
    for k in NAMES:
        assert got[f'd{k}'].dtype == dtype
    expected = run({k: v.float() for k, v in x.items()}, 'reference')
    tol = 1e-2 if dtype == torch.float16 else 3e-2  # rounding of outputs and gradients
    assert_close(got, expected, tol, str(dtype))


def test_output_shapes_and_dtypes():
    x = make_inputs(2, 6, 11, 5, 3, dtype=torch.float32)
    out = selective_scan(**x)
    assert out.shape == (2, 6, 11) and out.dtype == torch.float32
    out, last = selective_scan(**x, return_last_state=True)
    assert last.shape == (2, 6, 5)


def test_B_C_without_group_axis_equal_one_group():
    x = make_inputs(2, 4, 15, 3, 1, seed=2)
    y4 = selective_scan(**x, delta_softplus=True)
    x3 = dict(x, B=x['B'][:, 0], C=x['C'][:, 0])
    torch.testing.assert_close(selective_scan(**x3, delta_softplus=True), y4)


def test_groups_select_channels():
    """Channel d reads group d // (dim // groups): permuting groups permutes channel blocks."""
    x = make_inputs(1, 4, 9, 2, 2, D=False, z=False, bias=False, seed=4)
    y = selective_scan(**x, backend='reference')
    swapped = dict(x, B=x['B'].flip(1), C=x['C'].flip(1), u=x['u'].roll(2, 1),
                   delta=x['delta'].roll(2, 1), A=x['A'].roll(2, 0))
    torch.testing.assert_close(selective_scan(**swapped, backend='reference'), y.roll(2, 1))


@pytest.mark.parametrize(
    'change,match',
    [
        (lambda x: x.update(delta=x['delta'][..., :-1]), 'delta'),
        (lambda x: x.update(A=x['A'][:-1]), r'A must be \(dim, N\)'),
        (lambda x: x.update(B=x['B'][..., :-1]), 'B must be'),
        (lambda x: x.update(C=x['C'][:, :, :-1]), 'C must be'),
        (lambda x: x.update(B=x['B'][:, :1]), 'same number of groups'),
        (lambda x: x.update(B=x['B'].repeat(1, 3, 1, 1)[:, :3], C=x['C'].repeat(1, 3, 1, 1)[:, :3]),
         'divisible'),
        (lambda x: x.update(D=x['D'][:-1]), r'D must be \(dim,\)'),
        (lambda x: x.update(z=x['z'][:1]), 'z must have the shape of u'),
        (lambda x: x.update(delta_bias=x['delta_bias'][None]), 'delta_bias'),
        (lambda x: x.update(u=x['u'][0]), r'u must be \(batch, dim, L\)'),
        (lambda x: x.update(u=x['u'].long()), 'floating-point'),
    ],
    ids=['delta', 'A', 'B_length', 'C_state', 'groups_mismatch', 'groups_divide', 'D', 'z',
         'bias', 'u_rank', 'int'])
def test_bad_inputs_raise_value_error(change, match):
    x = make_inputs(2, 4, 10, 3, 2)
    change(x)
    with pytest.raises(ValueError, match=match):
        selective_scan(**x)


def test_shape_error_names_tensors_and_shapes():
    x = make_inputs(2, 4, 10, 3, 2)
    x['B'] = x['B'][..., :-1]
    with pytest.raises(ValueError, match=r'B\(2, 2, 3, 9\)'):
        selective_scan(**x)


def test_unknown_backend_lists_available_ones():
    x = make_inputs(1, 2, 5, 1, 1)
    with pytest.raises(ValueError, match=r"Unknown .* 'nope'.*'reference'.*'torch'"):
        selective_scan(**x, backend='nope')
    with pytest.raises(ValueError, match='available backends'):
        set_default_backend('nope')


def test_unavailable_backend_raises(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    if 'triton' in available_backends('cpu'):
        pytest.skip('triton runs on CPU tensors in this process')
    with pytest.raises(ValueError, match='triton'):
        selective_scan(**make_inputs(1, 2, 5, 1, 1), backend='triton')


class _Spy:
    """Replace a backend's forward by a counting wrapper."""

    def __init__(self, monkeypatch, name):
        self.calls = 0
        original = ss._REGISTRY[name]

        def forward(*args, **kwargs):
            self.calls += 1
            return original.forward(*args, **kwargs)

        monkeypatch.setitem(ss._REGISTRY, name, original._replace(forward=forward))


def test_backend_choice_order(monkeypatch):
    """backend= beats set_default_backend, which beats the environment variable."""
    x = make_inputs(1, 2, 5, 1, 1)
    ref, torch_ = _Spy(monkeypatch, 'reference'), _Spy(monkeypatch, 'torch')
    monkeypatch.setenv(ss.ENV_VAR, 'reference')
    selective_scan(**x)
    assert (ref.calls, torch_.calls) == (1, 0)
    monkeypatch.setattr(ss, '_DEFAULT', None)
    set_default_backend('torch')
    selective_scan(**x)
    assert (ref.calls, torch_.calls) == (1, 1)
    selective_scan(**x, backend='reference')
    assert (ref.calls, torch_.calls) == (2, 1)
    set_default_backend(None)
    monkeypatch.delenv(ss.ENV_VAR)
    selective_scan(**x)
    assert ref.calls == 2 and get_default_backend('cpu') in ('torch', 'cpu')


def test_default_cpu_backend_is_the_kernel_when_built():
    expected = 'cpu' if 'cpu' in available_backends('cpu') else 'torch'
    assert get_default_backend('cpu') == expected
    assert get_default_backend(torch.device('cpu')) == expected


@pytest.mark.parametrize('device,available,expected', [
    ('cpu', {'cpu': True}, 'cpu'),
    ('cpu', {'cpu': False}, 'torch'),
    ('cuda', {'triton': True, 'mamba_ssm': True}, 'triton'),
    ('cuda', {'triton': False, 'mamba_ssm': True}, 'torch'),
    ('meta', {'cpu': True, 'triton': True, 'mamba_ssm': True}, 'torch'),
])
def test_default_backend_rule(monkeypatch, device, available, expected):
    """CUDA: triton when it imports, else torch; CPU: the compiled kernel when built, else torch;
    mamba_ssm only on request."""
    for name, ok in available.items():
        monkeypatch.setitem(ss._PROBED, name, None if ok else 'pretended unavailable')
    assert get_default_backend(device) == expected


def test_default_backend_ignores_build_timings(monkeypatch):
    """A build's metadata (e.g. an old timing verdict) does not change the default."""
    import mambaout_dense.ops.scan_cpu as scan_cpu
    monkeypatch.setattr(scan_cpu.EXTENSION, '_state', dict(
        module=object(), reason=None, meta=dict(torch=torch.__version__,
                                                faster_than_torch=False)))
    monkeypatch.delitem(ss._PROBED, 'cpu', raising=False)
    assert get_default_backend('cpu') == 'cpu'


def test_environment_variable_overrides_default(monkeypatch):
    x = make_inputs(1, 2, 5, 1, 1)
    ref = _Spy(monkeypatch, 'reference')
    monkeypatch.setattr(ss, '_DEFAULT', None)
    monkeypatch.setenv(ss.ENV_VAR, 'reference')
    selective_scan(**x)
    assert ref.calls == 1
    monkeypatch.setenv(ss.ENV_VAR, '')  # empty: the automatic choice
    selective_scan(**x)
    assert ref.calls == 1


@pytest.mark.parametrize('name,match', [
    ('nope', r"Unknown selective-scan backend 'nope' \(from the environment variable "
             r"MAMBAOUT_DENSE_SCAN_BACKEND\); available backends: \[.*'torch'"),
    ('mamba_ssm', r"'mamba_ssm' \(from the environment variable MAMBAOUT_DENSE_SCAN_BACKEND\) "
                  r"is not available \(pretended unavailable\); available backends"),
])
def test_environment_variable_with_a_bad_name_raises(monkeypatch, name, match):
    monkeypatch.setattr(ss, '_DEFAULT', None)
    monkeypatch.setitem(ss._PROBED, 'mamba_ssm', 'pretended unavailable')
    monkeypatch.setenv(ss.ENV_VAR, name)
    with pytest.raises(ValueError, match=match):
        selective_scan(**make_inputs(1, 2, 5, 1, 1))


def test_backend_for_another_device_raises(monkeypatch):
    monkeypatch.setattr(ss, '_DEFAULT', None)
    monkeypatch.setitem(ss._PROBED, 'mamba_ssm', None)  # pretend it is installed
    monkeypatch.setenv(ss.ENV_VAR, 'mamba_ssm')
    with pytest.raises(ValueError, match=r"'mamba_ssm' \(from the environment variable .*\) "
                                         r'does not run on cpu tensors'):
        selective_scan(**make_inputs(1, 2, 5, 1, 1))


def test_backend_reported_once(monkeypatch):
    messages = []
    monkeypatch.setattr(ss, 'print_log', lambda msg, logger=None: messages.append(msg))
    monkeypatch.setattr(ss, '_REPORTED', set())
    x = make_inputs(1, 2, 5, 1, 1)
    for _ in range(3):
        selective_scan(**x, backend='torch')
    selective_scan(**x, backend='reference')
    assert len(messages) == 2 and "'torch'" in messages[0] and "'reference'" in messages[1]


@pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') == '1', reason='interpreter process')
def test_importing_ops_does_not_import_triton():
    import subprocess
    import sys
    code = 'import sys, mambaout_dense.ops; assert "triton" not in sys.modules'
    subprocess.run([sys.executable, '-c', code], check=True)


# ------------------------------------------------------------------------------------------
# cross-scan
# ------------------------------------------------------------------------------------------


def test_cross_scan_directions():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    y = cross_scan(x)
    assert y.shape == (2, 4, 3, 20)
    torch.testing.assert_close(y[:, 0], x.flatten(2))  # row-major
    torch.testing.assert_close(y[:, 1], x.transpose(2, 3).flatten(2))  # column-major
    torch.testing.assert_close(y[:, 2], x.flatten(2).flip(-1))
    torch.testing.assert_close(y[:, 3], x.transpose(2, 3).flatten(2).flip(-1))
    # step 1 of the column-major scan is pixel (h=1, w=0)
    assert y[0, 1, 0, 1] == x[0, 0, 1, 0]


@pytest.mark.parametrize('hw', [(4, 5), (6, 6)])
def test_cross_merge_undoes_cross_scan(hw):
    x = torch.randn(2, 3, *hw)
    y = cross_scan(x)
    torch.testing.assert_close(cross_merge(y, *hw), 4 * x.flatten(2))
    torch.testing.assert_close(cross_merge(y.view(2, 4, 3, *hw)), 4 * x.flatten(2))
    # each direction is put back in place on its own
    for k in range(4):
        only = torch.zeros_like(y)
        only[:, k] = y[:, k]
        torch.testing.assert_close(cross_merge(only, *hw), x.flatten(2))


def test_cross_merge_needs_height_for_non_square():
    y = cross_scan(torch.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match='not square'):
        cross_merge(y)
    torch.testing.assert_close(cross_merge(y, width=4), cross_merge(y, 3, 4))


@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_activation_checkpointing_same_gradients(backend):
    """The backward unpacks its saved tensors once, as non-reentrant checkpointing requires."""
    from torch.utils.checkpoint import checkpoint
    x = make_inputs(2, 4, 30, 3, 2, dtype=torch.float32, seed=9)

    def scan(*tensors):
        return selective_scan(*tensors, delta_softplus=True, backend=backend)

    grads = []
    for use_cp in (False, True):
        leaves = [v.clone().requires_grad_() for v in x.values()]
        out = checkpoint(scan, *leaves, use_reentrant=False) if use_cp else scan(*leaves)
        out.square().sum().backward()
        grads.append([v.grad for v in leaves])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
