"""Ahead-of-time compiled C++ extensions: build, check, and load only a checked build.

An extension is never compiled at import. ``python -m mambaout_dense.ops.csrc.build`` (run by
``tools/install.sh``) compiles each source into ``mambaout_dense/ops/csrc/build/``, checks it
against an independent reference, and only then writes its metadata file (torch version, SHA-1
of the source, check results). :meth:`CompiledExtension.load` uses a build only when that file
exists and matches the running torch and the current source; otherwise it says why the
extension is unavailable, and the callers fall back to their pure-PyTorch path.
"""
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import os.path as osp
from types import ModuleType
from typing import Optional, Sequence, Tuple

import torch

__all__ = ['BUILD_DIR', 'CompiledExtension']

#: Where the extensions are built (ignored by git).
BUILD_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'build')
_REBUILD = 'rebuild with `python -m mambaout_dense.ops.csrc.build`'


class CompiledExtension:
    """One compiled extension and its checked build.

    Args:
        lib_name (str): Module name of the extension.
        source (str): Its C++ source file.
        meta_file (str): Name of its metadata file in the build folder.
        build_dir (str): The build folder. Defaults to :data:`BUILD_DIR`.
    """

    def __init__(self, lib_name: str, source: str, meta_file: str,
                 build_dir: str = BUILD_DIR) -> None:
        self.lib_name, self.source, self.meta_file = lib_name, source, meta_file
        self.build_dir = build_dir
        self._state: dict = {}

    def source_sha1(self) -> Optional[str]:
        """SHA-1 of the source (None when it is missing); a build records it."""
        try:
            with open(self.source, 'rb') as f:
                return hashlib.sha1(f.read()).hexdigest()
        except OSError:
            return None

    def load(self) -> Tuple[Optional[ModuleType], Optional[str], dict]:
        """(module, reason it is unavailable, build metadata); loaded once."""
        if 'module' in self._state:
            return self._state['module'], self._state['reason'], self._state['meta']
        module, reason, meta = None, None, {}
        lib = osp.join(self.build_dir,
                       self.lib_name + importlib.machinery.EXTENSION_SUFFIXES[-1])
        if not osp.exists(lib):
            lib = osp.join(self.build_dir, self.lib_name + '.so')
        meta_path = osp.join(self.build_dir, self.meta_file)
        if not osp.exists(lib) or not osp.exists(meta_path):
            reason = 'not built; run `python -m mambaout_dense.ops.csrc.build`'
        else:
            with open(meta_path) as f:
                meta = json.load(f)
            if meta.get('torch') != torch.__version__:
                reason = (f"built for torch {meta.get('torch')}, running {torch.__version__}; "
                          + _REBUILD)
            elif meta.get('source_sha1') is None or meta.get('source_sha1') != self.source_sha1():
                reason = f'built from another version of {osp.basename(self.source)}; ' + _REBUILD
            else:
                try:
                    spec = importlib.util.spec_from_file_location(self.lib_name, lib)
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                except ImportError as e:
                    module, reason = None, f'{lib} does not load: {e}'
        self._state.update(module=module, reason=reason, meta=meta)
        return module, reason, meta

    def use(self, module: Optional[ModuleType]) -> None:
        """Use an already loaded module (a build being checked), or forget it (``None``)."""
        self._state.clear()
        if module is not None:
            self._state.update(module=module, reason=None, meta={'torch': torch.__version__})

    def compile(self, cflags: Sequence[str], verbose: bool = False) -> ModuleType:
        """Compile the source into the build folder (removing the old metadata first, so that
        an interrupted or failed build is never used) and return the loaded module."""
        from torch.utils.cpp_extension import load
        os.makedirs(self.build_dir, exist_ok=True)
        meta_path = osp.join(self.build_dir, self.meta_file)
        if osp.exists(meta_path):
            os.remove(meta_path)
        return load(name=self.lib_name, sources=[self.source], build_directory=self.build_dir,
                    extra_cflags=list(cflags), verbose=verbose)

    def write_meta(self, **fields) -> dict:
        """Record a checked build (torch version and source SHA-1 added); returns the metadata."""
        meta = dict(torch=torch.__version__, source_sha1=self.source_sha1(), **fields)
        with open(osp.join(self.build_dir, self.meta_file), 'w') as f:
            json.dump(meta, f, indent=2)
        return meta
