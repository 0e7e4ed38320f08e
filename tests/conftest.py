"""Shared fixtures and the gpu marker's skip rule."""
import os
import os.path as osp

import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fixed_threads():
    """Keep tests deterministic and polite on 2-core machines."""
    torch.manual_seed(0)
    yield


@pytest.fixture
def repo_root() -> str:
    return REPO_ROOT


def tool_path(*parts: str) -> str:
    return osp.join(REPO_ROOT, 'tools', *parts)


os.environ.setdefault('OMP_NUM_THREADS', '2')
