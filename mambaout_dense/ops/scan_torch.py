"""Chunked pure-PyTorch selective scan (the ``torch`` backend) with an explicit backward.

The recurrence ``h[t] = a[t] * h[t-1] + x[t]`` of "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces" (Gu & Dao, arXiv:2312.00752) is evaluated in two levels, so that the
Python loop runs ``O(sqrt(L))`` times instead of ``L`` times:

1. The sequence is cut into blocks of at most ``_BLOCK_ELEMS`` elements of
   (batch, dim, N, block length); blocks run one after the other, carrying the state. Memory
   is linear in L and bounded per block.
2. Inside a block of length ``l``, the positions are laid out as (T, nC) with ``l <= T * nC``
   and position ``c * T + t`` stored at ``[t, c]``: a loop over ``t`` advances all ``nC`` chunks
   at once from a zero state; a loop over the ``nC`` chunk ends then propagates the incoming
   state, which is added back in one vectorized multiply-add, weighted by the decay from the
   chunk start, ``exp(cumsum(delta * A))`` over at most T steps.

Only ``exp`` of ``delta * A`` and of its running sums inside a chunk (never of their negatives or
of differences) is taken, so nothing overflows for ``delta >= 0, A <= 0`` (decays that underflow
to 0 are exact to float precision). Everything is computed in float32 (float64 for float64
inputs).

The backward recomputes each block from its saved starting state (walking the blocks from the
last), runs the adjoint recurrence ``q[t] = C[t] dy[t] + a[t+1] q[t+1]`` backwards with the same
two-level scheme and forms every gradient from ``h``, ``q`` and ``h[t-1]``.
"""
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .scan import ANY_DEVICE, Backend, Grads, ScanInputs, compute_dtype, register_backend

# Elements of (batch, dim, N, block length) per block buffer; about seven such buffers are alive
# in the backward, so 2**20 keeps it near 30 MB (float32).
_BLOCK_ELEMS = 1 << 20
_MIN_BLOCK = 64


def _chunking(length: int) -> Tuple[int, int]:
    """(T, nC) with ``T * nC >= length`` and ``T ~ sqrt(length)``."""
    T = max(1, int(round(math.sqrt(length))))
    return T, max(1, math.ceil(length / T))


def _blocks(length: int, rows: int) -> List[Tuple[int, int, int, int]]:
    """Split ``range(length)`` into blocks of about ``_BLOCK_ELEMS / rows`` positions.

    Returns:
        list[tuple]: ``(start, end, T, nC)`` per block; every block but the last has length
        ``T * nC``, so only the last one may need padding.
    """
    size = max(_MIN_BLOCK, _BLOCK_ELEMS // max(rows, 1))
    if size >= length:
        return [(0, length, *_chunking(length))]
    T, nC = _chunking(size)
    nC = size // T
    size = T * nC
    plan = [(s, s + size, T, nC) for s in range(0, length - size + 1, size)]
    if plan[-1][1] < length:
        plan.append((plan[-1][1], length, *_chunking(length - plan[-1][1])))
    return plan


def _to_block(x: Tensor, s: int, e: int, T: int, nC: int) -> Tensor:
    """``x[..., s:e]`` zero-padded to ``T * nC``, as a contiguous (..., T, nC) tensor whose
    ``[..., t, c]`` is position ``s + c * T + t``."""
    xb = x[..., s:e]
    if T * nC != e - s:
        xb = F.pad(xb, (0, T * nC - (e - s)))
    # one explicit transposing copy: element-wise ops on transposed views are much slower
    return xb.unflatten(-1, (nC, T)).transpose(-1, -2).contiguous()


def _from_block(xb: Tensor, out: Tensor, s: int, e: int) -> None:
    """Write a (..., T, nC) block back into ``out[..., s:e]``."""
    out[..., s:e].copy_(xb.transpose(-1, -2).flatten(-2)[..., :e - s])


def _scan_block(log_a: Tensor, x: Tensor, h0: Tensor, reverse: bool) -> Tuple[Tensor, Tensor]:
    """In-place two-level linear scan of one block.

    Forward: ``x[t] <- a[t] * x[t-1] + x[t]`` from the state ``h0`` before the first position;
    reverse: ``x[t] <- a[t] * x[t+1] + x[t]`` from ``h0`` after the last position, with
    ``a = exp(log_a)``. The decay accumulated inside a chunk is ``exp`` of a running sum of
    ``log_a`` over at most T steps, so for ``log_a <= 0`` only non-positive numbers are
    exponentiated.

    Args:
        log_a (Tensor): Log-decays, (M, T, nC); overwritten by the decays ``a``.
        x (Tensor): Inputs, (M, T, nC); overwritten by the states.
        h0 (Tensor): Incoming state, (M,).
        reverse (bool): Scan from the end.

    Returns:
        tuple[Tensor, Tensor]: The decays ``a`` (the storage of ``log_a``) and the states at the
        chunk boundaries, (nC + 1, M): forward, row ``c`` is the state entering chunk ``c`` and
        row ``nC`` the final state; reverse, row ``c + 1`` is the state entering chunk ``c`` from
        the right and row 0 the state at the first position.
    """
    M, T, nC = x.shape
    # decay from the chunk edge to each position, inclusive
    if reverse:
        decay = log_a.flip(1).cumsum(1).flip(1).exp_()
    else:
        decay = log_a.cumsum(1).exp_()
    a = log_a.exp_()
    if reverse:
        for t in range(T - 2, -1, -1):
            x[:, t].addcmul_(a[:, t], x[:, t + 1])
    else:
        for t in range(1, T):
            x[:, t].addcmul_(a[:, t], x[:, t - 1])
    edge = 0 if reverse else T - 1
    across = decay[:, edge].t().contiguous()  # (nC, M): decay across each whole chunk
    local = x[:, edge].t().contiguous()  # (nC, M): chunk output from a zero state
    H = x.new_empty(nC + 1, M)
    if reverse:
        H[nC] = h0
        for c in range(nC - 1, -1, -1):
            torch.addcmul(local[c], across[c], H[c + 1], out=H[c])
        incoming = H[1:]
    else:
        H[0] = h0
        for c in range(nC):
            torch.addcmul(local[c], across[c], H[c], out=H[c + 1])
        incoming = H[:-1]
    # (nC, M) -> (M, 1, nC), broadcast over t
    x.addcmul_(decay, incoming.t().unsqueeze(1))
    return a, H


def _sum_state(x: Tensor, dim: int) -> Tensor:
    """Sum over the state axis, without a copy when it has size 1."""
    return x.squeeze(dim) if x.shape[dim] == 1 else x.sum(dim)


class _Prepared:
    """Inputs cast to the compute dtype, with channels split as (groups, dim // groups)."""

    def __init__(self, inputs: ScanInputs, delta_softplus: bool):
        dtype = compute_dtype(inputs)
        u, delta, A, B, C = (t.to(dtype) for t in inputs[:5])
        self.batch, self.dim, self.length = u.shape
        self.groups, self.n_state = B.shape[1], A.shape[1]
        self.dg = self.dim // self.groups
        self.dtype = dtype
        self.delta_raw = delta
        if inputs.delta_bias is not None:
            self.delta_raw = delta + inputs.delta_bias.to(dtype)[:, None]
        delta = F.softplus(self.delta_raw) if delta_softplus else self.delta_raw
        shape4 = (self.batch, self.groups, self.dg, self.length)
        self.u4 = u.reshape(shape4)
        self.delta4 = delta.reshape(shape4)
        self.A6 = A.reshape(self.groups, self.dg, self.n_state, 1, 1)
        self.B, self.C = B, C
        self.rows = self.batch * self.dim * self.n_state

    def block(self, s: int, e: int, T: int, nC: int):
        """Views of one block: delta, u, B, C as (..., T, nC) and delta * u."""
        dt = _to_block(self.delta4, s, e, T, nC)  # (b, g, dg, T, nC)
        ut = _to_block(self.u4, s, e, T, nC)
        Bt = _to_block(self.B, s, e, T, nC)  # (b, g, N, T, nC)
        Ct = _to_block(self.C, s, e, T, nC)
        dtu = dt * ut
        return dt, ut, Bt, Ct, dtu

    def log_decays(self, dt: Tensor) -> Tensor:
        """delta * A as (b, g, dg, N, T, nC)."""
        return dt.unsqueeze(3) * self.A6


def torch_forward(inputs: ScanInputs,
                  delta_softplus: bool) -> Tuple[Tensor, Tensor, Tuple[Tensor, ...]]:
    """Forward of the ``torch`` backend.

    Returns:
        tuple: ``(out, last_state, (block_start_states,))`` with ``block_start_states`` of shape
        (n_blocks, batch, dim, N).
    """
    p = _Prepared(inputs, delta_softplus)
    y = p.u4.new_empty(p.batch, p.groups, p.dg, p.length)
    h = p.u4.new_zeros(p.rows)
    starts = []
    for s, e, T, nC in _blocks(p.length, p.rows):
        starts.append(h)
        if e == s:
            continue
        dt, ut, Bt, Ct, dtu = p.block(s, e, T, nC)
        log_a = p.log_decays(dt)
        x = dtu.unsqueeze(3) * Bt.unsqueeze(2)  # (b, g, dg, N, T, nC)
        _, H = _scan_block(log_a.view(-1, T, nC), x.view(-1, T, nC), h, reverse=False)
        h = H[nC]
        # y = sum_n C h: (b, g, dg, N, T, nC) -> (b, g, dg, T, nC)
        yb = _sum_state(x.mul_(Ct.unsqueeze(2)), 3)
        _from_block(yb, y, s, e)
    y = y.view(p.batch, p.dim, p.length)
    u = p.u4.view(p.batch, p.dim, p.length)
    if inputs.D is not None:
        y = y.addcmul_(u, inputs.D.to(p.dtype)[:, None])
    if inputs.z is not None:
        y = y * F.silu(inputs.z.to(p.dtype))
    last = h.view(p.batch, p.dim, p.n_state)
    states = torch.stack(starts).view(-1, p.batch, p.dim, p.n_state)
    return y, last, (states, )


def torch_backward(inputs: ScanInputs, saved: Tuple[Tensor, ...], delta_softplus: bool,
                   dout: Tensor, dlast: Optional[Tensor]) -> Grads:
    """Backward of the ``torch`` backend (see the module docstring)."""
    p = _Prepared(inputs, delta_softplus)
    (starts, ) = saved
    b, g, dg, N, L = p.batch, p.groups, p.dg, p.n_state, p.length
    u = p.u4.view(b, p.dim, L)
    D = None if inputs.D is None else inputs.D.to(p.dtype)
    z = None if inputs.z is None else inputs.z.to(p.dtype)
    dy = dout if z is None else dout * F.silu(z)  # gradient of y + D u
    dy4 = dy.reshape(b, g, dg, L)
    y = u.new_empty(b, g, dg, L) if z is not None else None

    ddelta = u.new_empty(b, g, dg, L)
    du = u.new_empty(b, g, dg, L)
    dB = u.new_empty(b, g, N, L)
    dC = u.new_empty(b, g, N, L)
    dA = u.new_zeros(g, dg, N)
    carry = u.new_zeros(p.rows) if dlast is None else dlast.reshape(-1).clone()
    log_a_first = u.new_zeros(p.rows)  # log-decay at the first position of the block to the right

    blocks = _blocks(L, p.rows)
    for i in range(len(blocks) - 1, -1, -1):
        s, e, T, nC = blocks[i]
        if e == s:
            continue
        dt, ut, Bt, Ct, dtu = p.block(s, e, T, nC)
        log_a = p.log_decays(dt).view(-1, T, nC)
        # log-decays shifted by one step: log_a_next[t] = log_a[t + 1]
        log_a_next = torch.empty_like(log_a)
        log_a_next[:, :-1] = log_a[:, 1:]
        log_a_next[:, -1, :-1] = log_a[:, 0, 1:]
        log_a_next[:, -1, -1] = log_a_first
        log_a_first = log_a[:, 0, 0].clone()
        # Recompute the states of the block.
        h6 = dtu.unsqueeze(3) * Bt.unsqueeze(2)  # (b, g, dg, N, T, nC)
        h = h6.view(-1, T, nC)
        a, H = _scan_block(log_a, h, starts[i].reshape(-1), reverse=False)
        h_prev = torch.empty_like(h)
        h_prev[:, 1:] = h[:, :-1]
        h_prev[:, 0] = H[:-1].t()
        dyt = _to_block(dy4, s, e, T, nC)  # (b, g, dg, T, nC)
        if y is not None:
            _from_block(_sum_state(h6 * Ct.unsqueeze(2), 3), y, s, e)
        # Adjoint: q[t] = C[t] dy[t] + a[t+1] q[t+1].
        q6 = Ct.unsqueeze(2) * dyt.unsqueeze(3)
        q = q6.view(-1, T, nC)
        _, Q = _scan_block(log_a_next, q, carry, reverse=True)
        carry = Q[0]
        # d(delta * A) at t: q[t] * a[t] * h[t-1]
        w6 = h_prev.mul_(a).mul_(q).view_as(q6)
        dA += (w6 * dt.unsqueeze(3)).sum((0, 4, 5))
        qB = _sum_state(q6 * Bt.unsqueeze(2), 3)  # (b, g, dg, T, nC)
        wA = _sum_state(w6 * p.A6, 3)
        _from_block(wA.addcmul_(qB, ut), ddelta, s, e)
        _from_block(qB.mul_(dt), du, s, e)
        _from_block((q6 * dtu.unsqueeze(3)).sum(2), dB, s, e)  # (b, g, N, T, nC)
        _from_block((h6 * dyt.unsqueeze(3)).sum(2), dC, s, e)

    ddelta = ddelta.view(b, p.dim, L)
    du = du.view(b, p.dim, L)
    dD = dz = None
    if D is not None:
        dD = (dy * u).sum((0, 2))
        du.addcmul_(dy, D[:, None])
    if z is not None:
        y = y.view(b, p.dim, L)
        if D is not None:
            y = y.addcmul_(u, D[:, None])
        sig = torch.sigmoid(z)
        dz = dout * y * sig * (1 + z * (1 - sig))
    if delta_softplus:
        ddelta = ddelta * torch.sigmoid(p.delta_raw)
    dbias = None if inputs.delta_bias is None else ddelta.sum((0, 2))
    return du, ddelta, dA.view(p.dim, N), dB, dC, dD, dz, dbias


register_backend(
    Backend('torch', probe=lambda: None, supports=lambda device: True, forward=torch_forward,
            backward=torch_backward, priority={ANY_DEVICE: 0}))  # the fallback everywhere
