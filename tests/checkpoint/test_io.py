"""Safe checkpoint reading: weights_only, inert config objects, refusal of code-running pickles."""
import io
import os
import pickle
import sys

import pytest
import torch

from mambaout_dense.checkpoint import CheckpointError, OpaqueObject, extract_state_dict, safe_load


class _Exploit:
    """Unpickling this would create a marker file (stands in for arbitrary code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_plain_state_dict_loads(tmp_path):
    path = tmp_path / 'ok.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'epoch': 3}}, path)
    ckpt = safe_load(path)
    assert ckpt['meta']['epoch'] == 3
    assert list(extract_state_dict(ckpt)) == ['w']


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': _Exploit(str(marker))}, path)
    with pytest.raises(CheckpointError, match='could run arbitrary code') as info:
        safe_load(path)
    assert 'system' in str(info.value)
    assert not marker.exists()


def test_inert_config_object_is_read_without_running_its_code(tmp_path, monkeypatch):
    pkg = tmp_path / 'yacs'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    marker = tmp_path / 'ran'
    (pkg / 'config.py').write_text(
        'class CfgNode(dict):\n'
        '    def __setstate__(self, state):\n'
        f'        open({str(marker)!r}, "w").close()\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    from yacs.config import CfgNode  # noqa: E402  (the fake module)
    cfg = CfgNode(MODEL='vssm')
    cfg.__dict__['frozen'] = True
    path = tmp_path / 'vmamba.pth'
    torch.save({'model': {'w': torch.ones(2)}, 'config': cfg}, path)
    for name in [m for m in sys.modules if m == 'yacs' or m.startswith('yacs.')]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path / 'nowhere'))
    sys.path.remove(str(tmp_path))
    ckpt = safe_load(path)
    assert isinstance(ckpt['config'], OpaqueObject) and ckpt['config']['MODEL'] == 'vssm'
    assert torch.equal(extract_state_dict(ckpt)['w'], torch.ones(2))
    assert not marker.exists()


def test_truncated_and_empty_files(tmp_path):
    path = tmp_path / 'full.pth'
    torch.save({'w': torch.randn(1000)}, path)
    data = path.read_bytes()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated, corrupt'):
        safe_load(cut)
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(CheckpointError, match='empty'):
        safe_load(empty)
    with pytest.raises(CheckpointError, match='not found'):
        safe_load(tmp_path / 'missing.pth')


def test_buffer_and_non_dict(tmp_path):
    buf = io.BytesIO()
    torch.save([1, 2], buf)
    buf.seek(0)
    assert safe_load(buf) == [1, 2]
    with pytest.raises(CheckpointError, match='not a dict'):
        extract_state_dict([1, 2])


def test_mmengine_local_loader_goes_through_safe_load(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint

    import mambaout_dense.safe_io  # noqa: F401  (installs the loader)
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        torch.save({'x': _Exploit(str(marker))}, f, pickle_module=pickle)
    with pytest.raises(CheckpointError):
        _load_checkpoint(str(path))
    assert not marker.exists()
