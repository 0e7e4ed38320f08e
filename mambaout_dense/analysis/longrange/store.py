"""Where long-range probe runs are kept: one JSON line per finished cell, and their provenance.

A sweep appends each cell's record as it finishes, so a killed sweep resumes where it stopped;
every record carries the commit, the package versions and the thread count it ran with.
"""
import json
import os
import os.path as osp
import platform
import subprocess
import sys
from typing import Any, Dict, Optional

__all__ = ['ResultStore', 'provenance']


class ResultStore:
    """Finished cells, one JSON line each, appended as they complete.

    Args:
        path (str): The JSON-lines file.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self, settings_key: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
        """Records by cell key, only those of ``settings_key`` when given (later lines win)."""
        out: Dict[str, Dict[str, Any]] = {}
        if not osp.isfile(self.path):
            return out
        with open(self.path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill
                    continue
                if settings_key is None or rec.get('settings_key') == settings_key:
                    out[rec['cell']] = rec
        return out

    def append(self, record: Dict[str, Any]) -> None:
        """Append one record and flush it to disk."""
        os.makedirs(osp.dirname(osp.abspath(self.path)), exist_ok=True)
        with open(self.path, 'a') as f:
            f.write(json.dumps(record) + '\n')
            f.flush()
            os.fsync(f.fileno())


def _git(args, cwd: str) -> Optional[str]:
    try:
        out = subprocess.run(['git', *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(threads: Optional[int] = None, device: str = 'cpu') -> Dict[str, Any]:
    """Commit, package versions, interpreter, machine, threads and command line of this process.

    The commit is the one of the checkout that holds this package (``dirty`` when tracked files
    differ from it), so a record names the code that produced it.

    Args:
        threads (int, optional): Torch threads per process. Defaults to the current count.
        device (str): Torch device. Defaults to 'cpu'.

    Returns:
        dict: ``commit``, ``dirty``, ``versions`` (python, torch, numpy, mmengine, timm),
        ``machine``, ``device``, ``threads``, ``argv``.
    """
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from ..measure import device_name
    here = osp.dirname(osp.abspath(__file__))
    commit = _git(['rev-parse', 'HEAD'], here)
    status = _git(['status', '--porcelain', '--untracked-files=no'], here)
    versions = {'python': platform.python_version()}
    for dist in ('torch', 'numpy', 'mmengine', 'timm', 'scipy'):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    return dict(commit=commit, dirty=bool(status) if status is not None else None,
                versions=versions, machine=f'{platform.machine()} ({device_name(device)})',
                device=device, threads=threads or torch.get_num_threads(),
                argv=list(sys.argv))
