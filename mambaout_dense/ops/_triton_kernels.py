"""Triton kernels of the ``triton`` selective-scan backend (see :mod:`.scan_triton`).

Imported only when that backend is first used, so that importing :mod:`mambaout_dense.ops` does
not import Triton (``TRITON_INTERPRET`` must be set before Triton is first imported).
"""
import triton
import triton.language as tl


@triton.jit
def _combine(a1, x1, a2, x2):
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _softplus(x):
    # log1p(exp(-|x|)) with log1p(y) = log(1 + y) * y / ((1 + y) - 1), exact for small y
    y = tl.exp(-tl.abs(x))
    w = 1.0 + y
    log1p = tl.where(w == 1.0, y, tl.log(w) * y / (w - 1.0))
    return tl.where(x > 20.0, x, tl.maximum(x, 0.0) + log1p)


@triton.jit
def _load_dt(delta_ptr, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(raw delta + bias, dt) with dt = 0 where masked."""
    raw = tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    return raw, tl.where(mask, dt, 0.0)


@triton.jit
def scan_fwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
                     last_ptr, states_ptr, dim, L, N, G, per_group, n_chunks,
                     HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                     SOFTPLUS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_L: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    offs_l = tl.arange(0, BLOCK_L)
    mask_d = offs_d < dim
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    g = (pid_d * BLOCK_D) // per_group
    rows = (pid_b * dim + offs_d).to(tl.int64)  # (BLOCK_D,)
    bc_base = (pid_b * G + g).to(tl.int64) * N * L
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn,
                other=0.0).to(tl.float32)
    bias = tl.zeros((BLOCK_D, ), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    Dv = tl.zeros((BLOCK_D, ), tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    state_offs = (rows[:, None] * N + offs_n[None, :]) * n_chunks
    h = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    for k in range(0, n_chunks):
        tl.store(states_ptr + state_offs + k, h, mask=mask_dn)
        pos = k * BLOCK_L + offs_l
        mask_l = pos < L
        m2 = mask_d[:, None] & mask_l[None, :]
        offs2 = rows[:, None] * L + pos[None, :]
        u = tl.load(u_ptr + offs2, mask=m2, other=0.0).to(tl.float32)
        _, dt = _load_dt(delta_ptr, offs2, m2, bias, HAS_BIAS, SOFTPLUS)
        mnl = mask_n[:, None] & mask_l[None, :]
        bc_offs = bc_base + offs_n[:, None] * L + pos[None, :]
        Bc = tl.load(B_ptr + bc_offs, mask=mnl, other=0.0).to(tl.float32)  # (BN, BL)
        Cc = tl.load(C_ptr + bc_offs, mask=mnl, other=0.0).to(tl.float32)
        a = tl.exp(dt[:, None, :] * A[:, :, None])  # (BD, BN, BL)
        x = (dt * u)[:, None, :] * Bc[None, :, :]
        a_s, x_s = tl.associative_scan((a, x), 2, _combine)
        hs = x_s + a_s * h[:, :, None]
        y = tl.sum(hs * Cc[None, :, :], axis=1)  # (BD, BL)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            z = tl.load(z_ptr + offs2, mask=m2, other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(out_ptr + offs2, y, mask=m2)
        h = tl.sum(tl.where((offs_l == BLOCK_L - 1)[None, None, :], hs, 0.0), axis=2)
    tl.store(last_ptr + rows[:, None] * N + offs_n[None, :], h, mask=mask_dn)


@triton.jit
def scan_bwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr,
                     dlast_ptr, states_ptr, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr,
                     dD_ptr, dbias_ptr, dim, L, N, G, per_group, n_chunks, n_dblocks,
                     HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                     SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    offs_l = tl.arange(0, BLOCK_L)
    mask_d = offs_d < dim
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    g = (pid_d * BLOCK_D) // per_group
    rows = (pid_b * dim + offs_d).to(tl.int64)
    bc_base = (pid_b * G + g).to(tl.int64) * N * L
    # dB/dC partial sums of this program: (batch, n_dblocks, N, L)
    dbc_base = (pid_b * n_dblocks + pid_d).to(tl.int64) * N * L
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn,
                other=0.0).to(tl.float32)
    bias = tl.zeros((BLOCK_D, ), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    Dv = tl.zeros((BLOCK_D, ), tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    dn_offs = rows[:, None] * N + offs_n[None, :]
    q_next = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)  # q at the start of the next chunk
    if HAS_DLAST:
        q_next = tl.load(dlast_ptr + dn_offs, mask=mask_dn, other=0.0).to(tl.float32)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    dD_acc = tl.zeros((BLOCK_D, ), tl.float32)
    dbias_acc = tl.zeros((BLOCK_D, ), tl.float32)
    for kk in range(0, n_chunks):
        k = n_chunks - 1 - kk
        pos = k * BLOCK_L + offs_l
        mask_l = pos < L
        m2 = mask_d[:, None] & mask_l[None, :]
        mnl = mask_n[:, None] & mask_l[None, :]
        offs2 = rows[:, None] * L + pos[None, :]
        bc_offs = bc_base + offs_n[:, None] * L + pos[None, :]
        u = tl.load(u_ptr + offs2, mask=m2, other=0.0).to(tl.float32)
        raw, dt = _load_dt(delta_ptr, offs2, m2, bias, HAS_BIAS, SOFTPLUS)
        Bc = tl.load(B_ptr + bc_offs, mask=mnl, other=0.0).to(tl.float32)
        Cc = tl.load(C_ptr + bc_offs, mask=mnl, other=0.0).to(tl.float32)
        a = tl.exp(dt[:, None, :] * A[:, :, None])
        x = (dt * u)[:, None, :] * Bc[None, :, :]
        # h[t-1]: scan of the sequence shifted by one, from the state entering the chunk.
        mask_p = (offs_l >= 1) & (pos - 1 < L)
        mp2 = mask_d[:, None] & mask_p[None, :]
        u_p = tl.load(u_ptr + offs2 - 1, mask=mp2, other=0.0).to(tl.float32)
        _, dt_p = _load_dt(delta_ptr, offs2 - 1, mp2, bias, HAS_BIAS, SOFTPLUS)
        B_p = tl.load(B_ptr + bc_offs - 1, mask=mask_n[:, None] & mask_p[None, :],
                      other=0.0).to(tl.float32)
        a_p = tl.exp(dt_p[:, None, :] * A[:, :, None])
        x_p = (dt_p * u_p)[:, None, :] * B_p[None, :, :]
        ap_s, xp_s = tl.associative_scan((a_p, x_p), 2, _combine)
        h0 = tl.load(states_ptr + dn_offs * n_chunks + k, mask=mask_dn, other=0.0)
        h_prev = xp_s + ap_s * h0[:, :, None]
        hs = a * h_prev + x
        # Gradient of y + D u.
        dout = tl.load(dout_ptr + offs2, mask=m2, other=0.0).to(tl.float32)
        dy = dout
        if HAS_Z:
            z = tl.load(z_ptr + offs2, mask=m2, other=0.0).to(tl.float32)
            sig = tl.sigmoid(z)
            dy = dout * z * sig
            y = tl.sum(hs * Cc[None, :, :], axis=1) + Dv[:, None] * u
            dz = dout * y * sig * (1.0 + z * (1.0 - sig))
            tl.store(dz_ptr + offs2, dz, mask=m2)
        # Adjoint q[t] = C[t] dy[t] + a[t+1] q[t+1], a[L] = 1.
        mask_n1 = pos + 1 < L
        mn2 = mask_d[:, None] & mask_n1[None, :]
        _, dt_n = _load_dt(delta_ptr, offs2 + 1, mn2, bias, HAS_BIAS, SOFTPLUS)
        a_n = tl.exp(dt_n[:, None, :] * A[:, :, None])
        gq = Cc[None, :, :] * dy[:, None, :]
        aq_s, q_s = tl.associative_scan((a_n, gq), 2, _combine, reverse=True)
        q = q_s + aq_s * q_next[:, :, None]
        q_next = tl.sum(tl.where((offs_l == 0)[None, None, :], q, 0.0), axis=2)
        # d(dt A)[t] = q[t] a[t] h[t-1]
        w = q * a * h_prev
        qB = tl.sum(q * Bc[None, :, :], axis=1)  # (BD, BL)
        ddt = tl.sum(w * A[:, :, None], axis=1) + qB * u
        tl.store(du_ptr + offs2, qB * dt + Dv[:, None] * dy, mask=m2)
        dA_acc += tl.sum(w * dt[:, None, :], axis=2)
        dB = tl.sum(q * (dt * u)[:, None, :], axis=0)  # (BN, BL)
        dC = tl.sum(hs * dy[:, None, :], axis=0)
        dbc_offs = dbc_base + offs_n[:, None] * L + pos[None, :]
        tl.store(dB_ptr + dbc_offs, dB, mask=mnl)
        tl.store(dC_ptr + dbc_offs, dC, mask=mnl)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        ddt = tl.where(m2, ddt, 0.0)
        tl.store(ddelta_ptr + offs2, ddt, mask=m2)
        dbias_acc += tl.sum(ddt, axis=1)
        dD_acc += tl.sum(dy * u, axis=1)
    tl.store(dA_ptr + dn_offs, dA_acc, mask=mask_dn)
    tl.store(dD_ptr + rows, dD_acc, mask=mask_d)
    tl.store(dbias_ptr + rows, dbias_acc, mask=mask_d)
