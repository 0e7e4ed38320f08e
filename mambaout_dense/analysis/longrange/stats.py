"""Statistics of the long-range probe: seeds, intervals, ceilings, paired gaps, readings.

Following Bouthillier et al. ("Accounting for variance in machine learning benchmarks", arXiv
2103.03098): each run draws its own training batches and its own held-out set, so the spread over
seeds holds both sources of variance. An interval is the wider of the Student-t interval over
seeds and the Clopper-Pearson interval of the pooled held-out targets (``n`` targets, ``k``
correct); so three runs at 1.00 read "1.00 (>= 0.998, one-sided 95%)", never "± 0.00".
"""
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ['CHANCE', 'LEVEL', 'mean_std_ci', 'binomial_interval', 'accuracy_stat', 'summarise',
           'paired_gaps', 'chance_reading', 'gap_reading', 'fmt_acc', 'fmt_gap']

#: Accuracy of a cue-blind model on the balanced two-class task.
CHANCE = 0.5
#: Coverage of every interval.
LEVEL = 0.95
_CEILING = 1.0 - 1e-12


def mean_std_ci(values: Sequence[float], level: float = LEVEL) -> Dict[str, float]:
    """Mean, sample standard deviation and half-width of the Student-t interval.

    Args:
        values (Sequence[float]): Observations.
        level (float): Coverage of the interval. Defaults to 0.95.

    Returns:
        dict: ``n``, ``mean``, ``std`` (ddof 1; NaN for n < 2) and ``ci`` (half-width; NaN for
        n < 2).
    """
    x = np.asarray(values, float)
    n = len(x)
    if n == 0:
        return dict(n=0, mean=math.nan, std=math.nan, ci=math.nan)
    if n == 1:
        return dict(n=1, mean=float(x[0]), std=math.nan, ci=math.nan)
    from scipy import stats
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))
    return dict(n=n, mean=float(x.mean()), std=std, ci=half)


def binomial_interval(k: int, n: int, level: float = LEVEL) -> Tuple[float, float]:
    """Clopper-Pearson interval of a proportion; one-sided at 0 or n successes.

    Args:
        k (int): Successes.
        n (int): Trials.
        level (float): Coverage. Defaults to 0.95.

    Returns:
        tuple[float, float]: (low, high); (0, 1) for n = 0.
    """
    from scipy import stats
    if n <= 0:
        return 0.0, 1.0
    alpha = 1 - level
    if k >= n:
        return float(alpha ** (1 / n)), 1.0
    if k <= 0:
        return 0.0, float(1 - alpha ** (1 / n))
    return (float(stats.beta.ppf(alpha / 2, k, n - k + 1)),
            float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k)))


def accuracy_stat(values: Sequence[float], targets: int, level: float = LEVEL) -> Dict[str, Any]:
    """Accuracy over seeds with an interval that never has zero width.

    Args:
        values (Sequence[float]): Accuracy of each run.
        targets (int): Held-out targets behind all the values together (the binomial trials;
            a target's tokens share a label, so targets, not tokens, are counted).
        level (float): Coverage. Defaults to 0.95.

    Returns:
        dict: :func:`mean_std_ci` fields plus ``low``/``high`` (the wider of the t and
        Clopper-Pearson intervals, within [0, 1]), ``ceiling`` (every value 1) and ``targets``.
    """
    st = mean_std_ci(values, level)
    st.update(low=math.nan, high=math.nan, ceiling=False, targets=int(targets))
    if st['n'] == 0:
        return st
    k = int(round(st['mean'] * targets))
    low, high = binomial_interval(k, targets, level)
    if st['n'] > 1:
        low, high = min(low, st['mean'] - st['ci']), max(high, st['mean'] + st['ci'])
    st.update(low=max(0.0, low), high=min(1.0, high),
              ceiling=bool(min(values) >= _CEILING))
    return st


def _key(r: Dict[str, Any]) -> Tuple[str, int, int, int, int]:
    return (r['mixer'], r['dim'], r['grid'], r['distance'], r['pairs'])


def summarise(records: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per (mixer, D, grid, distance, pairs): runs, learned runs and accuracy at each distance.

    Returns:
        list[dict]: ``mixer``, ``dim``, ``grid``, ``tokens``, ``distance``, ``pairs``, ``runs``,
        ``learned``, ``acc`` (:func:`accuracy_stat` of the learned runs at the cell's distance),
        ``acc_by_distance`` (the same per evaluated distance, controls included, over the
        learned runs), ``controls_all`` (per control distance, over all runs) and
        ``iters_to_criterion`` (median first curve step at the threshold at d over the learned
        runs that reached it; with the count that did).
    """
    groups: Dict[Tuple, List[Dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(_key(r), []).append(r)
    rows = []
    for (mixer, dim, grid, distance, pairs), rs in groups.items():
        ok = [r for r in rs if r['learned']]
        by_d = {}
        for d in rs[0]['distances']:
            by_d[str(d)] = accuracy_stat([r['acc_by_distance'][str(d)] for r in ok],
                                         sum(r['targets'] for r in ok))
        controls = {str(d): accuracy_stat([r['acc_by_distance'][str(d)] for r in rs],
                                          sum(r['targets'] for r in rs))
                    for d in rs[0]['controls']}
        reach = [r['iters_to_criterion'].get(str(distance)) for r in ok]
        reached = [v for v in reach if v is not None]
        rows.append(dict(mixer=mixer, dim=dim, grid=grid, tokens=grid * grid, distance=distance,
                         pairs=pairs, runs=len(rs), learned=len(ok), acc=by_d[str(distance)],
                         acc_by_distance=by_d, controls_all=controls,
                         iters_to_criterion=dict(
                             median=float(np.median(reached)) if reached else None,
                             reached=len(reached), of=len(ok))))
    return rows


def paired_gaps(records: Iterable[Dict[str, Any]], mixer: str,
                reference: str = 'gated_cnn') -> List[Dict[str, Any]]:
    """Accuracy of ``mixer`` minus ``reference`` per point, paired by seed.

    Runs of one seed see the same training batches and the same held-out set; a pair counts
    only when both runs are learned. When the paired differences do not vary (both at the
    ceiling, say) the interval is the difference of the two Clopper-Pearson intervals.

    Returns:
        list[dict]: ``mixer``, ``reference``, ``dim``, ``grid``, ``distance``, ``pairs``,
        ``gap`` (:func:`mean_std_ci` plus ``low``/``high``), ``ceiling`` (both at 1 in every
        pair), ``seeds``.
    """
    by: Dict[Tuple, Dict[str, Any]] = {}
    for r in records:
        by[_key(r) + (r['seed'],)] = r
    rows = []
    points = sorted({k[1:5] for k in by if k[0] == mixer})
    for point in points:
        seeds, diffs, a_runs, b_runs = [], [], [], []
        for k, a in sorted(by.items()):
            if k[0] != mixer or k[1:5] != point:
                continue
            b = by.get((reference, *point, k[5]))
            if b is not None and a['learned'] and b['learned']:
                seeds.append(k[5])
                diffs.append(a['acc'] - b['acc'])
                a_runs.append(a)
                b_runs.append(b)
        gap = mean_std_ci(diffs)
        ceiling = bool(diffs) and min(r['acc'] for r in a_runs + b_runs) >= _CEILING
        if gap['n'] >= 2 and gap['std'] > 0:
            gap.update(low=gap['mean'] - gap['ci'], high=gap['mean'] + gap['ci'])
        elif gap['n'] >= 2:
            sa = accuracy_stat([r['acc'] for r in a_runs], sum(r['targets'] for r in a_runs))
            sb = accuracy_stat([r['acc'] for r in b_runs], sum(r['targets'] for r in b_runs))
            gap.update(low=sa['low'] - sb['high'], high=sa['high'] - sb['low'])
        else:
            gap.update(low=math.nan, high=math.nan)
        rows.append(dict(mixer=mixer, reference=reference, dim=point[0], grid=point[1],
                         distance=point[2], pairs=point[3], gap=gap, ceiling=ceiling,
                         seeds=seeds))
    return rows


def chance_reading(stat: Dict[str, Any]) -> Optional[str]:
    """'above chance', 'below chance', 'at chance' (interval holds 0.5) or None (no runs)."""
    if not stat or stat['n'] == 0 or math.isnan(stat['low']):
        return None
    if stat['low'] > CHANCE:
        return 'above chance'
    if stat['high'] < CHANCE:
        return 'below chance'
    return 'at chance'


def gap_reading(row: Dict[str, Any]) -> str:
    """'ahead', 'behind', 'tie at the ceiling', 'no difference beyond the spread' or 'too few
    learned seed pairs'."""
    gap = row['gap']
    if gap['n'] < 2:
        return 'too few learned seed pairs'
    if gap['low'] > 0:
        return 'ahead'
    if gap['high'] < 0:
        return 'behind'
    if row.get('ceiling'):
        return 'tie at the ceiling'
    return 'no difference beyond the spread'


def fmt_acc(stat: Optional[Dict[str, Any]], digits: int = 2) -> str:
    """'0.97 ± 0.02 [0.91, 1.00]', '1.00 [≥ 0.998]' at the ceiling, 'n/a' without runs."""
    if not stat or stat['n'] == 0:
        return 'n/a'
    if stat.get('ceiling'):
        return f"{stat['mean']:.{digits}f} [≥ {stat['low']:.3f}]"
    spread = '' if stat['n'] < 2 else f" ± {stat['std']:.{digits}f}"
    lo, hi = f"{stat['low']:.{digits}f}", f"{stat['high']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}{spread} [{lo}, {hi}]"


def fmt_gap(row: Optional[Dict[str, Any]]) -> str:
    """'+0.49 ± 0.02 [+0.44, +0.54]' (paired over seeds), 'n/a' with fewer than 2 pairs."""
    if row is None or row['gap']['n'] < 2:
        return 'n/a'
    g = row['gap']
    return f"{g['mean']:+.2f} ± {g['std']:.2f} [{g['low']:+.2f}, {g['high']:+.2f}]"
