"""Presentation of the scaling measurements of :mod:`mambaout_dense.analysis.scaling`: the
log-log plot of latency and memory against tokens, and the markdown table of latencies with the
fitted growth exponents.
"""
import os
import os.path as osp
from typing import Any, Dict, Sequence

import numpy as np

from .scaling import fit_exponents

__all__ = ['plot_scaling', 'scaling_markdown']


def plot_scaling(rows: Sequence[Dict[str, Any]], path: str, title: str = '') -> str:
    """Log-log latency (top) and peak memory (bottom) against tokens L, one column per kind.

    Each panel marks L = 6D as a vertical line (D of its curves: the ViT-S width for backbones,
    the block width for single mixers). Devices are told apart by line style.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    kinds = [k for k in ('backbone', 'block') if any(r['kind'] == k for r in rows)]
    devices = sorted({r['device'] for r in rows})
    styles = {d: s for d, s in zip(devices, ('-', '--', ':', '-.'))}
    xlabels = {'backbone': 'tokens L at patch 16 (H/16 · W/16)',
               'block': 'tokens L on the stride-4 grid (H/4 · W/4)'}
    fig, axes = plt.subplots(2, max(1, len(kinds)), figsize=(6.5 * max(1, len(kinds)), 9),
                             squeeze=False)
    fits = {(f['device'], f['curve']): f['exponent'] for f in fit_exponents(rows)}
    for col, kind in enumerate(kinds):
        kind_rows = [r for r in rows if r['kind'] == kind]
        curves = list(dict.fromkeys(r['curve'] for r in kind_rows))
        width = kind_rows[0]['width']
        for row_i, (key, ylabel) in enumerate((('latency_ms', 'latency (ms)'),
                                               ('memory_mb', 'peak memory (MiB)'))):
            ax = axes[row_i][col]
            for ci, curve in enumerate(curves):
                for device in devices:
                    pts = sorted((r['tokens'], r[key]) for r in kind_rows
                                 if r['curve'] == curve and r['device'] == device
                                 and r['status'] == 'ok' and np.isfinite(r[key])
                                 and r[key] > 0)
                    if not pts:
                        continue
                    label = f'{curve} [{device}]' if len(devices) > 1 else curve
                    if key == 'latency_ms' and np.isfinite(fits.get((device, curve), np.nan)):
                        label += f', slope {fits[(device, curve)]:.2f}'
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], styles[device],
                            marker='o', color=f'C{ci}', label=label)
            ax.axvline(6 * width, color='k', linestyle=':', linewidth=1)
            ax.text(6 * width, 1.0, f' L = 6D = {6 * width}', transform=ax.get_xaxis_transform(),
                    va='top', ha='left', fontsize=8)
            ax.set_xscale('log')
            ax.set_yscale('log')
            ax.set_xlabel(xlabels[kind])
            ax.set_ylabel(ylabel)
            ax.set_title(('whole backbones' if kind == 'backbone' else
                          f'single token mixers, D = {width}') + f' — {ylabel.split(" (")[0]}')
            ax.grid(True, which='both', alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scaling_markdown(rows: Sequence[Dict[str, Any]], fits: Sequence[Dict[str, Any]]) -> str:
    """Markdown: latency (ms) per curve and size, then the fitted exponents."""
    sizes = list(dict.fromkeys((r['H'], r['W']) for r in rows))
    keys = list(dict.fromkeys((r['device'], r['curve']) for r in rows))
    lines = ['| device | curve | ' + ' | '.join(f'{h}×{w}' for h, w in sizes) +
             ' | growth exponent |', '|' + '---|' * (len(sizes) + 3)]
    exps = {(f['device'], f['curve']): f['exponent'] for f in fits}
    for device, curve in keys:
        cells = []
        for h, w in sizes:
            r = next((r for r in rows if r['device'] == device and r['curve'] == curve
                      and (r['H'], r['W']) == (h, w)), None)
            if r is None:
                cells.append('')
            elif r['status'] == 'ok':
                cells.append(f"{r['latency_ms']:.1f} ms (L={r['tokens']})")
            else:
                cells.append(f"{r['status']} (L={r['tokens']})")
        exp = exps.get((device, curve), float('nan'))
        lines.append(f'| {device} | {curve} | ' + ' | '.join(cells) +
                     f" | {'' if not np.isfinite(exp) else f'{exp:.2f}'} |")
    return '\n'.join(lines)
