"""The long-range probe's verdict: sentences computed from the stored runs, whatever they say.

Every bullet names the axis (and so the table) it rests on. Readings come from the intervals of
:mod:`.stats`: "above chance" / "at chance" by the accuracy interval against 0.5, "ahead" /
"behind" by the paired-gap interval against 0.
"""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .stats import chance_reading, fmt_acc, fmt_gap, gap_reading, paired_gaps, summarise

__all__ = ['Index', 'verdict', 'headline', 'replication', 'attention_cost_thresholds',
           'cost_front']

REFERENCE = 'gated_cnn'
BASELINE = 'gated_cnn_gap'


class Index:
    """Lookups over a results dict: summary rows, paired gaps and cost by their coordinates.

    Args:
        res (dict): A results.json dict (``records``, ``plan``, ``cost``, ``fields``).
    """

    def __init__(self, res: Dict[str, Any]) -> None:
        self.res = res
        self.records = res['records']
        self.mixers = list(dict.fromkeys(r['mixer'] for r in self.records))
        self.rows = {(r['mixer'], r['dim'], r['grid'], r['distance'], r['pairs']): r
                     for r in summarise(self.records)}
        self.gaps: Dict[Tuple, Dict[str, Any]] = {}
        for m in self.mixers:
            if m != REFERENCE:
                for g in paired_gaps(self.records, m, REFERENCE):
                    self.gaps[(m, g['dim'], g['grid'], g['distance'], g['pairs'])] = g
        self.cost = {(c['mixer'], c['dim'], c['grid']): c for c in res.get('cost', [])}
        self.fields = {m: (math.inf if v is None else v) for m, v in res['fields'].items()}
        self.points = {a: [tuple(p) for p in ps] for a, ps in res['plan']['points'].items()}

    def row(self, mixer: str, point: Sequence[int]) -> Optional[Dict[str, Any]]:
        return self.rows.get((mixer, *point))

    def gap(self, mixer: str, point: Sequence[int]) -> Optional[Dict[str, Any]]:
        return self.gaps.get((mixer, *point))

    def mixers_at(self, points: Sequence[Sequence[int]]) -> List[str]:
        return [m for m in self.mixers if any(self.row(m, p) for p in points)]


def _ratio(point: Sequence[int]) -> float:
    dim, grid = point[0], point[1]
    return grid * grid / (6 * dim)


def _acc_at(ix: Index, mixer: str, point: Sequence[int], distance: int) -> Optional[Dict]:
    row = ix.row(mixer, point)
    return None if row is None else row['acc_by_distance'].get(str(distance))


def attention_cost_thresholds(ix: Index) -> List[Dict[str, Any]]:
    """Per width D with counted FLOPs: where attention's quadratic term overtakes its linear part
    (L*), and where attention's FLOPs overtake SS2D's and the Gated CNN's.

    From one count at grid g: the ``scaled_dot_product_attention`` FLOPs are the quadratic part
    (b·L²), the rest is linear in L (a·L); SS2D and the Gated CNN are linear (c·L).
    """
    out = []
    for (mixer, dim, grid), c in sorted(ix.cost.items(), key=lambda kv: kv[0][1:]):
        if mixer != 'attention' or not c.get('flops_by_op'):
            continue
        L = grid * grid
        quad = c['flops_by_op'].get('scaled_dot_product_attention', 0)
        if not quad or any(o['dim'] == dim for o in out):
            continue
        b, a = quad / L**2, (c['flops'] - quad) / L
        row = dict(dim=dim, grid=grid, l_star=a / b, l_star_over_d=a / b / dim)
        for other in ('ss2d', REFERENCE):
            oc = ix.cost.get((other, dim, grid))
            if oc and oc.get('flops'):
                cross = (oc['flops'] / L - a) / b
                row[f'cross_{other}'] = cross if cross > 0 else 0.0
        out.append(row)
    return out


#: Accuracies closer than this count as equal on the accuracy-cost front (means of 3 seeds).
FRONT_TIE = 0.01


def cost_front(ix: Index, point: Sequence[int], key: str = 'flops') -> List[str]:
    """Mixers on the accuracy-cost Pareto front at a point, among those above chance there (a
    mixer at chance does not do the task at any cost): no other is at least as accurate (mean at
    d, ties within :data:`FRONT_TIE`) and at most as costly, with one of the two strictly.
    Cheapest first."""
    dim, grid = point[0], point[1]
    cand = []
    for m in ix.mixers:
        row, c = ix.row(m, point), ix.cost.get((m, dim, grid))
        if (row and chance_reading(row['acc']) == 'above chance' and c
                and c.get(key) is not None):
            cand.append((m, row['acc']['mean'], c[key]))
    front = []
    for m, acc, cost in cand:
        dominated = any(a2 > acc - FRONT_TIE and c2 <= cost
                        and (a2 > acc + FRONT_TIE or c2 < cost)
                        for m2, a2, c2 in cand if m2 != m)
        if not dominated:
            front.append(m)
    return sorted(front, key=lambda m: ix.cost[(m, dim, grid)][key])


def _control_bullet(ix: Index, settings) -> str:
    n_all = len(ix.records)
    n_ok = sum(r['learned'] for r in ix.records)
    failed: Dict[str, int] = {}
    for r in ix.records:
        if not r['learned']:
            failed[r['mixer']] = failed.get(r['mixer'], 0) + 1
    listing = ', '.join(f'{m} ({n})' for m, n in sorted(failed.items()))
    ctrl = ', '.join(map(str, settings.controls))
    return (f'Controls (every run, d = {ctrl}, accuracy >= {settings.learned_threshold:g} at '
            f'each): {n_ok} of {n_all} runs learned'
            + (f'; not learned: {listing}; they are left out of every number below.'
               if failed else ' (every mixer, every cell).'))


def _shortcut_bullets(ix: Index, settings) -> List[str]:
    out = []
    beyond = []
    for axis in ('d', 'L', 'D'):
        for p in ix.points.get(axis, []):
            if p[2] >= ix.fields.get(REFERENCE, math.inf) + settings.target and p not in beyond:
                beyond.append(p)
    stats = [(p, ix.row(BASELINE, p)) for p in beyond if ix.row(BASELINE, p)]
    if stats:
        readings = [chance_reading(r['acc']) for _, r in stats]
        known = [x for x in readings if x]
        at = sum(x == 'at chance' for x in known)
        items = '; '.join(f"D {p[0]}, L {p[1] ** 2}, d {p[2]}: {fmt_acc(r['acc'])}"
                          for p, r in stats)
        if not known:
            verdict = 'no learned run to tell'
        elif at == len(known):
            verdict = 'the task has no image-level shortcut'
        else:
            verdict = 'an image-level shortcut remains'
        out.append(f'Shortcut baseline ({BASELINE}: the Gated CNN plus a global-average-pool '
                   f'branch, axes d, L, D), beyond the Gated CNN field: at chance in {at} of '
                   f'{len(known)} cells ({items}) — {verdict}.')
    for p in ix.points.get('shortcut', []):
        base, ref = ix.row(BASELINE, p), ix.row(REFERENCE, p)
        two = ix.row(BASELINE, (p[0], p[1], p[2], 2))
        if base is None:
            continue
        parts = [f'{BASELINE} {fmt_acc(base["acc"])} ({chance_reading(base["acc"])})']
        if ref is not None:
            parts.append(f'{REFERENCE} {fmt_acc(ref["acc"])} ({chance_reading(ref["acc"])})')
        tail = ''
        if two is not None:
            tail = (f'; on the two-pair task at the same cell the baseline is '
                    f'{fmt_acc(two["acc"])} ({chance_reading(two["acc"])})')
        out.append(f'Shortcut axis: on the earlier single-cue task (one marker per image, D '
                   f'{p[0]}, L {p[1] ** 2}, d {p[2]}): ' + ', '.join(parts) + tail + '.')
    return out


def _d_bullets(ix: Index, settings) -> List[str]:
    pts = ix.points.get('d', [])
    if not pts:
        return []
    dim, grid, _, pairs = pts[0]
    ds = sorted(set(settings.controls) | {p[2] for p in pts})
    out = []
    for m in ix.mixers_at(pts):
        r = ix.fields.get(m, math.inf)
        items, bad = [], []
        for d in ds:
            p = next((q for q in pts if q[2] == d), pts[0])
            st = _acc_at(ix, m, p, d)
            reading = chance_reading(st)
            if reading is None:
                continue
            items.append(f'd {d}: {reading}')
            if math.isfinite(r):
                expect = ('above chance' if d <= r else
                          'at chance' if d >= r + settings.target else None)
                if expect and reading != expect:
                    bad.append(d)
        field = f'radius {r:g}' if math.isfinite(r) else 'global'
        if math.isfinite(r):
            tail = ('; as its field predicts (above chance for d <= r, at chance for d >= r + '
                    f'{settings.target})' if not bad else
                    f'; NOT as its field predicts at d = {", ".join(map(str, bad))}')
        else:
            tail = ''
        out.append(f'Axis d (D {dim}, L {grid * grid}), {m} ({field}): ' + ', '.join(items)
                   + tail + '.')
    return out


def _gap_series(ix: Index, axis: str, label) -> List[str]:
    pts = ix.points.get(axis, [])
    out = []
    for m in ix.mixers_at(pts):
        if m == REFERENCE:
            continue
        items, readings = [], {}
        for p in pts:
            g = ix.gap(m, p)
            if g is None:
                continue
            rd = gap_reading(g)
            readings[p] = rd
            items.append(f'{label(p)}: {fmt_gap(g)} {rd}')
        if not items:
            continue
        below = {rd for p, rd in readings.items() if _ratio(p) < 1}
        above = {rd for p, rd in readings.items() if _ratio(p) >= 1}
        if below and above and below == above == {'ahead'}:
            head = 'ahead on both sides of L = 6D'
        elif above == {'ahead'} and below and 'ahead' not in below:
            head = 'ahead only where L >= 6D'
        elif below == {'ahead'} and above and 'ahead' not in above:
            head = 'ahead only where L < 6D'
        elif set(readings.values()) == {'ahead'}:
            head = 'ahead at every point'
        elif 'ahead' not in readings.values():
            head = 'never ahead'
        else:
            head = 'ahead at some points'
        out.append(f'Axis {axis}, {m} minus {REFERENCE}: {head} — ' + '; '.join(items) + '.')
    return out


def _l_bullets(ix: Index) -> List[str]:
    pts = ix.points.get('L', [])
    if not pts:
        return []
    out = _gap_series(ix, 'L', lambda p: f'L {p[1] ** 2} (L/6D {_ratio(p):.2f})')
    d = pts[0][2]
    for m in ix.mixers_at(pts):
        r = ix.fields.get(m, math.inf)
        if math.isfinite(r) and d <= r:
            out.append(f'Axis L: {m} (radius {r:g}) holds d = {d} inside its field at every '
                       f'length: ' + ', '.join(
                           f'L {p[1] ** 2}: {fmt_acc(ix.row(m, p)["acc"])}' for p in pts
                           if ix.row(m, p)) + '.')
    return out


def _D_bullets(ix: Index) -> List[str]:
    pts = ix.points.get('D', [])
    if not pts:
        return []
    out = _gap_series(ix, 'D', lambda p: f'D {p[0]} (L/6D {_ratio(p):.2f})')
    ratios = [_ratio(p) for p in pts]
    crosses = min(ratios) < 1 <= max(ratios)
    for m in ('ss2d', 'attention', 'hybrid'):
        readings = {gap_reading(ix.gap(m, p)) for p in pts if ix.gap(m, p)}
        if not readings or not crosses:
            continue
        if readings == {'ahead'}:
            out.append(f'Axis D: {m}\'s lead over {REFERENCE} stays when L/(6D) falls from '
                       f'{max(ratios):.2f} to {min(ratios):.2f} at fixed L and d: the accuracy '
                       f'threshold does not move with D as L/(6D) predicts, so that framing is '
                       f'not supported here; the distance against the field decides.')
        elif 'ahead' not in readings:
            out.append(f'Axis D: {m} is not ahead of {REFERENCE} at any width (L/(6D) '
                       f'{min(ratios):.2f}..{max(ratios):.2f}).')
        else:
            ahead = [f'{p[0]}' for p in pts if ix.gap(m, p) and gap_reading(ix.gap(m, p))
                     == 'ahead']
            rest = [f'{p[0]}' for p in pts if ix.gap(m, p) and f'{p[0]}' not in ahead]
            out.append(f'Axis D: {m}\'s lead over {REFERENCE} is established only at D = '
                       f'{", ".join(ahead)} (at D = {", ".join(rest)} its interval holds 0 or '
                       f'lies below).')
    return out


def _cost_bullets(ix: Index) -> List[str]:
    out = []
    th = attention_cost_thresholds(ix)
    if th:
        items = []
        for t in th:
            x = f"D {t['dim']}: L* = {t['l_star']:.0f} = {t['l_star_over_d']:.1f}·D"
            if 'cross_ss2d' in t:
                cross = t['cross_ss2d']
                x += (', attention costs more FLOPs than SS2D at every L' if cross < 1 else
                      f', attention costs more FLOPs than SS2D beyond L = {cross:.0f}')
            items.append(x)
        ratios = [t['l_star_over_d'] for t in th]
        moves = ''
        if len(th) > 1:
            spread = max(ratios) / min(ratios) - 1
            moves = (f' L*/D varies by {100 * spread:.0f}% across D: the cost threshold moves '
                     'with D, as L/(6D) says' if spread < 0.1 else
                     f' L*/D varies by {100 * spread:.0f}% across D')
        out.append('Cost (counted FLOPs): attention\'s quadratic term overtakes its linear part '
                   'at L* (6D for the paper\'s block with a 4x MLP; this probe\'s MLP is matched '
                   'to the Gated CNN\'s parameters) — ' + '; '.join(items) + '.' + moves
                   + ('.' if moves else ''))
    for axis in ('d', 'L'):
        for p in ix.points.get(axis, []):
            if axis == 'd' and p in ix.points.get('L', []):
                continue  # said once, under L
            fronts = {unit: cost_front(ix, p, key)
                      for key, unit in (('flops', 'FLOPs'), ('latency_ms', 'latency'))}
            if not any(fronts.values()):
                continue
            items = '; '.join(f'by {unit}: ' + ', '.join(
                f"{m} ({ix.row(m, p)['acc']['mean']:.2f})" for m in front)
                for unit, front in fronts.items() if front)
            out.append(f'Accuracy-cost front (axis {axis}, D {p[0]}, L {p[1] ** 2}, d {p[2]}; '
                       f'mixers above chance, cheapest first) {items}.')
    return out


def verdict(res: Dict[str, Any], settings) -> List[str]:
    """Markdown bullets computed from a results dict (see :class:`Index`)."""
    ix = Index(res)
    if not ix.records:
        return []
    return ([_control_bullet(ix, settings)] + _shortcut_bullets(ix, settings)
            + _d_bullets(ix, settings) + _l_bullets(ix) + _D_bullets(ix) + _cost_bullets(ix))


def headline(res: Dict[str, Any], settings) -> str:
    """One sentence for the README: who stays above chance beyond the Gated CNN's field, the
    shortcut baseline, and whether SS2D's lead moves with L or D across L = 6D."""
    ix = Index(res)
    if not ix.records:
        return 'not run yet'
    rf = ix.fields.get(REFERENCE, math.inf)
    beyond = [p for a in ('d', 'L', 'D') for p in ix.points.get(a, [])
              if p[2] >= rf + settings.target]
    beyond = list(dict.fromkeys(beyond))
    above, chance, mixed = [], [], []
    for m in ix.mixers_at(beyond):
        readings = {chance_reading(ix.row(m, p)['acc']) for p in beyond if ix.row(m, p)}
        readings.discard(None)
        if readings == {'above chance'}:
            above.append(m)
        elif readings == {'at chance'}:
            chance.append(m)
        elif readings:
            r = ix.fields.get(m, math.inf)
            inside = ', '.join(map(str, sorted({p[2] for p in beyond if p[2] <= r})))
            mixed.append(f'{m} is above chance only within its radius {r:g} (d = {inside})'
                         if math.isfinite(r) and inside else f'{m} is above chance in some cells')
    parts = []
    if beyond:
        ds = sorted({p[2] for p in beyond})
        parts.append(f'beyond the Gated CNN\'s field (d = {", ".join(map(str, ds))}, '
                     f'{len(beyond)} cells) ' + '; '.join(
                         x for x in (f'{", ".join(above)} stay above chance' if above else '',
                                     f'{", ".join(chance)} are at chance' if chance else '',
                                     '; '.join(mixed))
                         if x))
    for axis in ('L', 'D'):
        pts = ix.points.get(axis, [])
        readings = {gap_reading(ix.gap('ss2d', p)) for p in pts if ix.gap('ss2d', p)}
        if not readings:
            continue
        ratios = [_ratio(p) for p in pts]
        span = f'L/(6D) {min(ratios):.2f} to {max(ratios):.2f}'
        if readings == {'ahead'}:
            parts.append(f'SS2D leads the Gated CNN at every point of axis {axis} ({span})')
        elif 'ahead' not in readings:
            parts.append(f'SS2D never leads the Gated CNN on axis {axis} ({span})')
        else:
            parts.append(f'SS2D leads the Gated CNN at some points of axis {axis} ({span})')
    return '; '.join(parts) + '.'


def replication(res: Dict[str, Any], rep: Dict[str, Any]) -> Dict[str, Any]:
    """Do other seeds give the same verdict? Readings of two results dicts, cell by cell.

    Compared for every (mixer, point) both hold: the chance reading of the accuracy at d, the
    reading of the paired gap to the Gated CNN, and whether each mean lies inside the other run's
    95% interval.

    Returns:
        dict: ``cells`` (compared), ``same_chance``, ``same_gap`` (of those with a gap),
        ``gaps``, ``within`` (means inside the other's interval, both ways), ``differ`` (lines
        naming each cell whose reading differs), ``outside`` (cells whose means are not inside
        each other's intervals), ``same_headline`` (:func:`headline` unchanged), ``seeds``.
    """
    a, b = Index(res), Index(rep)
    keys = sorted(set(a.rows) & set(b.rows))
    same_chance = same_gap = gaps = within = 0
    differ, outside = [], []
    for key in keys:
        ra, rb = a.rows[key]['acc'], b.rows[key]['acc']
        ca, cb = chance_reading(ra), chance_reading(rb)
        same_chance += ca == cb
        inside = (ra['n'] and rb['n'] and rb['low'] <= ra['mean'] <= rb['high']
                  and ra['low'] <= rb['mean'] <= ra['high'])
        within += bool(inside)
        label = f'{key[0]} (D {key[1]}, L {key[2] ** 2}, d {key[3]}, {key[4]} pair(s))'
        if not inside:
            outside.append(f'{label}: {fmt_acc(ra)} vs {fmt_acc(rb)}')
        if ca != cb:
            differ.append(f'{label}: {ca} ({fmt_acc(ra)}) vs {cb} ({fmt_acc(rb)})')
        ga, gb = a.gaps.get(key), b.gaps.get(key)
        if ga and gb:
            gaps += 1
            if gap_reading(ga) == gap_reading(gb):
                same_gap += 1
            else:
                differ.append(f'{label} minus {REFERENCE}: {gap_reading(ga)} ({fmt_gap(ga)}) vs '
                              f'{gap_reading(gb)} ({fmt_gap(gb)})')
    from .settings import ProbeSettings
    settings = ProbeSettings.from_dict(res['settings'])
    return dict(cells=len(keys), same_chance=same_chance, same_gap=same_gap, gaps=gaps,
                within=within, differ=differ, outside=outside,
                same_headline=headline(res, settings) == headline(rep, settings),
                seeds=[res['plan']['seeds'], rep['plan']['seeds']])
