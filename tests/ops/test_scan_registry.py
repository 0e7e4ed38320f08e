"""The selective-scan registry describes itself: ``register_backend`` alone makes a backend known.

A backend's name, priority (its rank in the automatic choice, per device type) and the reason it
cannot run (``unavailable_reason``) are public, and everything that lists backends reads the
registry: :func:`available_backends`, the automatic choice, ``benchmarks/scan_speed.py``, the GPU
suite and the parametrized tests of ``test_selective_scan.py``.
"""
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch

import mambaout_dense.ops.scan as ss
from mambaout_dense.errors import ConfigError, UnavailableError
from mambaout_dense.ops import scan_torch, selective_scan
from mambaout_dense.ops.scan_inputs import random_scan_inputs

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def torch_twin(name: str, **kwargs) -> ss.Backend:
    """A new backend computing what ``torch`` does, under another name."""
    return ss.Backend(name, probe=kwargs.pop('probe', lambda: None),
                      supports=lambda device: device.type == 'cpu',
                      forward=scan_torch.torch_forward, backward=scan_torch.torch_backward,
                      **kwargs)


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry, restored after the test."""
    monkeypatch.setattr(ss, '_REGISTRY', dict(ss._REGISTRY))
    monkeypatch.setattr(ss, '_PROBED', dict(ss._PROBED))
    monkeypatch.setattr(ss, '_DEFAULT', None)
    monkeypatch.delenv(ss.ENV_VAR, raising=False)


def test_the_registry_lists_names_priorities_and_reasons():
    backends = ss.registered_backends()
    assert {'reference', 'torch', 'cpu', 'triton', 'mamba_ssm'} <= set(backends)
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    assert backends['triton'].rank(cuda) > backends['torch'].rank(cuda)
    assert backends['triton'].rank(cpu) is None  # the interpreter is never chosen by itself
    assert backends['cpu'].rank(cpu) > backends['torch'].rank(cpu)
    assert backends['reference'].rank(cpu) is None and backends['mamba_ssm'].rank(cuda) is None
    assert ss.unavailable_reason('torch') is None
    assert ss.unavailable_reason('nope') == 'not registered'
    for name in backends:
        assert (ss.unavailable_reason(name) is None) == (name in ss.available_backends())


def test_a_registered_backend_is_available_and_used_on_request(registry):
    ss.register_backend(torch_twin('twin'))
    assert 'twin' in ss.available_backends('cpu') and 'twin' in ss.available_backends()
    assert ss.get_default_backend('cpu') != 'twin'  # no priority: only when asked for
    x = random_scan_inputs(1, 4, 20, 2, 2)
    torch.testing.assert_close(selective_scan(**x, backend='twin'),
                               selective_scan(**x, backend='reference'))


def test_priority_decides_the_automatic_choice(registry):
    ss.register_backend(torch_twin('eager_twin', priority={'cpu': 100}))
    assert ss.available_backends('cpu')[0] == 'eager_twin'
    assert ss.get_default_backend('cpu') == 'eager_twin'
    assert ss.get_default_backend('meta') == 'torch'  # no rank there, and no support


def test_an_unavailable_backend_says_why(registry):
    ss.register_backend(torch_twin('broken_twin', probe=lambda: 'its library is missing',
                                   priority={'cpu': 100}))
    assert ss.unavailable_reason('broken_twin') == 'its library is missing'
    assert 'broken_twin' not in ss.available_backends('cpu')
    assert ss.get_default_backend('cpu') != 'broken_twin'
    with pytest.raises(UnavailableError, match=r"'broken_twin' is not available \(its library"):
        ss.set_default_backend('broken_twin')
    with pytest.raises(ConfigError, match="Unknown selective-scan backend 'nope'"):
        ss.set_default_backend('nope')


NEW_BACKEND_TEST = '''
"""A backend registered here, in a test file, and nowhere else."""
import sys

sys.path[:0] = [{ops!r}, {benchmarks!r}]

from mambaout_dense.ops import scan_torch  # noqa: E402
from mambaout_dense.ops.scan import Backend, available_backends, register_backend  # noqa: E402

register_backend(Backend('torch_twin', probe=lambda: None, supports=lambda d: True,
                         forward=scan_torch.torch_forward, backward=scan_torch.torch_backward))

from test_selective_scan import *  # noqa: E402,F401,F403  (the parametrized tests)


def test_twin_is_listed_by_the_registry():
    assert 'torch_twin' in available_backends('cpu')


def test_twin_is_listed_by_the_benchmarks():
    import gpu_speed
    import scan_speed
    assert 'torch_twin' in scan_speed.benchmark_backends('cpu')
    assert 'torch_twin' in {{r['backend'] for r in gpu_speed.scan_speed_plan('cpu', True)}}
'''


def test_a_backend_registered_in_a_test_file_appears_everywhere(tmp_path):
    """No other edit: the benchmarks' case lists and ``test_selective_scan.py``'s parametrized
    tests pick it up (and it passes them, being the torch backend under another name)."""
    test_file = tmp_path / 'test_new_backend.py'
    test_file.write_text(textwrap.dedent(NEW_BACKEND_TEST).format(
        ops=osp.join(REPO_ROOT, 'tests', 'ops'), benchmarks=osp.join(REPO_ROOT, 'benchmarks')))
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-rA', '-p', 'no:cacheprovider',
                           '--rootdir', str(tmp_path), str(test_file), '-k', 'twin'],
                          capture_output=True, text=True, cwd=str(tmp_path), env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = [line for line in proc.stdout.splitlines() if line.startswith('PASSED')]
    twin_cases = [line for line in passed if 'torch_twin' in line]
    for test in ('test_backend_matches_reference_forward_and_gradients',
                 'test_half_inputs_on_cpu_compute_in_float32',
                 'test_activation_checkpointing_same_gradients'):
        assert any(f'::{test}[' in line for line in twin_cases), (test, passed)
    assert any('test_twin_is_listed_by_the_benchmarks' in line for line in passed)
