#!/usr/bin/env python
"""Selective-scan backends side by side in one process, against the sequential loop.

The scan is the S6 recurrence of "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces" (Gu & Dao, arXiv:2312.00752) as "VMamba: Visual State Space Model" (Liu et al.,
arXiv:2401.10166) calls it. Cases (float32, batch 1, with D, delta_bias and softplus as in
VMamba):

- VMamba-T stage 1 at 512x512: the 4 directions folded into dim (4 x 96 = 384, groups 4),
  N 1, L 128 x 128 = 16384;
- d_state 16 (vanilla VMamba): dim 384, groups 4, N 16, L 4096.

For every backend of the registry available on the device (:func:`benchmark_backends`: a
backend that :func:`~mambaout_dense.ops.scan.register_backend` records appears here with no
other edit), with 1 and 2 threads on the CPU: median forward and
forward+backward time, peak memory of forward+backward (CUDA: allocator peak; CPU: sampled
resident-set growth), the speed-up over the ``reference`` backend (the float32 sequential Python
loop) and the forward time over the memory-traffic floor ``4 (3 dim L + 2 groups N L)`` bytes
divided by the copy bandwidth measured in the same run, with the same threads. The reference
loop is timed on its first ``--ref-steps`` steps and scaled linearly to L (it is linear in L),
which the table marks with ``*``.

Then the whole backbones: VMamba-T (SS2D, default scan backend) vs MambaOut-T (Gated CNN), random
weights, batch 1, forward (no grad) at 512x512 and 800x1280, median milliseconds, peak memory
and the ratio VMamba-T / MambaOut-T (> 1 means the SSM backbone is slower).

The default backend's targets (issue 13) are stated as met or missed with the numbers of this
run, and the results section ``speed-scan`` is rewritten (not with ``--quick`` or
``--no-results``). Timing, memory, bandwidth and the environment line come from
:mod:`mambaout_dense.analysis.measure`.

    python benchmarks/scan_speed.py [--threads 1 2] [--repeat 5] [--quick] [--device cpu|cuda]
                                    [--skip-backbones] [--no-results]
"""
import argparse
from typing import Dict, List, Tuple

import torch

from mambaout_dense.analysis.measure import (
    copy_bandwidth,
    device_name,
    environment,
    median_seconds,
    peak_memory_mb,
)
from mambaout_dense.analysis.tables import markdown_table
from mambaout_dense.ops import available_backends, get_default_backend, selective_scan
from mambaout_dense.ops.scan import registered_backends, unavailable_reason
from mambaout_dense.ops.scan_cpu import kernel_isa
from mambaout_dense.ops.scan_inputs import random_scan_inputs

RESULTS_SECTION = 'speed-scan'
#: Targets for the default backend: forward time over the memory floor at N = 1 (at most),
#: forward speed-up over the loop at N = 16 and forward+backward speed-up (at least).
FLOOR_TARGET, FWD_SPEEDUP_TARGET, FWD_BWD_SPEEDUP_TARGET = 4.0, 20.0, 10.0
SCAN_COLUMNS = ['case', 'backend', 'fwd ms', 'fwd+bwd ms', 'peak MiB (fwd+bwd)', 'fwd speed-up',
                'fwd+bwd speed-up', 'fwd x floor']

# (key, label, batch, dim, L, N, groups)
Case = Tuple[str, str, int, int, int, int, int]


def cases(quick: bool) -> List[Case]:
    if quick:
        return [('n1', 'VMamba-T s1 @256 (N=1)', 1, 384, 4096, 1, 4),
                ('n16', 'd_state 16', 1, 384, 1024, 16, 4)]
    return [('n1', 'VMamba-T s1 @512 (N=1)', 1, 384, 16384, 1, 4),
            ('n16', 'd_state 16', 1, 384, 4096, 16, 4)]


def benchmark_backends(device: str) -> List[str]:
    """The backends timed on ``device``: ``reference`` (the base of the speed-ups) first, then
    every other registered backend available there, best first."""
    return ['reference'] + [b for b in available_backends(device) if b != 'reference']


def unavailable_note(device: str) -> str:
    """The registered backends not timed on ``device``, each with the registry's reason."""
    timed = set(benchmark_backends(device))
    missing = [f'`{name}` ({unavailable_reason(name) or f"does not run on {device}"})'
               for name in registered_backends() if name not in timed]
    return 'not timed: ' + ', '.join(missing) if missing else 'every registered backend timed'


def make_inputs(batch, dim, length, n_state, groups, device):
    """Float32 inputs with small steps (delta shifted by -2 before softplus) and A in (-8, 0]."""
    return random_scan_inputs(batch, dim, length, n_state, groups, z=False, dtype=torch.float32,
                              device=device, delta_shift=-2.0, a_scale=8.0, bias_scale=0.1)


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
    return fwd, fwd_bwd, peak_memory_mb(forward_backward, device)


def scan_rows(device: str, backends: List[str], args) -> Tuple[List[Dict], float]:
    """One row per (case, backend) and a memory-floor row per case; the copy bandwidth."""
    bandwidth = copy_bandwidth(device, repeat=max(args.repeat, 5))
    rows = []
    for key, label, batch, dim, length, n_state, groups in cases(args.quick):
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
                'key': key,
                'backend_name': backend,
                'threads': torch.get_num_threads(),
                'case': label,
                'shape (b, dim, L, N, groups)': f'({batch}, {dim}, {length}, {n_state}, {groups})',
                'backend': backend + mark + (' (default)' if backend == args.default else ''),
                'fwd ms': fwd * 1e3,
                'fwd+bwd ms': fwd_bwd * 1e3,
                'peak MiB (fwd+bwd)': mem,
                'fwd speed-up': ref_fwd / fwd,
                'fwd+bwd speed-up': ref_fwd_bwd / fwd_bwd,
                'fwd x floor': fwd / floor_s,
            })
        rows.append({'key': key, 'threads': torch.get_num_threads(), 'case': label,
                     'backend': 'memory floor', 'fwd ms': floor_s * 1e3, 'fwd x floor': 1.0})
    return rows, bandwidth


def backbone_rows(device: str, repeat: int, quick: bool) -> List[Dict]:
    """VMamba-T vs MambaOut-T forward time and memory at dense-prediction inputs."""
    from mambaout_dense.models import MambaOut, VMamba
    torch.manual_seed(0)
    models = {'VMamba-T': VMamba('tiny').to(device).eval(),
              'MambaOut-T': MambaOut('tiny').to(device).eval()}
    shapes = [(256, 256), (256, 384)] if quick else [(512, 512), (800, 1280)]
    rows = []
    for hw in shapes:
        x = torch.randn(1, 3, *hw, device=device)
        row = {'threads': torch.get_num_threads(), 'input': f'{hw[0]}x{hw[1]}'}
        for name, model in models.items():
            def forward(model=model):
                with torch.no_grad():
                    model(x)
            row[f'{name} ms'] = median_seconds(forward, device, repeat=repeat) * 1e3
            row[f'{name} MiB'] = peak_memory_mb(forward, device)
        row['time ratio (VMamba/MambaOut)'] = row['VMamba-T ms'] / row['MambaOut-T ms']
        row['memory ratio'] = row['VMamba-T MiB'] / max(row['MambaOut-T MiB'], 1e-9)
        rows.append(row)
    return rows


def met(ok: bool) -> str:
    return 'met' if ok else 'missed'


def verdict(rows: List[Dict], default: str) -> List[str]:
    """The targets of the default backend, met or missed, with this run's numbers."""
    mine = [r for r in rows if r.get('backend_name') == default]
    if not mine:
        return [f'- No row of the default backend `{default}`: targets not evaluated.']

    def per_threads(key: str, column: str) -> List[Tuple[int, float]]:
        return [(r['threads'], r[column]) for r in mine if r['key'] == key]

    def numbers(pairs, fmt) -> str:
        return ', '.join(f'{fmt.format(v)} with {t} thread{"s" if t > 1 else ""}'
                         for t, v in pairs)

    floor = per_threads('n1', 'fwd x floor')
    fwd16 = per_threads('n16', 'fwd speed-up')
    fwd_bwd = per_threads('n1', 'fwd+bwd speed-up') + per_threads('n16', 'fwd+bwd speed-up')
    return [
        f'- Forward at N=1 <= {FLOOR_TARGET:g}x the memory floor: '
        f'{met(all(v <= FLOOR_TARGET for _, v in floor))} ({numbers(floor, "{:.2f}x")}).',
        f'- Forward at d_state 16 >= {FWD_SPEEDUP_TARGET:g}x the float32 loop: '
        f'{met(all(v >= FWD_SPEEDUP_TARGET for _, v in fwd16))} ({numbers(fwd16, "{:.1f}x")}).',
        f'- Forward+backward >= {FWD_BWD_SPEEDUP_TARGET:g}x the loop at N=1 and d_state 16: '
        f'{met(all(v >= FWD_BWD_SPEEDUP_TARGET for _, v in fwd_bwd))} (N=1: '
        f'{numbers(per_threads("n1", "fwd+bwd speed-up"), "{:.1f}x")}; d_state 16: '
        f'{numbers(per_threads("n16", "fwd+bwd speed-up"), "{:.1f}x")}).',
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2],
                        help='torch CPU thread counts, one table each (CPU only)')
    parser.add_argument('--repeat', type=int, default=5, help='timed runs (median)')
    parser.add_argument('--quick', action='store_true',
                        help='smaller L and inputs (smoke run; docs/results.md is not rewritten)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--ref-steps', type=int, default=1024,
                        help='steps of the reference loop actually timed')
    parser.add_argument('--skip-backbones', action='store_true',
                        help='only the scan op, not the VMamba-T vs MambaOut-T forward table')
    parser.add_argument('--no-results', action='store_true',
                        help='print only; do not rewrite the results section')
    args = parser.parse_args()
    device = args.device
    args.default = get_default_backend(device)
    backends = benchmark_backends(device)
    thread_counts = args.threads if device == 'cpu' else [torch.get_num_threads()]
    scans, backbones, bandwidths = [], [], []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        rows, bandwidth = scan_rows(device, backends, args)
        bandwidths.append((threads, bandwidth))
        scans.append(rows)
        print(f'# selective scan, {environment(device)}, '
              f'copy bandwidth {bandwidth / 1e9:.1f} GB/s\n')
        print(markdown_table(rows, SCAN_COLUMNS), flush=True)
        if not args.skip_backbones:
            backbones += backbone_rows(device, min(args.repeat, 3), args.quick)
            print(f'\n# backbone forward, batch 1, {environment(device)}\n')
            print(markdown_table(backbones[-2:]), flush=True)

    isa = kernel_isa() if device == 'cpu' else None
    env = (f'device: {device} ({device_name(device)}), torch {torch.__version__}, default '
           f'backend `{args.default}`' + (f' (compiled kernel: {isa})' if isa else '') +
           f'; {unavailable_note(device)}; copy bandwidth '
           + ', '.join(f'{b / 1e9:.1f} GB/s with {t} thread{"s" if t > 1 else ""}'
                       for t, b in bandwidths))
    lines = ['### Selective scan (`benchmarks/scan_speed.py`)', '',
             'Backends side by side in one process. Reference = float32 sequential loop (`*`: '
             f'timed on {args.ref_steps} steps, scaled to L); speed-ups are over it; "fwd x '
             'floor" is the forward time over the memory-traffic floor 4 (3 dim L + 2 groups N '
             'L) bytes / copy bandwidth of the same run. ' + env + '.', '']
    for threads, rows in zip(thread_counts, scans):
        lines += [f'{threads} thread{"s" if threads > 1 else ""}:', '',
                  markdown_table(rows, SCAN_COLUMNS), '']
    lines += ['Targets of the default backend:', '',
              *verdict([r for rows in scans for r in rows], args.default)]
    if backbones:
        lines += ['', '### Backbones: VMamba-T vs MambaOut-T forward (`benchmarks/scan_speed.py`)',
                  '', f'Random weights, batch 1, no grad, default scan backend (`{args.default}`):',
                  '', markdown_table(backbones)]
    text = '\n'.join(lines)
    print('\n' + text)
    if not args.no_results and not args.quick:
        from common import publish
        publish(RESULTS_SECTION, text)


if __name__ == '__main__':
    main()
