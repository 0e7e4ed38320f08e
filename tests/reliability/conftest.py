"""Keep in-process runs of the reliability tests from leaking mmengine's global default scope."""
import pytest
from mmengine.registry import DefaultScope


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Runners and tools built here create DefaultScope instances ('mmengine', 'mmdet', ...);
    the latest one is global, so later tests that build from a registry would look in it."""
    before = list(DefaultScope._instance_dict)
    yield
    for name in list(DefaultScope._instance_dict):
        if name not in before:
            del DefaultScope._instance_dict[name]
