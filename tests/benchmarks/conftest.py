"""The GPU suite's modules live in ``benchmarks/`` (scripts, not a package): put that folder on
``sys.path`` for the tests, as running ``python benchmarks/gpu_suite.py`` does."""
import os
import os.path as osp
import subprocess
import sys
from typing import Callable, Optional

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BENCH_DIR = osp.join(REPO_ROOT, 'benchmarks')
SUITE = osp.join(BENCH_DIR, 'gpu_suite.py')
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)


def _run_suite(*args: str, timeout: int = 300, cwd: Optional[str] = None,
               env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """``python benchmarks/gpu_suite.py ARGS`` as CI runs it (no inherited TRITON_INTERPRET)."""
    base = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    return subprocess.run([sys.executable, SUITE, *args], env=dict(base, **(env or {})),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO_ROOT)


@pytest.fixture(scope='session')
def run_suite() -> Callable[..., subprocess.CompletedProcess]:
    """Runs ``benchmarks/gpu_suite.py`` in a subprocess (see :func:`_run_suite`)."""
    return _run_suite
