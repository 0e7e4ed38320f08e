"""Import hygiene: what each part of the package imports, and what it changes.

Each check runs in a fresh interpreter, so modules imported by other tests do not leak in.
"""
import json
import subprocess
import sys

import pytest

PROBE = r'''
import json, sys
import mmengine.runner.checkpoint as ckpt
import mmengine.fileio.backends as fb
schemes = dict(ckpt.CheckpointLoader._schemes)
backends = dict(fb.backends)
prefixes = dict(fb.prefix_to_backends)
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(dict(
    modules=sorted(m for m in sys.modules if m.split('.')[0] in ('mmdet', 'mmseg', 'mmcv')),
    schemes_changed=dict(ckpt.CheckpointLoader._schemes) != schemes,
    backends_changed=dict(fb.backends) != backends or dict(fb.prefix_to_backends) != prefixes,
)))
'''


def _probe(*modules: str) -> dict:
    proc = subprocess.run([sys.executable, '-c', PROBE, *modules], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_library_imports_no_task_package_and_change_no_mmengine_state():
    # all together: a union that imports neither and changes nothing implies each part does not
    result = _probe('mambaout_dense', 'mambaout_dense.models', 'mambaout_dense.ops',
                    'mambaout_dense.checkpoint', 'mambaout_dense.engine', 'mambaout_dense.builder',
                    'mambaout_dense.datasets', 'mambaout_dense.evaluation',
                    'mambaout_dense.analysis.measure', 'mambaout_dense.analysis.tables')
    assert not [m for m in result['modules'] if m.split('.')[0] in ('mmdet', 'mmseg')], result
    assert not result['schemes_changed'] and not result['backends_changed'], result


def test_safe_io_is_the_module_that_switches_mmengine():
    result = _probe('mambaout_dense.safe_io')
    assert result['schemes_changed'] and result['backends_changed']
    assert not [m for m in result['modules'] if m.split('.')[0] in ('mmdet', 'mmseg')]


@pytest.mark.parametrize('module,needs,not_needed', [
    ('mambaout_dense.datasets.checked_coco', 'mmdet', 'mmseg'),
    ('mambaout_dense.evaluation.coco_metric', 'mmdet', 'mmseg'),
    ('mambaout_dense.datasets.checked_ade', 'mmseg', 'mmdet'),
])
def test_task_adapters_import_only_their_task(module, needs, not_needed):
    roots = {m.split('.')[0] for m in _probe(module)['modules']}
    assert needs in roots and not_needed not in roots


BLOCKED_RUN = r'''
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    """Make a package look uninstalled."""
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == sys.argv[2]:
            raise ModuleNotFoundError(f'No module named {name!r} (blocked by the test)')
        return None
sys.meta_path.insert(0, Blocker())
from mambaout_dense.builder import build_model, load_config
model = build_model(load_config(sys.argv[1]))
print(type(model).__name__)
'''


@pytest.mark.parametrize('config,not_needed,model', [
    ('configs/mask_rcnn_mambaout_femto_synthetic.py', 'mmseg', 'MaskRCNN'),
    ('configs/upernet_mambaout_femto_synthetic.py', 'mmdet', 'EncoderDecoder'),
])
def test_a_task_config_builds_without_the_other_task_installed(config, not_needed, model,
                                                               repo_root):
    proc = subprocess.run([sys.executable, '-c', BLOCKED_RUN, config, not_needed],
                          capture_output=True, text=True, timeout=300, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == model


def test_library_never_imports_the_cli_layer(repo_root):
    """Nothing under mambaout_dense/ imports mambaout_dense.cli (tools/*.py do)."""
    import os
    import re
    uses_cli = re.compile(r'^\s*(from\s+(\.+|mambaout_dense\.)cli\s+import|from\s+(\.+|mambaout_'
                          r'dense)\s+import\s+cli\b|import\s+mambaout_dense\.cli)', re.M)
    offenders = []
    for root, _, files in os.walk(os.path.join(repo_root, 'mambaout_dense')):
        for name in files:
            path = os.path.join(root, name)
            if name.endswith('.py') and path != os.path.join(repo_root, 'mambaout_dense',
                                                              'cli.py'):
                with open(path) as f:
                    if uses_cli.search(f.read()):
                        offenders.append(path)
    assert not offenders
    assert not os.path.exists(os.path.join(repo_root, 'mambaout_dense', 'engine', 'launch.py'))
