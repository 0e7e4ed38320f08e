"""The ``mamba_ssm`` backend: the CUDA kernel of the ``mamba_ssm`` package, when installed.

"Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (Gu & Dao, arXiv:2312.00752).
Optional and never chosen automatically; ``mamba_ssm`` is imported on first use. Its backward
re-runs ``selective_scan_fn`` under autograd, which keeps this wrapper independent of the
package's internal kernel signatures.
"""
import importlib.util
from typing import Optional, Tuple

import torch
from torch import Tensor

from .scan import Backend, ScanInputs, register_backend


def _scan_fn():
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    return selective_scan_fn


def _probe() -> Optional[str]:
    if importlib.util.find_spec('mamba_ssm') is None:
        return 'mamba_ssm is not installed'
    if not torch.cuda.is_available():
        return 'no CUDA device'
    try:
        _scan_fn()
    except Exception as e:  # noqa: BLE001 - a broken install means unavailable
        return f'mamba_ssm does not import ({type(e).__name__}: {e})'
    return None


def mamba_ssm_forward(inputs: ScanInputs,
                      delta_softplus: bool) -> Tuple[Tensor, Tensor, Tuple[Tensor, ...]]:
    """Forward through ``mamba_ssm``'s ``selective_scan_fn``. Returns ``(out, last_state, ())``."""
    u, delta, A, B, C, D, z, delta_bias = (None if t is None else t.contiguous() for t in inputs)
    out, last = _scan_fn()(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                           delta_softplus=delta_softplus, return_last_state=True)
    return out, last, ()


register_backend(
    Backend('mamba_ssm', probe=_probe, supports=lambda device: device.type == 'cuda',
            forward=mamba_ssm_forward, backward=None))
