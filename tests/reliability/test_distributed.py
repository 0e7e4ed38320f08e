"""Distributed failure: in a 2-process run (``tools/dist_train.sh``, gloo on CPU), when one rank
dies or hangs the whole job exits non-zero within a bounded time, saying which rank failed.

A rank that dies (SIGKILL) is noticed by torchrun's agent, which stops the other rank. A rank
that hangs is given up on by the other rank after the collective timeout
(``MAMBAOUT_DENSE_DIST_TIMEOUT``, 20 s here); the agent then stops the hung one.
"""
import socket
import time

import pytest

from .helpers import explain, make_ade, run_tool, write_config

pytestmark = pytest.mark.slow

BOUND_S = 120  # from the fault to the end of the job


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    return make_ade(str(tmp_path_factory.mktemp('ade') / 'ade'))


def _run(tmp_path, ade_root, how):
    """Train 6 iterations on 2 ranks; rank 1 fails at iteration 2. Returns the run and the
    seconds from the fault to the end of the job."""
    stamp = tmp_path / 'fault_time'
    cfg = write_config(str(tmp_path), 'seg', ade_root, hooks=[
        dict(type='RankFaultHook', at=2, rank=1, how=how, stamp=str(stamp))])
    proc = run_tool('dist_train.sh', cfg, 2, '--work-dir', tmp_path / 'work', '--cfg-options',
                    'train_cfg.max_iters=6', cwd=str(tmp_path), timeout=600,
                    env={'PORT': str(_free_port()), 'MAMBAOUT_DENSE_DIST_TIMEOUT': '20'})
    end = time.time()
    assert stamp.exists(), explain(proc)  # the fault was injected (training had started)
    return proc, end - float(stamp.read_text())


def test_a_killed_rank_ends_the_job(tmp_path, ade_root, record_property):
    proc, after_fault = _run(tmp_path, ade_root, 'kill')
    assert proc.returncode != 0, explain(proc)
    assert 'Iter(train) [3/6]' not in proc.output, explain(proc)
    assert 'rank      : 1' in proc.output and 'Signal 9 (SIGKILL)' in proc.output, explain(proc)
    print(f'killed rank: the job ended {after_fault:.1f} s after the fault')
    record_property('seconds', f'{after_fault:.0f}')
    assert after_fault < BOUND_S, f'the job ended {after_fault:.0f} s after the fault'


def test_a_hung_rank_is_given_up_on_after_the_collective_timeout(tmp_path, ade_root,
                                                                 record_property):
    proc, after_fault = _run(tmp_path, ade_root, 'hang')
    assert proc.returncode != 0, explain(proc)
    assert 'rank 0 of 2: a collective operation failed because another rank died or stopped ' \
           'responding' in proc.output, explain(proc)
    assert 'Timed out' in proc.output and 'MAMBAOUT_DENSE_DIST_TIMEOUT' in proc.output
    print(f'hung rank: the job ended {after_fault:.1f} s after the fault')
    record_property('seconds', f'{after_fault:.0f}')
    assert 20 <= after_fault < BOUND_S, f'the job ended {after_fault:.0f} s after the fault'
