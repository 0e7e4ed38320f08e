#!/usr/bin/env python
"""MambaOut-T (ours) vs timm's ``mambaout_tiny``, same weights, side by side in one process.

Forward at 800x1280 and forward+backward at 512x512, batch 1; CPU with 1 and 2 threads, and
CUDA when present. Prints median milliseconds, peak memory and the ratio timm/ours (> 1 means
ours is faster).

    python benchmarks/backbone_speed.py [--repeat 5] [--quick]
"""
import argparse

import timm
import torch
from common import environment, markdown_table, median_seconds, peak_memory_mb

from mambaout_dense.checkpoint.mambaout import convert_mambaout
from mambaout_dense.models import MambaOut


def build_pair(device: str):
    torch.manual_seed(0)
    reference = timm.create_model('mambaout_tiny', pretrained=False).to(device)
    ours = MambaOut('tiny').to(device)
    state, _ = convert_mambaout(reference.state_dict())
    ours.load_state_dict(state, strict=False)
    return ours, reference


def ours_forward(model, x):
    return model.forward_stages(x)  # the four stage maps (no output norms, like timm)


def timm_forward(model, x):
    return model.forward_intermediates(x, indices=4, intermediates_only=True)


def cases(quick: bool):
    if quick:
        return [('forward', (256, 384), False), ('forward+backward', (256, 256), True)]
    return [('forward', (800, 1280), False), ('forward+backward', (512, 512), True)]


def run_case(ours, ref, mode, hw, backward, device, repeat):
    x = torch.randn(1, 3, *hw, device=device)

    def make(model, fwd):
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

    row = dict(mode=mode, input=f'{hw[0]}x{hw[1]}', device=device,
               threads=torch.get_num_threads() if device == 'cpu' else '-')
    f_ours, f_ref = make(ours, ours_forward), make(ref, timm_forward)
    # interleave to share any machine drift
    t_ref = median_seconds(f_ref, device, repeat=repeat)
    t_ours = median_seconds(f_ours, device, repeat=repeat)
    row.update({'timm ms': t_ref * 1e3, 'ours ms': t_ours * 1e3,
                'speed ratio (timm/ours)': t_ref / t_ours})
    m_ref, m_ours = peak_memory_mb(f_ref, device), peak_memory_mb(f_ours, device)
    row.update({'timm MiB': m_ref, 'ours MiB': m_ours,
                'memory ratio (ours/timm)': m_ours / max(m_ref, 1e-9)})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--quick', action='store_true', help='small inputs (smoke run)')
    args = parser.parse_args()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        ours, ref = build_pair('cpu')
        for mode, hw, backward in cases(args.quick):
            rows.append(run_case(ours, ref, mode, hw, backward, 'cpu', args.repeat))
        print(environment('cpu'))
    if torch.cuda.is_available():
        ours, ref = build_pair('cuda')
        for mode, hw, backward in cases(args.quick):
            rows.append(run_case(ours, ref, mode, hw, backward, 'cuda', args.repeat))
        print(environment('cuda'))
    columns = ['mode', 'input', 'device', 'threads', 'timm ms', 'ours ms',
               'speed ratio (timm/ours)', 'timm MiB', 'ours MiB', 'memory ratio (ours/timm)']
    print(markdown_table(rows, columns))


if __name__ == '__main__':
    main()
