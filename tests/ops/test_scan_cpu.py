"""The compiled ``cpu`` selective-scan backend: every instruction set against the float64
reference, gradcheck, the build's check, and the guards against a stale or missing build.

The scan is the S6 recurrence of "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces" (Gu & Dao, arXiv:2312.00752). Forward and gradients through all backends are also compared
in ``test_selective_scan.py``; here the kernel's own code paths are covered: N == 1 (a scan inside
each vector of steps) and N > 1 (states in vectors), with partial vectors of steps and of states.
"""
import importlib.machinery
import json
import os.path as osp

import pytest
import torch
from test_selective_scan import assert_close, make_inputs, run, tolerance

import mambaout_dense.ops.scan as ss
import mambaout_dense.ops.scan_cpu as scan_cpu
from mambaout_dense.ops import available_backends, selective_scan

requires_kernel = pytest.mark.skipif('cpu' not in available_backends('cpu'),
                                     reason='the compiled CPU kernel is not built')

# (batch, dim, L, N, groups), chosen to leave partial vectors of 16 and of 8 lanes.
KERNEL_CASES = {
    'N1_tail': (2, 8, 53, 1, 4),
    'N1_one_step': (1, 4, 1, 1, 2),
    'N1_exact_vectors': (1, 4, 64, 1, 1),
    'N16': (1, 8, 45, 16, 4),
    'N16_several_chunks': (1, 4, 600, 16, 2),
    'N5_partial_states': (2, 6, 30, 5, 3),
    'N40_states_in_memory': (1, 4, 21, 40, 2),
}


@pytest.fixture
def isa_restored():
    """Put the kernel's instruction set back after a test that changes it."""
    best = scan_cpu.kernel_isa()
    yield
    scan_cpu.set_kernel_isa(best)


@requires_kernel
def test_kernel_reports_its_instruction_sets():
    isas = scan_cpu.kernel_isas()
    assert isas[-1] == 'portable' and scan_cpu.kernel_isa() == isas[0]
    assert set(isas) <= {'avx512', 'avx2', 'portable'}
    with pytest.raises(RuntimeError, match='unknown instruction set'):
        scan_cpu.set_kernel_isa('sse9')


@requires_kernel
@pytest.mark.parametrize('softplus,z', [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize('case', list(KERNEL_CASES))
def test_every_instruction_set_matches_reference(case, softplus, z, isa_restored):
    x = make_inputs(*KERNEL_CASES[case], z=z, seed=21)
    if not softplus:  # positive steps, so that the states stay bounded without softplus
        x['delta'] = x['delta'].abs()
        x['delta_bias'] = x['delta_bias'].abs()
    expected = run(x, 'reference', softplus)
    for isa in scan_cpu.kernel_isas():
        scan_cpu.set_kernel_isa(isa)
        assert_close(run(x, 'cpu', softplus), expected, tolerance('cpu'), f'{isa}/{case}')


@requires_kernel
def test_special_values_in_every_instruction_set(isa_restored):
    """Huge and tiny steps (softplus of +-100), a NaN step that stays in its channel."""
    x = make_inputs(1, 4, 40, 16, 2, z=False, seed=5)
    x['delta'][0, 0, 3] = 100.0
    x['delta'][0, 1, 7] = -100.0
    expected = run(x, 'reference', grads=False)
    x_nan = {k: v.clone() for k, v in x.items()}
    x_nan['delta'][0, 3, 10] = float('nan')
    for isa in scan_cpu.kernel_isas():
        scan_cpu.set_kernel_isa(isa)
        assert_close(run(x, 'cpu', grads=False), expected, tolerance('cpu'), isa)
        for n_state in (16, 1):
            y = selective_scan(**{k: (v[:, :, :n_state] if k in 'BC' else v)
                                  for k, v in x_nan.items()
                                  if k != 'A'}, A=x_nan['A'][:, :n_state],
                               delta_softplus=True, backend='cpu')
            assert torch.isnan(y[0, 3, 10:]).all() and torch.isfinite(y[0, :3]).all(), isa


@requires_kernel
@pytest.mark.parametrize('n_state', [1, 3])
def test_gradcheck_float32_kernel(n_state):
    """Finite differences of the float32 kernel (float64 inputs, coarse step and tolerance)."""
    x = make_inputs(1, 4, 9, n_state, 2, seed=7)
    names = list(x)

    def fn(*tensors):
        return selective_scan(**dict(zip(names, tensors)), delta_softplus=True,
                              return_last_state=True, backend='cpu')

    inputs = tuple(v.clone().requires_grad_() for v in x.values())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-3, atol=2e-3, rtol=2e-3)


@requires_kernel
def test_build_check_accepts_the_kernel_and_rejects_a_wrong_one(isa_restored):
    from mambaout_dense.ops.csrc import build
    module = scan_cpu._load()[0]
    result = build.check(module)
    assert result['isas'] == scan_cpu.kernel_isas() and result['max_rel_err'] < build.TOLERANCE

    class Wrong:
        """The kernel with a forward 1% off."""

        def __getattr__(self, name):
            return getattr(module, name)

        def fwd(self, *args):
            out, last = module.fwd(*args)
            return out * 1.01, last

    try:
        scan_cpu.use_module(Wrong())
        with pytest.raises(RuntimeError, match='disagrees with the reference'):
            build.check(Wrong())
    finally:
        scan_cpu.use_module(None)  # back to the build on disk
    assert 'cpu' in available_backends('cpu')


@pytest.mark.parametrize('meta,reason', [
    (None, 'not built'),
    (dict(torch='0.0.1'), 'built for torch 0.0.1'),
    (dict(torch=torch.__version__, source_sha1='0' * 40), 'another version'),
])
def test_missing_or_stale_build_is_unavailable(monkeypatch, tmp_path, meta, reason):
    lib = tmp_path / (scan_cpu.LIB_NAME + importlib.machinery.EXTENSION_SUFFIXES[-1])
    lib.write_bytes(b'not a library')
    if meta is not None:
        (tmp_path / scan_cpu.META_FILE).write_text(json.dumps(meta))
    monkeypatch.setattr(scan_cpu.EXTENSION, 'build_dir', str(tmp_path))
    monkeypatch.setattr(scan_cpu.EXTENSION, '_state', {})
    monkeypatch.delitem(ss._PROBED, 'cpu', raising=False)
    assert reason in scan_cpu._load()[1]
    assert 'cpu' not in available_backends('cpu')
    assert ss.get_default_backend('cpu') == 'torch'
    assert scan_cpu.kernel_isa() is None and scan_cpu.kernel_isas() == []
    with pytest.raises(ValueError, match=r"'cpu' is not available \(.*rebuild|'cpu' is not "
                                         r'available \(not built'):
        selective_scan(**make_inputs(1, 2, 5, 1, 1), backend='cpu')


def test_build_writes_no_timing():
    """The build checks, it does not time: nothing in meta.json or the CLI depends on speed."""
    from mambaout_dense.ops.csrc import build
    meta_path = osp.join(scan_cpu.BUILD_DIR, scan_cpu.META_FILE)
    if osp.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        assert set(meta) == {'torch', 'source_sha1', 'isas', 'max_rel_err'}
    assert not hasattr(build, '_median_ms')
    with pytest.raises(SystemExit):
        build.main(['--no-bench'])  # the timing switch is gone
