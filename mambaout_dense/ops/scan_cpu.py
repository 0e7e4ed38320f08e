"""The ``cpu`` backend: the compiled C++ selective scan of ``csrc/selective_scan_cpu.cpp``.

Implements the recurrence of "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
(Gu & Dao, arXiv:2312.00752) in float32 for CPU tensors. The extension is never compiled at
import: ``python -m mambaout_dense.ops.csrc.build`` (run by ``tools/install.sh``) builds it into
``mambaout_dense/ops/csrc/build/`` and records there whether it beat the ``torch`` backend on
this machine; without a build for the running torch version the backend is unavailable.
"""
import importlib.machinery
import importlib.util
import json
import os.path as osp
from types import ModuleType
from typing import Optional, Tuple

import torch
from torch import Tensor

from .scan import Backend, Grads, ScanInputs, register_backend

LIB_NAME = 'mambaout_dense_scan_cpu'
BUILD_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc', 'build')
META_FILE = 'meta.json'

_state: dict = {}


def _load() -> Tuple[Optional[ModuleType], Optional[str], dict]:
    """(module, reason it is unavailable, build metadata); loaded once."""
    if 'module' in _state:
        return _state['module'], _state['reason'], _state['meta']
    module, reason, meta = None, None, {}
    lib = osp.join(BUILD_DIR, LIB_NAME + importlib.machinery.EXTENSION_SUFFIXES[-1])
    if not osp.exists(lib):
        lib = osp.join(BUILD_DIR, LIB_NAME + '.so')
    meta_path = osp.join(BUILD_DIR, META_FILE)
    if not osp.exists(lib) or not osp.exists(meta_path):
        reason = ('not built; run `python -m mambaout_dense.ops.csrc.build`')
    else:
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get('torch') != torch.__version__:
            reason = (f"built for torch {meta.get('torch')}, running {torch.__version__}; "
                      'rebuild with `python -m mambaout_dense.ops.csrc.build`')
        else:
            try:
                spec = importlib.util.spec_from_file_location(LIB_NAME, lib)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            except ImportError as e:
                module, reason = None, f'{lib} does not load: {e}'
    _state.update(module=module, reason=reason, meta=meta)
    return module, reason, meta


def _contig(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.detach().to(torch.float32).contiguous()


def cpu_forward(inputs: ScanInputs,
                delta_softplus: bool) -> Tuple[Tensor, Tensor, Tuple[Tensor, ...]]:
    """Forward of the ``cpu`` backend (float32). Returns ``(out, last_state, ())``."""
    module = _load()[0]
    out, last = module.fwd(*(_contig(t) for t in inputs), bool(delta_softplus))
    return out, last, ()


def cpu_backward(inputs: ScanInputs, saved: Tuple[Tensor, ...], delta_softplus: bool,
                 dout: Tensor, dlast: Optional[Tensor]) -> Grads:
    """Backward of the ``cpu`` backend (float32, recomputes the states)."""
    module = _load()[0]
    batch, groups = inputs.u.shape[0], inputs.B.shape[1]
    per_group = inputs.u.shape[1] // groups
    # Enough (batch, group, slab) tasks for every thread; slabs each hold a copy of dB/dC.
    slabs = max(1, min(per_group, -(-2 * torch.get_num_threads() // (batch * groups))))
    du, ddelta, dA, dB, dC, dD, dbias, dz = module.bwd(*(_contig(t) for t in inputs),
                                                      bool(delta_softplus), _contig(dout),
                                                      _contig(dlast), slabs)
    return (du, ddelta, dA.sum(0), dB.sum(2), dC.sum(2),
            None if inputs.D is None else dD.sum(0), dz if inputs.z is not None else None,
            None if inputs.delta_bias is None else dbias.sum(0))


register_backend(
    Backend('cpu', probe=lambda: _load()[1], supports=lambda device: device.type == 'cpu',
            forward=cpu_forward, backward=cpu_backward,
            auto=lambda device: bool(_load()[2].get('faster_than_torch', False))))
