"""The ``triton`` selective-scan backend against the sequential reference.

On CPU the kernels run under the Triton interpreter, which has to be switched on before Triton
is first imported: ``test_kernels_under_the_interpreter`` re-runs this file in a subprocess with
``TRITON_INTERPRET=1``, where the ``interpreted`` tests run (they skip everywhere else). With a
CUDA device the ``gpu`` tests run the compiled kernels directly.
"""
import os
import subprocess
import sys

import pytest
import torch

from mambaout_dense.ops import available_backends, get_default_backend, selective_scan
from mambaout_dense.ops.scan_inputs import random_scan_inputs

INTERPRETED = os.environ.get('TRITON_INTERPRET') == '1'
HAS_CUDA = torch.cuda.is_available()
interpreted = pytest.mark.skipif(not INTERPRETED, reason='runs under TRITON_INTERPRET=1 only')
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason='needs a CUDA device')


def make_inputs(batch, dim, length, n_state, groups, **kwargs):
    return random_scan_inputs(batch, dim, length, n_state, groups, **kwargs)


def run(x, backend, softplus=True, seed=1):
    """Output, last state and the gradients of every input, on the CPU in float64."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
    out, last = selective_scan(**leaves, delta_softplus=softplus, return_last_state=True,
                               backend=backend)
    g = torch.Generator().manual_seed(seed)
    cots = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(t) for t in (out, last)]
    grads = torch.autograd.grad([out, last], list(leaves.values()), cots)
    result = dict(out=out, last=last, **{f'd{k}': v for k, v in zip(leaves, grads)})
    return {k: v.detach().double().cpu() for k, v in result.items()}


def assert_close(got, expected, tol):
    for k, ref in expected.items():
        assert torch.isfinite(got[k]).all(), f'{k} not finite'
        err = ((got[k] - ref).abs().max() / ref.abs().max().clamp_min(1e-6)).item()
        assert err < tol, f'{k}: relative error {err:.2e}'


@pytest.mark.skipif(INTERPRETED, reason='this is the interpreter process')
def test_kernels_under_the_interpreter():
    pytest.importorskip('triton')
    env = dict(os.environ, TRITON_INTERPRET='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', __file__, '-q', '-p', 'no:cacheprovider', '-k',
         'interpreted'], env=env, capture_output=True, text=True, timeout=600)
    report = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    assert 'skipped' not in proc.stdout.splitlines()[-1], report


CASES = {
    'all_options_N3_groups2': ((2, 4, 37, 3, 2), {}, True),
    'N1_groups4_plain': ((1, 8, 40, 1, 4), dict(D=False, z=False, bias=False), False),
    'N16_groups1': ((1, 2, 21, 16, 1), {}, True),
    'odd_channels_per_group': ((1, 6, 18, 2, 2), dict(z=False), True),
}


@interpreted
@pytest.mark.parametrize('case', list(CASES))
def test_interpreted_triton_matches_reference(case, monkeypatch):
    import mambaout_dense.ops.scan_triton as scan_triton
    monkeypatch.setattr(scan_triton, 'MAX_BLOCK_L', 16)  # several chunks per sequence
    shape, opts, softplus = CASES[case]
    x = make_inputs(*shape, **opts)
    assert_close(run(x, 'triton', softplus), run(x, 'reference', softplus), 2e-5)


@interpreted
def test_interpreted_triton_large_decays(monkeypatch):
    import mambaout_dense.ops.scan_triton as scan_triton
    monkeypatch.setattr(scan_triton, 'MAX_BLOCK_L', 16)
    g = torch.Generator().manual_seed(5)
    x = make_inputs(1, 2, 48, 2, 1, z=False, bias=False, seed=5)
    x['delta'] = torch.rand(1, 2, 48, generator=g, dtype=torch.float64)**3 * 50
    x['A'] = -torch.rand(2, 2, generator=g, dtype=torch.float64) * 100
    assert_close(run(x, 'triton', False), run(x, 'reference', False), 2e-5)


@interpreted
def test_interpreted_triton_half_inputs():
    x = make_inputs(1, 4, 20, 2, 2, dtype=torch.float16)
    got = run(x, 'triton')
    expected = run({k: v.float() for k, v in x.items()}, 'reference')
    assert_close(got, expected, 1e-2)


@interpreted
@pytest.mark.parametrize('shape,dtype,tol', [((1, 64, 150, 1, 4), torch.float32, 2e-5),
                                             ((1, 32, 40, 4, 2), torch.bfloat16, 2e-2)],
                         ids=['N1_full_tiles_fp32', 'N4_full_tiles_bf16'])
def test_interpreted_triton_on_the_gpu_preflight_shapes(shape, dtype, tol):
    """The GPU suite's preflight shapes: whole 2048-element tiles (16 x 1 x 128 with a size-1
    state axis; 8 x 4 x 64), two chunks, bf16 inputs; the reference sees the rounded inputs."""
    from mambaout_dense.ops.scan_triton import TILE_ELEMS, _blocks
    block_d, block_n, block_l = _blocks(shape[1], shape[4], shape[3], shape[2])
    assert block_d * block_n * block_l == TILE_ELEMS
    x = make_inputs(*shape, z=shape[3] > 1, dtype=dtype)
    expected = run({k: v.double() for k, v in x.items()}, 'reference')
    assert_close(run(x, 'triton'), expected, tol)


@interpreted
def test_interpreted_triton_is_listed_for_cpu():
    assert 'triton' in available_backends('cpu')
    assert get_default_backend('cpu') != 'triton'  # never chosen automatically on CPU


@pytest.mark.parametrize('shape,softplus', [((2, 384, 1024, 1, 4), True),
                                            ((1, 64, 4096, 16, 4), True),
                                            ((2, 6, 300, 3, 2), False)])
@pytest.mark.parametrize('backend', ['triton', 'torch'])
@pytest.mark.gpu
@requires_cuda
def test_cuda_backend_matches_reference(backend, shape, softplus):
    x = make_inputs(*shape, dtype=torch.float32)
    expected = run({k: v.double() for k, v in x.items()}, 'reference', softplus)
    got = run({k: v.cuda() for k, v in x.items()}, backend, softplus)
    assert_close(got, expected, 1e-4)


@pytest.mark.gpu
@requires_cuda
def test_triton_is_the_cuda_default():
    if 'triton' in available_backends('cuda'):
        assert get_default_backend('cuda') == 'triton'
    else:
        assert get_default_backend('cuda') == 'torch'
