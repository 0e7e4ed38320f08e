"""The ``triton`` backend: fused Triton kernels for the selective scan, forward and backward.

Implements the recurrence of "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
(Gu & Dao, arXiv:2312.00752). One program handles one batch element and ``BLOCK_D`` channels of
one group, keeps the (BLOCK_D, N) state in registers and walks the sequence in chunks of
``BLOCK_L`` steps; inside a chunk the recurrence is a ``tl.associative_scan`` over the pairs
``(a, x)`` with ``(a1, x1) . (a2, x2) = (a1 a2, a2 x1 + x2)``, which only multiplies decays, so
nothing overflows. The forward also stores the state entering every chunk; the backward walks
the chunks from the last, rebuilds ``h[t-1]`` from those states with a scan of the shifted
sequence, runs the adjoint recurrence ``q[t] = C[t] dy[t] + a[t+1] q[t+1]`` with a reverse scan
and accumulates every gradient. ``dB``/``dC`` are summed over the channels of a program in
registers and over the programs of a group by PyTorch afterwards. Computation is float32.

The kernels run on CUDA tensors, and on CPU tensors under the Triton interpreter
(``TRITON_INTERPRET=1`` set before Triton is first imported), which the tests use.
"""
import importlib.util
import os
from typing import Optional, Tuple

import torch
from torch import Tensor

from .scan import Backend, Grads, ScanInputs, register_backend

# Elements of a (BLOCK_D, BLOCK_N, BLOCK_L) tile; tests lower BLOCK_L to cover several chunks.
TILE_ELEMS = 2048
MAX_BLOCK_L = 128
MAX_BLOCK_D = 32

_kernels = None


def _get_kernels():
    """The kernel module, imported on first use."""
    global _kernels
    if _kernels is None:
        from . import _triton_kernels
        _kernels = _triton_kernels
    return _kernels


def _interpreted() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def _supports(device: torch.device) -> bool:
    return device.type == 'cuda' or (device.type == 'cpu' and _interpreted())


def _probe() -> Optional[str]:
    if importlib.util.find_spec('triton') is None:
        return 'triton is not installed'
    if not torch.cuda.is_available() and not _interpreted():
        return 'no CUDA device (set TRITON_INTERPRET=1 to run it on CPU, slowly)'
    try:
        _get_kernels()
    except Exception as e:  # noqa: BLE001 - any failure to import/compile means unavailable
        return f'the Triton kernels do not import ({type(e).__name__}: {e})'
    return None


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _blocks(dim: int, groups: int, n_state: int, length: int) -> Tuple[int, int, int]:
    """(BLOCK_D, BLOCK_N, BLOCK_L): BLOCK_D is a power of two dividing dim // groups."""
    block_n = _next_pow2(n_state)
    block_l = max(16, min(MAX_BLOCK_L, TILE_ELEMS // block_n, _next_pow2(max(length, 1))))
    per_group = dim // groups
    block_d = 1
    while (block_d * 2 <= MAX_BLOCK_D and per_group % (block_d * 2) == 0
           and block_d * 2 * block_n * block_l <= TILE_ELEMS):
        block_d *= 2
    return block_d, block_n, block_l


def _prepare(inputs: ScanInputs):
    ts = [None if t is None else t.detach().contiguous() for t in inputs]
    u = ts[0]
    dummy = u  # pointer for absent optional tensors; never read (constexpr flags)
    return ts, [dummy if t is None else t for t in ts]


def triton_forward(inputs: ScanInputs,
                   delta_softplus: bool) -> Tuple[Tensor, Tensor, Tuple[Tensor, ...]]:
    """Forward of the ``triton`` backend.

    Returns:
        tuple: ``(out, last_state, (chunk_states,))`` in float32, ``chunk_states`` being the
        state entering every chunk, (batch, dim, N, n_chunks).
    """
    ts, ptrs = _prepare(inputs)
    u, B = ts[0], ts[3]
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], ts[2].shape[1]
    block_d, block_n, block_l = _blocks(dim, groups, n_state, length)
    n_chunks = _cdiv(length, block_l)
    f32 = dict(device=u.device, dtype=torch.float32)
    out = torch.empty(batch, dim, length, **f32)
    last = torch.empty(batch, dim, n_state, **f32)
    states = torch.empty(batch, dim, n_state, n_chunks, **f32)
    grid = (batch, _cdiv(dim, block_d))
    _get_kernels().scan_fwd_kernel[grid](
        *ptrs, out, last, states, dim, length, n_state, groups, dim // groups, n_chunks,
        HAS_D=ts[5] is not None, HAS_Z=ts[6] is not None, HAS_BIAS=ts[7] is not None,
        SOFTPLUS=bool(delta_softplus), BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l)
    return out, last, (states, )


def triton_backward(inputs: ScanInputs, saved: Tuple[Tensor, ...], delta_softplus: bool,
                    dout: Tensor, dlast: Optional[Tensor]) -> Grads:
    """Backward of the ``triton`` backend (float32)."""
    ts, ptrs = _prepare(inputs)
    (states, ) = saved
    u, B = ts[0], ts[3]
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], ts[2].shape[1]
    block_d, block_n, block_l = _blocks(dim, groups, n_state, length)
    n_dblocks = _cdiv(dim, block_d)
    f32 = dict(device=u.device, dtype=torch.float32)
    du = torch.empty(batch, dim, length, **f32)
    ddelta = torch.empty(batch, dim, length, **f32)
    dz = torch.empty(batch, dim, length, **f32) if ts[6] is not None else du
    dA = torch.empty(batch, dim, n_state, **f32)
    dB = torch.empty(batch, n_dblocks, n_state, length, **f32)
    dC = torch.empty(batch, n_dblocks, n_state, length, **f32)
    dD = torch.empty(batch, dim, **f32)
    dbias = torch.empty(batch, dim, **f32)
    dout = dout.to(torch.float32).contiguous()
    dlast_t = dout if dlast is None else dlast.to(torch.float32).contiguous()
    grid = (batch, n_dblocks)
    _get_kernels().scan_bwd_kernel[grid](
        *ptrs, dout, dlast_t, states, du, ddelta, dz, dA, dB, dC, dD, dbias, dim, length,
        n_state, groups, dim // groups, states.shape[-1], n_dblocks, HAS_D=ts[5] is not None,
        HAS_Z=ts[6] is not None, HAS_BIAS=ts[7] is not None, SOFTPLUS=bool(delta_softplus),
        HAS_DLAST=dlast is not None, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l,
        num_warps=8)  # about 15 live (BLOCK_D, BLOCK_N, BLOCK_L) tiles
    # (batch, n_dblocks, N, L) -> (batch, groups, N, L): the blocks of a group are consecutive
    dB = dB.view(batch, groups, n_dblocks // groups, n_state, length).sum(2)
    dC = dC.view(batch, groups, n_dblocks // groups, n_state, length).sum(2)
    return (du, ddelta, dA.sum(0), dB, dC, dD.sum(0) if ts[5] is not None else None,
            dz if ts[6] is not None else None, dbias.sum(0) if ts[7] is not None else None)


register_backend(
    Backend('triton', probe=_probe, supports=_supports, forward=triton_forward,
            backward=triton_backward, priority={'cuda': 10}))  # never automatic on the interpreter
