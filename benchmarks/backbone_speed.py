#!/usr/bin/env python
"""MambaOut-T (ours) vs timm's ``mambaout_tiny``, same weights, side by side in one process.

Forward at 800x1280 and forward+backward at 512x512, batch 1; CPU with 1 and 2 threads, and
CUDA when present. Prints median milliseconds, peak memory, the ratio timm/ours (> 1 means ours
is faster), the largest difference between the two models' stage outputs, and ours' forward
FLOP rate against the fp32 GEMM rate of this machine measured in the same run. Rewrites the
results section ``speed-backbone`` with every target stated as met or missed (computed here).

Both sides run their plain eager forward; ``--compile`` adds rows for ours under
``torch.compile`` (the opt-in of mmengine's ``compile`` config key), with the compile time.

    python benchmarks/backbone_speed.py [--repeat 5] [--threads 1 2] [--quick] [--compile]
"""
import argparse
import time

import timm
import torch
from common import (
    environment,
    markdown_table,
    median_seconds,
    peak_memory_mb,
    publish,
)

from mambaout_dense.analysis.flops import module_flops
from mambaout_dense.analysis.measure import gemm_flops, interleaved_median_seconds
from mambaout_dense.checkpoint.mambaout import convert_mambaout
from mambaout_dense.models import MambaOut

#: Targets of issue 13: speed ratio timm/ours, memory ratio ours/timm, share of the GEMM rate.
SPEED_TARGET, MEMORY_TARGET, GEMM_SHARE_TARGET, MAX_REL_DIFF = 1.1, 1.0, 0.6, 1e-5


def build_pair(device: str):
    torch.manual_seed(0)
    reference = timm.create_model('mambaout_tiny', pretrained=False).to(device)
    ours = MambaOut('tiny').to(device)
    state, _ = convert_mambaout(reference.state_dict())
    ours.load_state_dict(state, strict=False)
    return ours, reference


def ours_forward(model, x):
    return model.forward_stages(x)  # the four stage maps, NCHW, no output norms (like timm)


def timm_forward(model, x):
    return model.forward_intermediates(x, indices=4, intermediates_only=True)


def cases(quick: bool):
    if quick:
        return [('forward', (256, 384), False), ('forward+backward', (256, 256), True)]
    return [('forward', (800, 1280), False), ('forward+backward', (512, 512), True)]


def max_relative_difference(ours, ref, x) -> float:
    """max |ours - timm| / max |timm| over the four stage outputs (eval, no grad)."""
    ours.eval()
    ref.eval()
    with torch.no_grad():
        pairs = zip(ours_forward(ours, x), timm_forward(ref, x))
        return max(float((a - b).abs().max() / b.abs().max()) for a, b in pairs)


def make_step(model, fwd, x, backward):
    def step():
        if backward:
            model.train()
            model.zero_grad(set_to_none=True)
            outs = fwd(model, x)
            sum(o.float().mean() for o in outs).backward()
        else:
            model.eval()
            with torch.no_grad():
                fwd(model, x)
    return step


def run_case(ours, ref, mode, hw, backward, device, repeat, flops=None, gemm=None):
    x = torch.randn(1, 3, *hw, device=device)
    row = dict(mode=mode, input=f'{hw[0]}x{hw[1]}', device=device,
               threads=torch.get_num_threads() if device == 'cpu' else '-')
    f_ours, f_ref = make_step(ours, ours_forward, x, backward), make_step(ref, timm_forward,
                                                                          x, backward)
    times = interleaved_median_seconds({'timm': f_ref, 'ours': f_ours}, device, repeat=repeat)
    t_ref, t_ours = times['timm'], times['ours']
    row.update({'timm ms': t_ref * 1e3, 'ours ms': t_ours * 1e3,
                'speed ratio (timm/ours)': t_ref / t_ours})
    m_ref, m_ours = peak_memory_mb(f_ref, device), peak_memory_mb(f_ours, device)
    row.update({'timm MiB': m_ref, 'ours MiB': m_ours,
                'memory ratio (ours/timm)': m_ours / max(m_ref, 1e-9),
                'max rel. diff': max_relative_difference(ours, ref, x)})
    if flops is not None and not backward:
        rate = flops / t_ours
        row.update({'GFLOP/s (ours)': rate / 1e9, 'GEMM GFLOP/s': gemm / 1e9,
                    'share of GEMM': rate / gemm})
    return row


def compiled_row(ours, mode, hw, backward, device, repeat):
    """Ours under torch.compile (default inductor): steady-state time and cold compile time.

    Dynamo's caches are reset and inductor's on-disk graph cache is off (see :func:`main`), so
    ``compile s`` is what a first run pays, not a cache hit of an earlier row.
    """
    torch._dynamo.reset()
    # compile the function that is timed: ``torch.compile(module)`` compiles ``__call__`` only,
    # and ours_forward calls ``forward_stages``
    compiled = torch.compile(ours.forward_stages)
    x = torch.randn(1, 3, *hw, device=device)
    step = make_step(ours, lambda model, inp: compiled(inp), x, backward)
    start = time.perf_counter()
    step()  # compiles
    compile_s = time.perf_counter() - start
    t = median_seconds(step, device, repeat=repeat)
    return {'mode': f'{mode} (torch.compile)', 'input': f'{hw[0]}x{hw[1]}', 'device': device,
            'threads': torch.get_num_threads(), 'ours ms': t * 1e3, 'compile s': compile_s}


def verdict(rows) -> list:
    """One line per target, met or missed, with the numbers of this run."""
    lines = []
    eager = [r for r in rows if 'timm ms' in r]
    speed = [r['speed ratio (timm/ours)'] for r in eager]
    memory = [r['memory ratio (ours/timm)'] for r in eager]
    diff = max(r['max rel. diff'] for r in eager)
    met = lambda ok: 'met' if ok else '**missed**'  # noqa: E731
    lines.append(f'- Speed >= {SPEED_TARGET}x timm in every row: {met(min(speed) >= SPEED_TARGET)}'
                 f' (ratios {", ".join(f"{s:.2f}" for s in speed)}).')
    lines.append(f'- Memory <= {MEMORY_TARGET}x timm in every row: '
                 f'{met(max(memory) <= MEMORY_TARGET)} (ratios '
                 f'{", ".join(f"{m:.2f}" for m in memory)}).')
    lines.append(f'- Outputs equal within {MAX_REL_DIFF:g} (relative): {met(diff <= MAX_REL_DIFF)} '
                 f'(largest difference {diff:.1e}).')
    shares = [(r['threads'], r['share of GEMM']) for r in eager if 'share of GEMM' in r]
    two = [s for t, s in shares if t == 2]
    if two:
        lines.append(f'- Forward FLOP rate >= {GEMM_SHARE_TARGET:.0%} of the fp32 GEMM rate with 2 '
                     f'threads: {met(min(two) >= GEMM_SHARE_TARGET)} ('
                     + ', '.join(f'{s:.0%} with {t} thread(s)' for t, s in shares) + ').')
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--quick', action='store_true', help='small inputs (smoke run)')
    parser.add_argument('--compile', action='store_true',
                        help='also time ours under torch.compile (opt-in)')
    parser.add_argument('--no-results', action='store_true',
                        help='print only; do not rewrite the results section')
    args = parser.parse_args()
    if args.compile:  # cold compile times: no on-disk graph cache (see compiled_row)
        import torch._inductor.config
        torch._inductor.config.fx_graph_cache = False
    rows, envs = [], []
    for threads in args.threads:
        torch.set_num_threads(threads)
        ours, ref = build_pair('cpu')
        gemm = gemm_flops('cpu')
        for mode, hw, backward in cases(args.quick):
            flops = None if backward else module_flops(ours, torch.randn(1, 3, *hw))
            rows.append(run_case(ours, ref, mode, hw, backward, 'cpu', args.repeat, flops, gemm))
            print(rows[-1], flush=True)
            if args.compile:
                rows.append(compiled_row(ours, mode, hw, backward, 'cpu', args.repeat))
                print(rows[-1], flush=True)
        envs.append(environment('cpu'))
    if torch.cuda.is_available():
        ours, ref = build_pair('cuda')
        for mode, hw, backward in cases(args.quick):
            rows.append(run_case(ours, ref, mode, hw, backward, 'cuda', args.repeat))
        envs.append(environment('cuda'))
    columns = ['mode', 'input', 'device', 'threads', 'timm ms', 'ours ms',
               'speed ratio (timm/ours)', 'timm MiB', 'ours MiB', 'memory ratio (ours/timm)',
               'max rel. diff', 'GFLOP/s (ours)', 'GEMM GFLOP/s', 'share of GEMM', 'compile s']
    columns = [c for c in columns if any(c in r for r in rows)]
    table = markdown_table(rows, columns)
    text = '\n'.join([
        '### Backbone: MambaOut-T vs timm `mambaout_tiny` (`benchmarks/backbone_speed.py`)', '',
        f'Same weights, batch 1, one process, the two models timed in turns (median of '
        f'{args.repeat} rounds); speed ratio > 1 means ours is faster; memory is the '
        'peak growth during one call; "share of GEMM" is ours\' forward FLOP rate (FLOPs as '
        'counted by `tools/analysis/get_flops.py`) over the fp32 matrix-multiply rate measured '
        'in the same run. ' + '; '.join(dict.fromkeys(envs)) + '.', '', table, '',
        *verdict(rows)])
    print(text)
    if not args.no_results and not args.quick:
        publish('speed-backbone', text)


if __name__ == '__main__':
    main()
