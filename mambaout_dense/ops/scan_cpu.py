"""The ``cpu`` backend: the compiled C++ selective scan of ``csrc/selective_scan_cpu.cpp``.

Implements the recurrence of "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
(Gu & Dao, arXiv:2312.00752) in float32 for CPU tensors, with AVX-512, AVX2 or portable vector
code picked by the CPU at run time. The extension is never compiled at import:
``python -m mambaout_dense.ops.csrc.build`` (run by ``tools/install.sh``) builds it into
``mambaout_dense/ops/csrc/build/``, checks it against the reference, and only then writes
``meta.json`` with the torch version it was built for. Without a checked build for the running
torch version the backend is unavailable; with one it is the default for CPU tensors (see
:func:`mambaout_dense.ops.get_default_backend`).
"""
import os.path as osp
from types import ModuleType
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .csrc.extension import BUILD_DIR, CompiledExtension  # noqa: F401  (BUILD_DIR re-exported)
from .scan import Backend, Grads, ScanInputs, register_backend, reprobe_backend

LIB_NAME = 'mambaout_dense_scan_cpu'
SOURCE = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc', 'selective_scan_cpu.cpp')
META_FILE = 'meta.json'
#: The compiled kernel and its checked build.
EXTENSION = CompiledExtension(LIB_NAME, SOURCE, META_FILE)


def _load() -> Tuple[Optional[ModuleType], Optional[str], dict]:
    """(module, reason it is unavailable, build metadata); loaded once."""
    return EXTENSION.load()


def source_sha1() -> Optional[str]:
    """SHA-1 of the kernel's source (None when it is missing), recorded by the build so that a
    stale build is not used."""
    return EXTENSION.source_sha1()


def use_module(module: Optional[ModuleType]) -> None:
    """Use an already loaded extension (the build's check), or forget it (``None``)."""
    EXTENSION.use(module)
    reprobe_backend('cpu')


def kernel_isa() -> Optional[str]:
    """The instruction set the kernel's forward uses here (``avx512``, ``avx2``, ``portable``),
    or None when the backend is unavailable."""
    module = _load()[0]
    return None if module is None else module.isa()


def kernel_isas() -> List[str]:
    """The instruction sets the kernel can run on this CPU, best first (empty when unavailable)."""
    module = _load()[0]
    return [] if module is None else list(module.isas())


def set_kernel_isa(name: str) -> None:
    """Run the kernel's forward with instruction set ``name`` (one of :func:`kernel_isas`).

    Raises:
        RuntimeError: When the backend is unavailable or the CPU lacks ``name``.
    """
    module, reason, _ = _load()
    if module is None:
        # internal invariant: the registry dispatches here only after the probe found the
        # kernel, and a backend named in a config is checked when the model is built
        raise RuntimeError(f'the cpu selective-scan backend is unavailable: {reason}')
    module.set_isa(name)


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
            forward=cpu_forward, backward=cpu_backward, priority={'cpu': 10}))
