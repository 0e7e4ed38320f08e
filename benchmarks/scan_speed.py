#!/usr/bin/env python
"""Selective-scan backends side by side in one process, against the sequential loop.

Cases (float32, batch 1, with D, delta_bias and softplus as in VMamba):

- VMamba-T stage 1 at 512x512: the 4 directions folded into dim (4 x 96 = 384, groups 4),
  N 1, L 128 x 128 = 16384;
- d_state 16 (vanilla VMamba): dim 384, groups 4, N 16, L 4096.

For every backend available on the device: median forward and forward+backward time, peak memory
of forward+backward (CUDA: allocator peak; CPU: sampled resident-set growth), the speed-up over
the ``reference`` backend (the float32 sequential Python loop) and the forward time over the
memory-traffic floor ``4 (3 dim L + 2 groups N L)`` bytes divided by the copy bandwidth measured
here (``y.copy_(x)`` on 256 MiB: read + write bytes per second). The reference loop is timed on
its first ``--ref-steps`` steps and scaled linearly to L (it is linear in L), which the table
marks with ``*``.

Then the whole backbones: VMamba-T (SS2D, default scan backend) vs MambaOut-T (Gated CNN), random
weights, batch 1, forward (no grad) at 512x512 and 800x1280, median milliseconds, peak memory
and the ratio VMamba-T / MambaOut-T (> 1 means the SSM backbone is slower).

    python benchmarks/scan_speed.py [--threads N] [--repeat 5] [--quick] [--device cpu|cuda]
                                    [--skip-backbones]
"""
import argparse
import ctypes
import os
import threading
import time

import torch
from common import environment, markdown_table, median_seconds, peak_memory_mb, set_threads

from mambaout_dense.ops import available_backends, get_default_backend, selective_scan

BACKENDS = ('reference', 'torch', 'cpu', 'triton', 'mamba_ssm')


def cases(quick: bool):
    if quick:
        return [('VMamba-T s1 @256 (N=1)', 1, 384, 4096, 1, 4),
                ('d_state 16', 1, 384, 1024, 16, 4)]
    return [('VMamba-T s1 @512 (N=1)', 1, 384, 16384, 1, 4),
            ('d_state 16', 1, 384, 4096, 16, 4)]


def make_inputs(batch, dim, length, n_state, groups, device):
    g = torch.Generator().manual_seed(0)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    return dict(u=randn(batch, dim, length), delta=randn(batch, dim, length, scale=0.5) - 2,
                A=-torch.rand(dim, n_state, generator=g).to(device) * 8,
                B=randn(batch, groups, n_state, length), C=randn(batch, groups, n_state, length),
                D=randn(dim), delta_bias=randn(dim, scale=0.1))


def copy_bandwidth(device: str, repeat: int) -> float:
    """Bytes per second of a large copy (bytes read + bytes written)."""
    x = torch.randn(1 << 26, device=device)
    y = torch.empty_like(x)
    seconds = median_seconds(lambda: y.copy_(x), device, warmup=2, repeat=max(repeat, 5))
    return 2 * x.numel() * 4 / seconds


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def cpu_peak_memory_mb(fn) -> float:
    """Peak resident-set growth during one ``fn()``, sampled every 0.5 ms in a thread.

    Measured in this process: ``common.peak_memory_mb`` forks, and a forked child hangs in its
    first OpenMP parallel region once the parent has used the thread pool.
    """
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)  # give freed heap back so that growth shows
    except OSError:
        pass
    base = peak = _rss_bytes()
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(5e-4)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return (max(peak, _rss_bytes()) - base) / 2**20


def memory_mb(fn, device: str) -> float:
    """Peak memory of one ``fn()``: CUDA's allocator peak, or sampled RSS growth on the CPU."""
    if device.startswith('cuda'):
        return peak_memory_mb(fn, device)
    return cpu_peak_memory_mb(fn)


def bench_backend(backend, x, device, repeat):
    leaves = {k: v.clone().requires_grad_() for k, v in x.items()}
    dout = torch.randn_like(x['u'])

    def forward():
        with torch.no_grad():
            selective_scan(**x, delta_softplus=True, backend=backend)

    def forward_backward():
        for v in leaves.values():
            v.grad = None
        out = selective_scan(**leaves, delta_softplus=True, backend=backend)
        out.backward(dout)

    fwd = median_seconds(forward, device, repeat=repeat)
    fwd_bwd = median_seconds(forward_backward, device, repeat=repeat)
    return fwd, fwd_bwd, memory_mb(forward_backward, device)


def backbone_rows(device: str, repeat: int, quick: bool):
    """VMamba-T vs MambaOut-T forward time and memory at dense-prediction inputs."""
    from mambaout_dense.models import MambaOut, VMamba
    torch.manual_seed(0)
    models = {'VMamba-T': VMamba('tiny').to(device).eval(),
              'MambaOut-T': MambaOut('tiny').to(device).eval()}
    shapes = [(256, 256), (256, 384)] if quick else [(512, 512), (800, 1280)]
    rows = []
    for hw in shapes:
        x = torch.randn(1, 3, *hw, device=device)
        row = {'input': f'{hw[0]}x{hw[1]}'}
        for name, model in models.items():
            def forward(model=model):
                with torch.no_grad():
                    model(x)
            row[f'{name} ms'] = median_seconds(forward, device, repeat=repeat) * 1e3
            row[f'{name} MiB'] = memory_mb(forward, device)
        row['time ratio (VMamba/MambaOut)'] = row['VMamba-T ms'] / row['MambaOut-T ms']
        row['memory ratio'] = row['VMamba-T MiB'] / max(row['MambaOut-T MiB'], 1e-9)
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--repeat', type=int, default=5, help='timed runs (median)')
    parser.add_argument('--quick', action='store_true', help='smaller L')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--ref-steps', type=int, default=1024,
                        help='steps of the reference loop actually timed')
    parser.add_argument('--skip-backbones', action='store_true',
                        help='only the scan op, not the VMamba-T vs MambaOut-T forward table')
    args = parser.parse_args()
    if args.threads:
        set_threads(args.threads)
    device = args.device
    backends = [b for b in BACKENDS if b in available_backends(device)]
    bandwidth = copy_bandwidth(device, args.repeat)
    rows = []
    for name, batch, dim, length, n_state, groups in cases(args.quick):
        x = make_inputs(batch, dim, length, n_state, groups, device)
        floor_s = 4 * (3 * dim * length + 2 * groups * n_state * length) / bandwidth
        results = {}
        for backend in backends:
            if backend == 'reference' and length > args.ref_steps:
                steps = args.ref_steps
                xs = {k: (v[..., :steps] if v.dim() >= 3 else v) for k, v in x.items()}
                fwd, fwd_bwd, mem = bench_backend(backend, xs, device, min(args.repeat, 3))
                scale = length / steps
                results[backend] = (fwd * scale, fwd_bwd * scale, mem * scale, '*')
            else:
                results[backend] = (*bench_backend(backend, x, device, args.repeat), '')
        ref_fwd, ref_fwd_bwd = results['reference'][:2]
        for backend, (fwd, fwd_bwd, mem, mark) in results.items():
            rows.append({
                'case': name,
                'shape (b, dim, L, N, groups)': f'({batch}, {dim}, {length}, {n_state}, {groups})',
                'backend': backend + mark,
                'fwd ms': fwd * 1e3,
                'fwd+bwd ms': fwd_bwd * 1e3,
                'peak MiB (fwd+bwd)': mem,
                'fwd speed-up': ref_fwd / fwd,
                'fwd+bwd speed-up': ref_fwd_bwd / fwd_bwd,
                'fwd x floor': fwd / floor_s,
            })
        rows.append({'case': name, 'backend': 'memory floor', 'fwd ms': floor_s * 1e3,
                     'fwd x floor': 1.0})
    print(f'# selective scan, {environment(device)}')
    print(f'copy bandwidth {bandwidth / 1e9:.1f} GB/s; default backend here: '
          f'{get_default_backend(device)}; * = reference timed on {args.ref_steps} steps and '
          'scaled to L\n')
    print(markdown_table(rows, list(rows[0])))
    if not args.skip_backbones:
        rows = backbone_rows(device, min(args.repeat, 3), args.quick)
        print(f'\n# backbone forward, batch 1, {environment(device)}\n')
        print(markdown_table(rows, list(rows[0])))


if __name__ == '__main__':
    main()
