"""Tables and plots of the long-range probe, from a results dict (the driver's results.json).

One table per axis (one variable changed, the others named in its heading), the paired gaps to
the Gated CNN, accuracy against cost, the shortcut axis, learning speed, and four plots. The
README section and docs/longrange/results.md are assembled from these by
``tools/analysis/report.py``.
"""
import math
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

from .settings import ProbeSettings
from .stats import fmt_acc, fmt_gap
from .verdict import (
    REFERENCE,
    Index,
    attention_cost_thresholds,
    cost_front,
    headline,
    replication,
    verdict,
)

__all__ = ['axis_tables', 'cost_table', 'learning_table', 'runs_table', 'replication_text',
           'render_markdown', 'plot_results']


def _field(ix: Index, m: str) -> str:
    r = ix.fields.get(m, math.inf)
    if m == 'gated_cnn_gap':
        return f'{ix.fields.get(REFERENCE, math.inf):g} + image mean'
    return 'global' if not math.isfinite(r) else f'{r:g}'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    return '\n'.join(lines + ['| ' + ' | '.join(r) + ' |' for r in rows])


def _axis(ix: Index, axis: str, settings: ProbeSettings) -> List[str]:
    pts = ix.points.get(axis, [])
    if not pts or not ix.mixers_at(pts):
        return []
    dim, grid, d, pairs = pts[0]
    if axis == 'd':
        cols = [(p, dd) for dd in settings.controls for p in pts[:1]] + [(p, p[2]) for p in pts]
        title = (f'**Axis d** — distance d changes; fixed D = {dim}, grid {grid}x{grid} (L = '
                 f'{grid * grid}, L/(6D) = {grid * grid / (6 * dim):.2f}). d = '
                 f'{", ".join(map(str, settings.controls))} are the controls of every run.')
        names = [f'd = {dd}' + (' (control)' if dd in settings.controls else '')
                 for _, dd in cols]
    elif axis == 'L':
        cols = [(p, p[2]) for p in pts]
        title = (f'**Axis L** — grid (so L) changes; fixed D = {dim}, d = {d}.')
        names = [f'L = {p[1] ** 2} ({p[1]}²), L/(6D) = {p[1] ** 2 / (6 * p[0]):.2f}'
                 for p, _ in cols]
    else:
        cols = [(p, p[2]) for p in pts]
        title = (f'**Axis D** — width D changes (parameters re-matched at each D); fixed grid '
                 f'{grid}x{grid} (L = {grid * grid}), d = {d}.')
        names = [f'D = {p[0]}, L/(6D) = {p[1] ** 2 / (6 * p[0]):.2f}' for p, _ in cols]
    rows = []
    for m in ix.mixers_at(pts):
        cells = [m, _field(ix, m)]
        for p, dd in cols:
            row = ix.row(m, p)
            if row is None:
                cells.append('')
            elif dd != p[2]:  # a control: over all runs, so a run that failed it shows
                cells.append(f"{fmt_acc(row['controls_all'].get(str(dd)))} (all "
                             f"{row['runs']})")
            else:
                cells.append(f"{fmt_acc(row['acc'])} ({row['learned']}/{row['runs']})")
        rows.append(cells)
    acc = _table(['mixer', 'field radius (tokens)'] + names, rows)
    gap_cols = [(i, p) for i, (p, dd) in enumerate(cols) if dd == p[2]]
    gap_rows = [[f'{m} − {REFERENCE}'] + [fmt_gap(ix.gap(m, p)) for _, p in gap_cols]
                for m in ix.mixers_at(pts) if m != REFERENCE]
    gaps = _table(['paired gap'] + [names[i] for i, _ in gap_cols], gap_rows) if gap_rows \
        else ''
    return [title, '', acc, '', gaps, '']


def factorial_table(ix: Index) -> List[str]:
    """The factorial axis: one row per (D, L, d), accuracy per mixer and SS2D's paired gap."""
    pts = ix.points.get('factorial', [])
    mixers = ix.mixers_at(pts)
    if not mixers:
        return []
    rows = []
    for p in sorted(pts):
        cells = [str(p[0]), str(p[1] ** 2), f'{p[1] ** 2 / (6 * p[0]):.2f}', str(p[2])]
        for m in mixers:
            r = ix.row(m, p)
            cells.append('' if r is None else f"{fmt_acc(r['acc'])} ({r['learned']}/{r['runs']})")
        cells.append(fmt_gap(ix.gap('ss2d', p)))
        rows.append(cells)
    return ['**Factorial** — every width x grid x distance that fits:', '',
            _table(['D', 'L', 'L/(6D)', 'd'] + mixers + [f'ss2d − {REFERENCE}'], rows), '']


def axis_tables(ix: Index, settings: ProbeSettings) -> List[str]:
    """Markdown blocks of the d, L and D axes (accuracy (learned/runs) and paired gaps) and of
    the factorial axis when it was run."""
    out = []
    for axis in ('d', 'L', 'D'):
        out += _axis(ix, axis, settings)
    return out + factorial_table(ix)


def shortcut_table(ix: Index) -> str:
    """The shortcut axis: the single-cue task beside the two-pair task at the same cell."""
    rows = []
    for p in ix.points.get('shortcut', []):
        for task, q in (('single cue (1 marker per image)', p),
                        ('two pairs (this task)', (p[0], p[1], p[2], 2))):
            for m in ('gated_cnn', 'gated_cnn_gap'):
                r = ix.row(m, q)
                if r is not None:
                    rows.append([task, m, f'D {q[0]}, L {q[1] ** 2}, d {q[2]}',
                                 f"{fmt_acc(r['acc'])} ({r['learned']}/{r['runs']})"])
    return _table(['task', 'mixer', 'cell', 'accuracy at d'], rows) if rows else ''


def cost_table(ix: Index) -> str:
    """Accuracy against cost at every point of the L and d axes, with the Pareto front."""
    rows = []
    axes_of: Dict[tuple, List[str]] = {}
    for axis in ('L', 'd', 'D'):
        for p in ix.points.get(axis, []):
            axes_of.setdefault(p, []).append(axis)
    for p, axes in axes_of.items():
        fl, lat = set(cost_front(ix, p, 'flops')), set(cost_front(ix, p, 'latency_ms'))
        for m in ix.mixers:
            r, c = ix.row(m, p), ix.cost.get((m, p[0], p[1]))
            if r is None or c is None:
                continue
            front = ', '.join(k for k, s in (('FLOPs', fl), ('latency', lat)) if m in s)
            rows.append([', '.join(axes), f'D {p[0]}, L {p[1] ** 2}, d {p[2]}', m,
                         fmt_acc(r['acc']),
                         '' if c.get('flops') is None else f"{c['flops'] / 1e6:.1f}",
                         f"{c['latency_ms']:.2f}", f"{c['params']:,}", front])
    if not rows:
        return ''
    table = _table(['axes', 'cell', 'mixer', 'accuracy at d', 'MFLOPs / image',
                    'latency ms / image', 'params', 'on the front of'], rows)
    th = attention_cost_thresholds(ix)
    if th:
        table += '\n\n' + _table(
            ['D', "attention's L* (quadratic = linear FLOPs)", 'L* / D',
             'attention > SS2D FLOPs beyond L', 'attention > Gated CNN FLOPs beyond L'],
            [[str(t['dim']), f"{t['l_star']:.0f}", f"{t['l_star_over_d']:.1f}",
              f"{t.get('cross_ss2d', math.nan):.0f}", f"{t.get('cross_gated_cnn', math.nan):.0f}"]
             for t in th])
    return table


def learning_table(ix: Index) -> str:
    """Median iterations to reach the learned threshold at d, per mixer and point."""
    rows = []
    for (m, dim, grid, d, pairs), r in sorted(ix.rows.items()):
        it = r['iters_to_criterion']
        rows.append([m, f'D {dim}, L {grid * grid}, d {d}, {pairs} pair(s)',
                     'never' if it['median'] is None else f"{it['median']:.0f}",
                     f"{it['reached']}/{it['of']}"])
    return _table(['mixer', 'cell', 'median iterations to the threshold at d',
                   'learned runs that reached it'], rows)


def runs_table(res: Dict[str, Any]) -> str:
    """Every run: accuracy at each evaluated distance, learned flag, time, commit."""
    rows = []
    for r in sorted(res['records'], key=lambda r: r['cell']):
        accs = ', '.join(f'{d}: {a:.3f}' for d, a in r['acc_by_distance'].items())
        prov = r.get('provenance', {})
        rows.append([r['cell'], accs, 'yes' if r['learned'] else '**no**',
                     f"{r['train_s']:.0f}", (prov.get('commit') or '?')[:10]
                     + ('+dirty' if prov.get('dirty') else '')])
    return _table(['cell (mixer/D/grid/d/pairs/seed)', 'accuracy by distance', 'learned',
                   'train s', 'commit'], rows)


def replication_text(res: Dict[str, Any], rep: Dict[str, Any]) -> str:
    """Markdown of :func:`~.verdict.replication`: the verdict's readings under other seeds."""
    r = replication(res, rep)
    head = (f"Seeds {', '.join(map(str, r['seeds'][1]))} against "
            f"{', '.join(map(str, r['seeds'][0]))}: the one-line verdict is "
            f"{'the same' if r['same_headline'] else 'different'}; {r['cells']} cells: the same "
            f"chance reading in {r['same_chance']} of {r['cells']}, the same gap reading in "
            f"{r['same_gap']} of {r['gaps']}, each mean inside the other's 95% interval in "
            f"{r['within']} of {r['cells']}.")
    text = head + (' No reading differs.' if not r['differ'] else ' Readings that differ:\n\n'
                   + '\n'.join(f'- {x}' for x in r['differ']))
    if r['outside']:
        text += ('\n\nMeans outside the other run\'s interval:\n\n'
                 + '\n'.join(f'- {x}' for x in r['outside']))
    return text


def render_markdown(res: Dict[str, Any], rep: Optional[Dict[str, Any]] = None) -> str:
    """The results page of a results.json dict (settings, tables, verdict, every run), with the
    replication's readings when ``rep`` (the results of other seeds) is given."""
    settings = ProbeSettings.from_dict(res['settings'])
    ix = Index(res)
    plan = res['plan']
    parts = [f"Probe: {settings.depth} blocks of width D at one stage, {settings.patch}x"
             f"{settings.patch} patch stem; task: {plan.get('pairs', 2)} target-marker pairs per "
             f"image (clearance {settings.clearance}); {settings.iters} iterations of batch "
             f"{settings.batch} ({settings.control_fraction:g} at the controls d = "
             f"{', '.join(map(str, settings.controls))}, the rest at d), AdamW {settings.lr:g}; "
             f"{settings.eval_samples} held-out images per distance and seed; 'learned' = "
             f"accuracy >= {settings.learned_threshold:g} at every control. Seeds "
             f"{', '.join(map(str, plan['seeds']))}. {len(res['records'])} of "
             f"{res['cells_planned']} cells done.", '']
    if res.get('sessions'):
        parts += [_table(['command', 'cells trained', 'wall time'],
                         [[f"`{s['command']}`", str(s['cells_run']),
                           f"{s['wall_s'] / 60:.1f} min"] for s in res['sessions']]), '']
    if not ix.records:
        return '\n'.join(parts) + '\n'
    parts += ['Accuracy on held-out target tokens: mean ± std over learned seeds [95% '
              'interval] (learned/runs); chance 0.5. Gaps are paired by seed.', '']
    parts += axis_tables(ix, settings)
    sc = shortcut_table(ix)
    if sc:
        parts += ['**Shortcut axis**', '', sc, '']
    ct = cost_table(ix)
    if ct:
        parts += ['**Accuracy against cost** (latency: forward, batch 16, '
                  f"{res.get('cost_environment', '')})", '', ct, '']
    parts += ['**Verdict** (computed from the numbers above):', '',
              f'**In one line:** {headline(res, settings)}', '']
    parts += [f'- {line}' for line in verdict(res, settings)] + ['']
    if rep is not None:
        parts += ['**Replication** (the same commands with other seeds, other work dir):', '',
                  replication_text(res, rep), '']
    parts += ['**Learning speed** (curve points every '
              f'{settings.curve_every} iterations on {settings.curve_samples} held-out images)',
              '', learning_table(ix), '', '**Every run**', '', runs_table(res), '']
    return '\n'.join(parts)


def _errorbar(ax, xs, stats, **kw) -> None:
    import numpy as np
    ys = [s['mean'] for s in stats]
    lo = [s['mean'] - s['low'] for s in stats]
    hi = [s['high'] - s['mean'] for s in stats]
    ax.errorbar(np.asarray(xs, float), ys, yerr=[lo, hi], marker='o', capsize=3, **kw)


def plot_results(res: Dict[str, Any], out_dir: str) -> List[str]:
    """accuracy_vs_{distance,length,width,cost}.png (the axes present); returns the paths.

    Points: mean over learned seeds; bars: the 95% interval of :mod:`.stats`.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    settings = ProbeSettings.from_dict(res['settings'])
    ix = Index(res)
    os.makedirs(out_dir, exist_ok=True)
    paths = []

    def save(fig, ax, name, **labels):
        ax.axhline(0.5, ls=':', c='k', lw=1)
        ax.set(ylim=(0.35, 1.03), ylabel='target-token accuracy', **labels)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(osp.join(out_dir, name))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    pts = ix.points.get('d', [])
    if pts and ix.mixers_at(pts):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ds = sorted(set(settings.controls) | {p[2] for p in pts})
        for i, m in enumerate(ix.mixers_at(pts)):
            xs, st = [], []
            for d in ds:
                p = next((q for q in pts if q[2] == d), pts[0])
                row = ix.row(m, p)
                s = None if row is None else row['acc_by_distance'].get(str(d))
                if s and s['n']:
                    xs.append(d + 0.08 * (i - 2.5))
                    st.append(s)
            if xs:
                _errorbar(ax, xs, st, label=m)
        for m in ('gated_cnn', 'gated_cnn_dilated'):
            r = ix.fields.get(m, math.inf)
            if math.isfinite(r):
                ax.axvline(r, ls='--', c='grey', lw=0.8)
                ax.text(r, 0.37, f' {m} radius', color='grey', fontsize=7, rotation=90)
        save(fig, ax, 'accuracy_vs_distance.png', xlabel='dependency distance d (tokens)',
             title=f'axis d: D = {pts[0][0]}, L = {pts[0][1] ** 2}')
    for axis, name, xlabel, xof in (
            ('L', 'accuracy_vs_length.png', 'tokens L (log)', lambda p: p[1] ** 2),
            ('D', 'accuracy_vs_width.png', 'width D', lambda p: p[0])):
        pts = ix.points.get(axis, [])
        if not pts or not ix.mixers_at(pts):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, m in enumerate(ix.mixers_at(pts)):
            xy = [(xof(p) * (1 + 0.01 * (i - 2.5)), ix.row(m, p)['acc']) for p in pts
                  if ix.row(m, p) and ix.row(m, p)['acc']['n']]
            if xy:
                _errorbar(ax, [x for x, _ in xy], [s for _, s in xy], label=m)
        if axis == 'L':
            ax.axvline(6 * pts[0][0], ls='--', c='grey', lw=1)
            ax.text(6 * pts[0][0], 0.37, ' L = 6D', color='grey', fontsize=8)
            ax.set_xscale('log')
            ax.minorticks_off()
            ax.set_xticks([xof(p) for p in pts], [f'{xof(p)}' for p in pts])
        else:
            L = pts[0][1] ** 2
            ax.axvline(L / 6, ls='--', c='grey', lw=1)
            ax.text(L / 6, 0.37, ' L = 6D', color='grey', fontsize=8)
        save(fig, ax, name, xlabel=xlabel, title=f'axis {axis}: d = {pts[0][2]}')
    pts = ix.points.get('L', [])
    if pts and ix.cost:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        for key, ax, xlabel in (('flops', axes[0], 'MFLOPs per image (log)'),
                                ('latency_ms', axes[1], 'latency ms per image (log)')):
            for m in ix.mixers_at(pts):
                xy = [(ix.cost[(m, p[0], p[1])][key], ix.row(m, p)['acc'], p) for p in pts
                      if ix.row(m, p) and ix.row(m, p)['acc']['n'] and (m, p[0], p[1]) in ix.cost
                      and ix.cost[(m, p[0], p[1])].get(key) is not None]
                if not xy:
                    continue
                scale = 1e-6 if key == 'flops' else 1.0
                _errorbar(ax, [x * scale for x, _, _ in xy], [s for _, s, _ in xy], label=m)
            ax.set_xscale('log')
            ax.axhline(0.5, ls=':', c='k', lw=1)
            ax.set(xlabel=xlabel, ylim=(0.35, 1.03), ylabel='accuracy at d')
            ax.legend(fontsize=7)
        fig.suptitle(f'accuracy against cost as L grows ({", ".join(str(p[1] ** 2) for p in pts)}'
                     f'; D = {pts[0][0]}, d = {pts[0][2]})', fontsize=10)
        fig.tight_layout()
        paths.append(osp.join(out_dir, 'accuracy_vs_cost.png'))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
