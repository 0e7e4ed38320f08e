"""Tables and the verdict of the dense long-range arms, computed from the stored runs.

The statistics are those of the probe (:mod:`mambaout_dense.analysis.longrange.stats`, after
Bouthillier et al., arXiv 2103.03098): accuracies carry the wider of the t interval over seeds and
the Clopper-Pearson interval of the pooled held-out targets, gaps are paired by seed. A run is
*learned* when its near group (the local control) reaches the threshold; a run that is not
learned is listed but never scored: it failed the task, so its far score says nothing about
range. Every verdict sentence is generated here from the numbers.

The shortcut baseline (:data:`.plan.BASELINES`) is gated and summarised like the backbones but
reported in a table and verdict lines of its own, beside its measured reach (:mod:`.reach`); it
is not in the backbone comparisons (gaps, orderings, cost ratios, ERFs).
"""
import math
from typing import Any, Dict, List, Optional, Sequence

from ..longrange.stats import (
    CHANCE,
    accuracy_stat,
    chance_reading,
    fmt_acc,
    fmt_gap,
    gap_reading,
    mean_std_ci,
    paired_gaps,
)
from .erf import erf_markdown_dense
from .plan import BACKBONES, BASELINE_ARMS, BASELINES

__all__ = ['apply_gate', 'summarise_dense', 'dense_gaps', 'dense_verdict', 'baseline_verdict',
           'dense_headline', 'render_dense_markdown']

#: The probe's mixer behind each backbone's long-sequence stages.
MIXER_OF = {'mambaout': 'Gated CNN', 'vmamba': 'SS2D', 'hybrid': 'SS2D in stages 1-2'}
#: What each shortcut baseline is (its config: configs/upernet_longrange_{name}_femto.py).
BASELINE_OF = {'local': 'MambaOut-Femto\'s stem and stage 1 (stride 4) under a UperNet head on '
                        'that one level with a global average pool (pool_scales=(1,)): it sees '
                        'image-level statistics and local context, not a far target\'s own marker'}
_EXTRA = {'upernet': ('mIoU', ), 'maskrcnn': ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'recall50')}


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def apply_gate(records: Sequence[Dict[str, Any]], threshold: float, min_recall: float = 0.5,
               val_interval: Optional[int] = None) -> List[Dict[str, Any]]:
    """Mark each record ``learned`` (near score >= threshold; Mask R-CNN also near recall >=
    ``min_recall``) and ``scored`` (learned, with a far score). Returns copies.

    ``iters_to_criterion`` and ``far_iters_to_criterion`` are recomputed from the curve at this
    threshold (the first curve point with the near / far score at it). With ``val_interval``,
    each curve point's iteration is taken up to the next multiple of it: runs stored before the
    runner read the validation step label a point with the last logged training iteration
    before it (at most one logger interval earlier).
    """
    out = []
    for r in records:
        r = dict(r)
        if val_interval:
            r['curve'] = [[int(math.ceil(it / val_interval) * val_interval), n, f]
                          for it, n, f in r.get('curve', [])]
        for key, col in (('iters_to_criterion', 1), ('far_iters_to_criterion', 2)):
            r[key] = next((int(p[0]) for p in r.get('curve', [])
                           if _finite(p[col]) and p[col] >= threshold), None)
        near = r['scores']['near']
        ok = _finite(r.get('acc_control')) and r['acc_control'] >= threshold
        if r['arm'] == 'maskrcnn':
            ok = ok and _finite(near.get('recall50')) and near['recall50'] >= min_recall
        r['learned'] = bool(ok)
        r['scored'] = bool(ok and _finite(r.get('acc')))
        out.append(r)
    return out


def summarise_dense(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per (backbone, size, far): runs, learned and scored runs, and the scores of the scored.

    Returns:
        list[dict]: ``backbone``, ``size``, ``far_distance``, ``far_px``, ``runs``,
        ``learned``, ``scored``, ``near_acc``/``far_acc`` (accuracy stats), ``near_all`` (the
        control over every run), ``extra`` (per extra score of the arm: near and far stats),
        ``iters_to_criterion`` (median over the learned runs that reached it),
        ``far_iters_to_criterion`` (median first curve point with the far score at the
        threshold, over the scored runs that reached it; ``far_reached`` of them), ``s_per_iter``.
    """
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r['backbone'], r['size'], r['far']), []).append(r)
    order = {b: i for i, b in enumerate(BACKBONES + BASELINES)}
    rows = []
    for (b, size, far), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2],
                                                                        order.get(kv[0][0], 9))):
        ok = [r for r in rs if r['scored']]
        extra = {}
        for name in _EXTRA[rs[0]['arm']]:
            extra[name] = {g: mean_std_ci([r['scores'][g].get(name, math.nan) for r in ok])
                           for g in ('near', 'far')}
        reach = [r['iters_to_criterion'] for r in rs if r['learned']
                 and r.get('iters_to_criterion') is not None]
        reach_far = [r['far_iters_to_criterion'] for r in ok
                     if r.get('far_iters_to_criterion') is not None]
        rows.append(dict(
            backbone=b, size=size, far_distance=far, far_px=rs[0]['far_px'], runs=len(rs),
            learned=sum(r['learned'] for r in rs), scored=len(ok),
            near_acc=accuracy_stat([r['acc_control'] for r in ok],
                               sum(r['targets_control'] for r in ok)),
            far_acc=accuracy_stat([r['acc'] for r in ok], sum(r['targets'] for r in ok)),
            near_all=accuracy_stat([r['acc_control'] for r in rs if _finite(r['acc_control'])],
                                   sum(r['targets_control'] for r in rs)),
            extra=extra, iters_to_criterion=sorted(reach)[len(reach) // 2] if reach else None,
            far_iters_to_criterion=(sorted(reach_far)[len(reach_far) // 2] if reach_far
                                    else None), far_reached=len(reach_far),
            s_per_iter=mean_std_ci([r['s_per_iter'] for r in rs])['mean']))
    return rows


def dense_gaps(records: Sequence[Dict[str, Any]], reference: str = 'mambaout'):
    """Far-score gaps of each other backbone to ``reference``, paired by seed (scored runs)."""
    recs = [dict(r, learned=r['scored']) for r in records if r['scored']]
    out = []
    for b in BACKBONES:
        if b != reference:
            for row in paired_gaps(recs, b, reference):
                row['size'] = next((r['size'] for r in recs if r['mixer'] == b
                                    and r['grid'] == row['grid']), None)
                out.append(row)
    return out


def _row(summary, backbone, size) -> Optional[Dict[str, Any]]:
    return next((r for r in summary if r['backbone'] == backbone and r['size'] == size), None)


def _reach_row(res: Dict[str, Any], name: str, size: int,
               far: int) -> Optional[Dict[str, Any]]:
    return next((g for g in res.get('baseline_reach') or [] if g.get('baseline', name) == name
                 and g['size'] == size and g['far'] == far), None)


def _reach_text(g: Optional[Dict[str, Any]]) -> str:
    if g is None:
        return 'reach not measured'
    bound = '≥ ' if g['clipped'] else ''
    return (f"reach {bound}{g['reach_px']} px, measured: the near marker "
            f"{'in' if g['near_in_view'] else 'NOT in'} full view (needs {g['near_view_px']} px), "
            f"a far target's own marker {'out of' if g['far_out_of_view'] else 'NOT out of'} "
            f"view (from {g['far_gap_px']} px)")


def baseline_verdict(res: Dict[str, Any], size: int) -> List[str]:
    """The shortcut baseline's bullets at one size: its far score against chance, its near
    score, its measured reach against the task's geometry, and what they say about a shortcut.

    Empty for an arm without baselines (:data:`.plan.BASELINE_ARMS`).
    """
    if res['settings']['arm'] not in BASELINE_ARMS:
        return []
    thr, out = res['learned_threshold'], []
    for name in BASELINES:
        rows = [r for r in res['summary'] if r['backbone'] == name and r['size'] == size]
        if not rows:
            out.append(f'{size} px, shortcut baseline ({name}): not run '
                       f'(`--backbones {name}`), so nothing shows that no cheap cue solves the '
                       'far group.')
            continue
        for row in rows:
            g = _reach_row(res, name, size, row['far_distance'])
            head = f'{size} px, shortcut baseline ({name}; {_reach_text(g)})'
            if not row['scored']:
                out.append(f"{head}: near {fmt_acc(row['near_all'])}, learned in "
                           f"{row['learned']} of {row['runs']} runs (gate {thr:g}), so it "
                           'rules no shortcut out.')
                continue
            reading = chance_reading(row['far_acc'])
            if g is not None and not (g['near_in_view'] and g['far_out_of_view']):
                meaning = ('its reach does not sit between the near and the far marker at this '
                           'size, so it is no baseline here')
            elif reading == 'at chance':
                meaning = ('at chance: no shortcut that image-level statistics and local context '
                           'can learn solves the far group')
            elif reading == 'above chance':
                meaning = ('ABOVE chance: the far group has a shortcut (solved without its marker '
                           'in view), so far scores above chance do not by themselves show range')
            else:
                meaning = ('below chance: a cheap cue predicts the wrong colour, so the far group '
                           'is not neutral to it')
            out.append(f"{head}: far {fmt_acc(row['far_acc'])}, near {fmt_acc(row['near_acc'])} "
                       f"({row['scored']} of {row['runs']} runs scored, far d = "
                       f"{row['far_distance']}): {meaning}.")
    return out


def dense_verdict(res: Dict[str, Any]) -> List[str]:
    """Bullets generated from ``res`` (the results JSON: records, summary, gaps, cost)."""
    recs, summary, gaps = res['records'], res['summary'], res['gaps']
    thr, arm = res['learned_threshold'], res['settings']['arm']
    what = 'labelled-pixel accuracy' if arm == 'upernet' else \
        'colour accuracy of the found targets'
    out = []
    failed = [r['cell'] for r in recs if not r['learned']]
    out.append(f'Gate: {len(recs) - len(failed)} of {len(recs)} runs reached {thr:g} on the near '
               f'control (d = {res["settings"]["near"]} scene tokens)'
               + (f'; not learned, so not scored: {", ".join(failed)}.' if failed else '.'))
    sizes = sorted({r['size'] for r in summary})
    contender_sizes = sorted({r['size'] for r in summary if r['backbone'] in BACKBONES})
    for size in sizes:
        parts = []
        for b in BACKBONES:
            row = _row(summary, b, size)
            if row is None:
                continue
            reading = chance_reading(row['far_acc']) or 'not scored'
            parts.append(f'{b} {fmt_acc(row["far_acc"])} ({reading})')
        if parts:
            out.append(f'{size} px, far cue ({what}, chance {CHANCE:g}): ' + '; '.join(parts)
                       + '.')
        out += baseline_verdict(res, size)
        speed = []
        for b in BACKBONES:
            its = [r.get('far_iters_to_criterion') for r in recs
                   if r['scored'] and r['backbone'] == b and r['size'] == size]
            if its:
                speed.append(f'{b} ' + ', '.join('—' if i is None else str(i) for i in its))
        if speed:
            iters = res['settings']['iters']
            every = max(1, iters // res['settings']['curve_points'])
            out.append(f'{size} px, iterations until the far cue reaches {thr:g} (per scored '
                       f'run, seed order; — never within {iters}; the curve is sampled every '
                       f'{every}): ' + '; '.join(speed) + '.')
        g = next((x for x in gaps if x['mixer'] == 'vmamba' and x['size'] == size), None)
        if g is not None:
            reading = gap_reading(g)
            if reading == 'ahead':
                s = 'holds'
            elif reading == 'behind':
                s = 'is reversed'
            else:
                s = f'is not resolved ({reading})'
            out.append(f'{size} px: the probe\'s ordering (SS2D ahead of the Gated CNN beyond its '
                       f'field) {s} in the real stack: vmamba − mambaout {fmt_gap(g)}.')
        h = next((x for x in gaps if x['mixer'] == 'hybrid' and x['size'] == size), None)
        if h is not None:
            out.append(f'{size} px: hybrid − mambaout {fmt_gap(h)} ({gap_reading(h)}).')
    if len(contender_sizes) > 1:
        lo, hi = contender_sizes[0], contender_sizes[-1]
        for b in BACKBONES:
            a, z = _row(summary, b, lo), _row(summary, b, hi)
            if not a or not z or not a['far_acc']['n'] or not z['far_acc']['n']:
                continue
            fa, fz = a['far_acc'], z['far_acc']
            apart = fz['high'] < fa['low'] or fz['low'] > fa['high']
            out.append(f'{b}: far score {fa["mean"]:.2f} at {lo} px -> '
                       f'{fz["mean"]:.2f} at {hi} px (the same scenes, the cue '
                       f'{hi / lo:g}x longer in every stage): '
                       + ('the intervals do not overlap.' if apart else
                          'the intervals overlap.'))
    for size in sizes:
        deep = [e for e in res.get('erf') or [] if e['size'] == size and e['stage'] == 4]
        if deep:
            out.append(f'{size} px, trained stage-4 ERF (r90, first scored seed) against the far '
                       f'cue of {deep[0]["far_px"]:g} px: ' + '; '.join(
                           f"{e['backbone']} {e['r90_trained']:.0f} px (random weights "
                           f"{e['r90']:.0f})" for e in deep) + '.')
    cost = res.get('cost') or []
    for size in sizes:
        ref = next((c for c in cost if c['backbone'] == 'mambaout' and c['size'] == size), None)
        rows = [c for c in cost if c['size'] == size and c['backbone'] in BACKBONES]
        if ref and rows:
            out.append(f'Cost at {size} px, per image: ' + '; '.join(
                f"{c['backbone']} {c['flops'] / 1e9:.2f} GFLOPs"
                f" ({c['flops'] / ref['flops']:.2f}x)"
                + (f", {c['latency_ms']:.0f} ms ({c['latency_ms'] / ref['latency_ms']:.2f}x)"
                   if c.get('latency_ms') and ref.get('latency_ms') else '')
                for c in rows) + ' (whole model; latency on this CPU, 1 image).')
    return out


def dense_headline(res: Dict[str, Any]) -> str:
    """One generated line: runs scored, the far score per backbone and size, the ordering."""
    recs, arm = res['records'], res['settings']['arm']
    out = [f'{arm} arm: {sum(r["scored"] for r in recs)} of {len(recs)} runs scored']
    for size in sorted({r['size'] for r in res['summary']}):
        rows = [r for b in BACKBONES for r in [_row(res['summary'], b, size)] if r]
        if rows:
            out.append(f'{size} px, far cue {rows[0]["far_px"]:g} px: ' + ', '.join(
                f'{r["backbone"]} {r["far_acc"]["mean"]:.2f}' if r['far_acc']['n'] else
                f'{r["backbone"]} not scored' for r in rows))
        g = next((x for x in res['gaps'] if x['mixer'] == 'vmamba' and x['size'] == size), None)
        if g is not None:
            out.append(f'vmamba vs mambaout at {size} px: {gap_reading(g)}')
    if arm in BASELINE_ARMS:
        base = [r for r in res['summary'] if r['backbone'] in BASELINES]
        out.append('shortcut baseline ' + (', '.join(
            f"{r['backbone']} at {r['size']} px far "
            + (f"{r['far_acc']['mean']:.2f}" if r['far_acc']['n'] else 'not scored')
            for r in base) if base else 'not run'))
    return '; '.join(out) + '.'


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    lines += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
    return '\n'.join(lines)


def _it(x: Optional[int]) -> str:
    return '—' if x is None else str(x)


def _ms(st: Dict[str, float]) -> str:
    if not st['n']:
        return 'n/a'
    return f"{st['mean']:.2f}" + (f" ± {st['std']:.2f}" if st['n'] > 1 else '')


def length_markdown(rows: Sequence[Dict[str, Any]]) -> str:
    """The size axis: the cue in pixels and in each stage's tokens, L and L/(6D)."""
    by: Dict[tuple, Dict[int, Dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r['size'], r['stage']), {})[r['distance']] = r
    ds = sorted({r['distance'] for r in rows})
    head = ['size', 'stage (stride)', 'tokens', 'L', 'D', 'L/(6D)'] + [
        f'd = {d}: px / stage tokens' for d in ds]
    body = []
    for (size, stage), per in sorted(by.items()):
        r0 = next(iter(per.values()))
        body.append([f'{size} px', f'{stage} ({r0["stride"]})', f'{r0["side"]}×{r0["side"]}',
                     r0['L'], r0['D'], f"{r0['L_over_6D']:.2f}"]
                    + [f"{per[d]['distance_px']:g} / {per[d]['distance_tokens']:g}" for d in ds])
    return _table(head, body)


def baseline_markdown(res: Dict[str, Any]) -> List[str]:
    """The shortcut baseline's table (lines; empty for an arm without baselines)."""
    if res['settings']['arm'] not in BASELINE_ARMS:
        return []
    rows = [r for r in res['summary'] if r['backbone'] in BASELINES]
    names = ', '.join(f'`{b}`' for b in BASELINES)
    if not rows:
        return [f'**Shortcut baseline** ({names}): not run (`--backbones '
                f'{" ".join(BASELINES)}`).', '']
    about = '; '.join(f'`{b}`: {BASELINE_OF[b]}' for b in BASELINES)
    head = ['baseline', 'size', 'far d (px)', 'scored/learned/runs', 'near', 'far',
            'far vs chance', 'reach / full square (px)', 'near marker in full view at (px)',
            'far marker from (px)']
    body = []
    for r in rows:
        g = _reach_row(res, r['backbone'], r['size'], r['far_distance'])
        geo = ['not measured'] * 3 if g is None else [
            ('≥ ' if g['clipped'] else '') + f"{g['reach_px']} / {g['full_px']}",
            str(g['near_view_px']), str(g['far_gap_px'])]
        body.append([r['backbone'], r['size'], f"{r['far_distance']} ({r['far_px']:g})",
                     f"{r['scored']}/{r['learned']}/{r['runs']}", fmt_acc(r['near_acc']),
                     fmt_acc(r['far_acc']), chance_reading(r['far_acc']) or 'not scored'] + geo)
    return [f'**Shortcut baseline**, not a contender ({about}; not parameter-matched; gated and '
            'scored like the runs above). Reach: the farthest input pixel that an output '
            'pixel\'s logits depend on, and the largest square around it that they depend on '
            'whole, by autograd with the global pool\'s branch detached '
            '(`mambaout_dense/analysis/dense_longrange/reach.py`; Chebyshev radii). The near '
            'and far columns, over every placement the generator draws: the radius that holds a '
            'near target\'s whole marker from each of its pixels, and the distance of the '
            'nearest pixel of a far target\'s own marker. A valid baseline has full square ≥ '
            'near and reach < far:', '', _table(head, body), '']


def render_dense_markdown(res: Dict[str, Any]) -> str:
    """The report: settings, the size axis, scores, gaps, cost, verdict and every run."""
    s, arm = res['settings'], res['settings']['arm']
    score = 'labelled-pixel accuracy' if arm == 'upernet' else \
        'colour accuracy of the targets found at IoU 0.5'
    out = [f'**{arm} arm** ({res["cells_done"]} of {res["cells_planned"]} planned runs stored; '
           f'settings `{res["settings_key"]}`: {s["iters"]} iterations, batch {s["batch"]}, '
           f'lr {s["lr"]:g}, {s["num_train"]} training and {s["num_val"]} validation images per '
           f'group, near control d = {s["near"]} scene tokens on a {s["scene_grid"]}-token '
           f'grid). Command: `{res["command"]}`.', '',
           f'**In one line:** {res["headline"]}', '',
           '**Sequence lengths.** The same scenes at each size; the cue in pixels and in each '
           'stage\'s tokens, the stage length L and L/(6D):', '',
           length_markdown(res['lengths']), '',
           f'**Scores** ({score}; mean ± std over scored seeds [95% interval]; a run is scored '
           f'when its near control reaches {res["learned_threshold"]:g}'
           + (f' with recall ≥ {res["min_recall"]:g}' if arm == 'maskrcnn' else '') + '):', '']
    extra = _EXTRA[arm]
    head = ['backbone', 'size', 'far d (px)', 'scored/learned/runs', 'near', 'far',
            'far vs chance'] + [f'{e} near / far' for e in extra] + [
                'iters to criterion: near / far (runs reaching far)', 's / iter']
    body = []
    for r in res['summary']:
        if r['backbone'] not in BACKBONES:
            continue
        body.append([r['backbone'], r['size'], f"{r['far_distance']} ({r['far_px']:g})",
                     f"{r['scored']}/{r['learned']}/{r['runs']}", fmt_acc(r['near_acc']),
                     fmt_acc(r['far_acc']), chance_reading(r['far_acc']) or 'not scored']
                    + [f"{_ms(r['extra'][e]['near'])} / {_ms(r['extra'][e]['far'])}"
                       for e in extra]
                    + [f"{_it(r['iters_to_criterion'])} / {_it(r.get('far_iters_to_criterion'))}"
                       f" ({r.get('far_reached', 0)})", f"{r['s_per_iter']:.2f}"])
    out += [_table(head, body), '']
    out += baseline_markdown(res)
    if res['gaps']:
        out += ['**Far-score gaps to MambaOut**, paired by seed:', '',
                _table(['backbone', 'size', 'gap', 'reading', 'seeds'],
                       [[g['mixer'], g['size'], fmt_gap(g), gap_reading(g),
                         ' '.join(map(str, g['seeds']))] for g in res['gaps']]), '']
    if res.get('cost'):
        out += ['**Cost per image** (one multiply-add = one FLOP; latency: 1 image, eval, this '
                'machine):', '',
                _table(['backbone', 'size', 'backbone params', 'model params', 'backbone GFLOPs',
                        'model GFLOPs', 'latency ms'],
                       [[c['backbone'] + (' (shortcut baseline, not parameter-matched)'
                                          if c['backbone'] in BASELINES else ''),
                         c['size'], f"{c['backbone_params'] / 1e6:.2f} M",
                         f"{c['params'] / 1e6:.2f} M", f"{c['backbone_flops'] / 1e9:.3f}",
                         f"{c['flops'] / 1e9:.3f}",
                         f"{c['latency_ms']:.0f}" if c.get('latency_ms') else 'n/a']
                        for c in res['cost']]), '']
    if res.get('erf'):
        out += ['**Effective receptive fields**, random and trained weights (the backbone of '
                'each backbone\'s first scored run, on the far group\'s validation images; '
                'radii around the central output location holding 50% and 90% of the gradient '
                'mass, `mambaout_dense.analysis.erf`):', '',
                erf_markdown_dense(res['erf']), '']
    out += ['**Verdict** (generated from the tables above):', '']
    out += [f'- {line}' for line in res['verdict']] + ['']
    out += ['**Runs** (final validation; curves and provenance in the results JSON):', '',
            _table(['run', 'learned', 'near', 'far', 'wall s', 'commit'],
                   [[r['cell'], 'yes' if r['learned'] else 'no',
                     f"{r['acc_control']:.3f}" if _finite(r['acc_control']) else 'n/a',
                     f"{r['acc']:.3f}" if _finite(r['acc']) else 'n/a', f"{r['wall_s']:.0f}",
                     (r['provenance'].get('commit') or '?')[:10]
                     + ('+' if r['provenance'].get('dirty') else '')]
                    for r in res['records']])]
    return '\n'.join(out) + '\n'
