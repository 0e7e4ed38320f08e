"""The long-range probe: matched mixers, receptive fields, the learned gate, the plan, the
statistics (ceilings included) and the verdict."""
import json
import math

import pytest
import torch

from mambaout_dense.analysis import longrange as lr
from mambaout_dense.analysis.longrange.verdict import Index, attention_cost_thresholds, cost_front
from mambaout_dense.analysis.probe import (
    MIXERS,
    SHORTCUT_BASELINE,
    ProbeNet,
    block_params,
    local_field,
    probe_complexity,
    receptive_field,
    set_ssm_init,
)
from mambaout_dense.errors import UsageError


@pytest.mark.parametrize('dim,depth', [(32, 4), (48, 2)])
def test_mixers_match_the_gated_cnn_parameters(dim, depth):
    ref = sum(p.numel() for p in ProbeNet('gated_cnn', dim=dim, depth=depth).parameters())
    for mixer in MIXERS:
        model = ProbeNet(mixer, dim=dim, depth=depth)
        n = sum(p.numel() for p in model.parameters())
        # the shortcut baseline carries its pooling branches on top (a stronger cheater)
        tol = 0.15 if mixer == SHORTCUT_BASELINE else 0.01
        assert abs(n / ref - 1) < tol, (mixer, n, ref)
        assert len(block_params(model)) == depth
    hybrid = [type(b).__name__ for b in ProbeNet('hybrid', dim=dim, depth=4).blocks]
    assert hybrid == ['ChannelsFirst', 'ChannelsFirst', 'GatedCNNBlock', 'GatedCNNBlock']
    dilated = ProbeNet('gated_cnn_dilated', dim=dim, depth=3, dilation=2)
    assert [b.conv.dilation[0] for b in dilated.blocks] == [1, 2, 4]


def _influence_radius(model, grid=24, patch=4):
    """Chebyshev radius (tokens) of the input tokens that move the output token at the centre."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, grid * patch, grid * patch, requires_grad=True)
    c = grid // 2
    model(x)[0, :, c, c].sum().backward()
    tok = x.grad.abs().sum(1)[0].view(grid, patch, grid, patch).sum((1, 3))  # (grid, grid)
    ys, xs = torch.nonzero(tok > 0, as_tuple=True)
    return int(torch.maximum((ys - c).abs(), (xs - c).abs()).max())


@pytest.mark.parametrize('mixer,depth', [('gated_cnn', 1), ('gated_cnn', 2),
                                         ('gated_cnn_dilated', 2), ('ss2d', 1), ('hybrid', 2),
                                         ('attention', 1), ('gated_cnn_gap', 1)])
def test_receptive_field_is_what_the_gradient_reaches(mixer, depth):
    model = ProbeNet(mixer, dim=16, depth=depth, head_dim=8)
    rf = receptive_field(mixer, depth)
    reach = _influence_radius(model)
    if math.isfinite(rf):
        assert reach == rf
    else:
        assert reach == 12  # the whole 24x24 map from its centre
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2, 8, 8)
    assert receptive_field('gated_cnn_dilated', 2) == 9 and receptive_field('gated_cnn', 2) == 6
    assert local_field('gated_cnn_gap', 2) == 6  # the pooled branch resolves no position


def test_the_shortcut_baseline_sees_the_image_mean_and_attention_sees_positions():
    torch.manual_seed(0)
    gap = ProbeNet('gated_cnn_gap', dim=16, depth=1)
    x = torch.randn(1, 3, 96, 96)
    y = x.clone()
    y[..., :8, :8] += 1.0  # a change in one corner moves the opposite corner's output
    with torch.no_grad():
        assert (gap(x)[0, :, -1, -1] - gap(y)[0, :, -1, -1]).abs().max() > 1e-4
        plain = ProbeNet('gated_cnn', dim=16, depth=1)
        torch.testing.assert_close(plain(x)[0, :, -1, -1], plain(y)[0, :, -1, -1])
    att = ProbeNet('attention', dim=16, depth=1, head_dim=8)
    assert att.positions and not ProbeNet('ss2d', dim=16, depth=1).positions
    with pytest.raises(UsageError, match='divisible by 4'):
        ProbeNet('attention', dim=18, depth=1)
    with pytest.raises(UsageError, match='Unknown mixer'):
        ProbeNet('mamba', dim=16, depth=1)


def test_flops_count_the_scan_and_the_attention_products():
    ss2d = probe_complexity(ProbeNet('ss2d', dim=16, depth=1), grid=8)
    assert ss2d['flops_by_op'].get('selective_scan', 0) > 0 and ss2d['tokens'] == 64
    att = probe_complexity(ProbeNet('attention', dim=16, depth=1, head_dim=16), grid=8)
    # Q K^T and A V: 2 * L^2 * D multiply-adds for one image
    assert att['flops_by_op']['scaled_dot_product_attention'] == 2 * 64 * 64 * 16
    big = probe_complexity(ProbeNet('attention', dim=16, depth=1, head_dim=16), grid=16)
    assert big['flops_by_op']['scaled_dot_product_attention'] == 16 * \
        att['flops_by_op']['scaled_dot_product_attention']  # quadratic in L
    dil = probe_complexity(ProbeNet('gated_cnn_dilated', dim=16, depth=2), grid=8)
    plain = probe_complexity(ProbeNet('gated_cnn', dim=16, depth=2), grid=8)
    assert dil['flops'] == plain['flops'] and dil['params'] == plain['params']


def test_ssm_init_range_is_applied():
    model = ProbeNet('ss2d', dim=16, depth=2)
    assert set_ssm_init(model, 0.05, 0.2) == 2
    dt = torch.nn.functional.softplus(model.blocks[0].block.op.dt_projs_bias)
    assert 0.05 - 1e-5 <= float(dt.min()) and float(dt.max()) <= 0.2 + 1e-5


def test_batches_hold_the_controls_then_the_cell_distance():
    s = lr.ProbeSettings()
    assert s.batch_parts(9) == [(3, 4), (5, 4), (9, 8)]
    with pytest.raises(UsageError, match='controls'):
        lr.ProbeSettings(controls=(2, 5))
    assert lr.ProbeSettings.from_dict(s.to_dict()) == s


def test_untrained_model_is_flagged_not_learned():
    s = lr.ProbeSettings(depth=1, iters=0, eval_samples=32, curve_samples=8)
    rec = lr.train_cell(s, lr.Cell('gated_cnn', 16, 14, 6, 2, 0))
    assert rec['iters_done'] == 0 and not rec['learned'] and rec['curve'] == []
    assert abs(rec['acc_by_distance']['3'] - 0.5) < 0.2  # a random head: near chance
    assert rec['distances'] == [3, 5, 6] and rec['targets'] == 64
    row = lr.summarise([rec])[0]
    assert row['runs'] == 1 and row['learned'] == 0 and row['acc']['n'] == 0


def test_a_short_training_learns_the_controls_and_records_its_curve():
    """The gate's other side: a Gated CNN learns both controls within 150 steps."""
    torch.set_num_threads(1)
    s = lr.ProbeSettings(iters=150, eval_samples=64, curve_every=50, curve_samples=32)
    rec = lr.train_cell(s, lr.Cell('gated_cnn', 32, 14, 6, 2, 0))
    assert rec['learned'], rec['acc_by_distance']
    assert [p[0] for p in rec['curve']] == [50, 100, 150] and len(rec['curve'][0]) == 2 + 3
    assert rec['iters_to_criterion']['3'] in (50, 100, 150)
    # evaluation sets are drawn per seed: another seed sees other held-out scenes
    a = lr.training._eval_set(s, lr.Cell('gated_cnn', 32, 14, 6, 2, 0), 6)[1]
    b = lr.training._eval_set(s, lr.Cell('gated_cnn', 32, 14, 6, 2, 1), 6)[1]
    assert not torch.equal(a, b)


def _plan(**kw):
    base = dict(mixers=['gated_cnn', 'ss2d'], seeds=[0, 1], axes=['d', 'L', 'D', 'shortcut'],
                dim=48, d_grid=20, distances=[9, 12], l_grids=[16, 20], l_distance=9,
                dims=[32, 48], dim_grid=16)
    base.update(kw)
    return lr.SweepPlan(**base)


def test_plan_axes_change_one_variable_and_share_cells():
    plan = _plan()
    pts = plan.points()
    assert pts['d'] == [(48, 20, 9, 2), (48, 20, 12, 2)]
    assert pts['L'] == [(48, 16, 9, 2), (48, 20, 9, 2)]  # (48, 20, 9) shared with d
    assert pts['D'] == [(32, 16, 9, 2), (48, 16, 9, 2)]  # (48, 16, 9) shared with L
    assert pts['shortcut'] == [(48, 20, 9, 1)]
    cells = plan.cells()
    keys = [c.key() for c in cells]
    assert len(keys) == len(set(keys)) == 2 * (4 * 2 + 2)  # seeds x (4 points x 2 + shortcut)
    assert [c.seed for c in cells[:10]] == [0] * 10  # seed-major
    assert {c.mixer for c in cells if c.pairs == 1} == {'gated_cnn', 'gated_cnn_gap'}
    with pytest.raises(UsageError, match='do not fit'):
        _plan(distances=[14]).points()  # two pairs at d = 14 do not fit a 20x20 grid
    with pytest.raises(UsageError, match='unknown axes'):
        _plan(axes=['q']).points()
    fact = _plan(axes=['factorial'], distances=[9, 12], l_grids=[16, 20]).points()['factorial']
    assert (32, 16, 12, 2) not in fact and (32, 20, 12, 2) in fact


def test_seed_flag_takes_a_list_and_an_offset():
    import importlib.util
    import os.path as osp
    path = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools',
                    'analysis', 'longrange_experiment.py')
    spec = importlib.util.spec_from_file_location('lr_driver', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.parse_args([]).seeds == [0, 1, 2]
    assert mod.parse_args(['--seeds', '7', '9']).seeds == [7, 9]
    assert mod.parse_args(['--seed-offset', '3']).seeds == [3, 4, 5]
    assert mod.plan_from(mod.parse_args(['--seeds', '4'])).seeds == [4]
    args = mod.parse_args(['--preset', 'gpu', '--jobs', '2'])
    assert args.jobs == 2 and args.device == 'cuda' and 'factorial' in args.axes


def _rec(mixer, d, seed, acc, learned=True, grid=20, dim=48, pairs=2):
    return dict(mixer=mixer, dim=dim, grid=grid, tokens=grid * grid, distance=d, pairs=pairs,
                seed=seed, acc=acc, controls=[3, 5], distances=[3, 5, d], targets=512,
                acc_by_distance={'3': 0.99 if learned else 0.5, '5': 0.99 if learned else 0.5,
                                 str(d): acc},
                learned=learned, iters_to_criterion={'3': 100, '5': 200, str(d): None},
                cell=f'{mixer}/D{dim}/g{grid}/d{d}/p{pairs}/s{seed}')


def test_statistics_pair_seeds_and_leave_out_not_learned_runs():
    recs = [_rec('gated_cnn', 16, s, 0.5 + 0.01 * s) for s in range(3)]
    recs += [_rec('ss2d', 16, s, 0.9 + 0.01 * s) for s in range(3)]
    recs += [_rec('ss2d', 16, 3, 0.1, learned=False), _rec('gated_cnn', 16, 3, 0.5)]
    row = {r['mixer']: r for r in lr.summarise(recs)}['ss2d']
    assert (row['runs'], row['learned']) == (4, 3)
    assert row['acc']['mean'] == pytest.approx(0.91) and row['acc']['std'] == pytest.approx(0.01)
    assert row['acc']['low'] < 0.91 < row['acc']['high']
    gap = lr.paired_gaps(recs, 'ss2d')[0]
    assert gap['seeds'] == [0, 1, 2] and gap['gap']['mean'] == pytest.approx(0.4)
    st = lr.mean_std_ci([1.0, 2.0, 3.0])
    assert st['ci'] == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)


def test_an_interval_at_the_ceiling_is_a_one_sided_bound_not_zero_width():
    st = lr.accuracy_stat([1.0, 1.0, 1.0], targets=1536)
    assert st['ceiling'] and st['std'] == 0.0
    assert st['low'] == pytest.approx(0.05 ** (1 / 1536)) and st['high'] == 1.0
    assert st['low'] < 1.0
    # a binomial interval at 0.5 with 512 targets is about +-0.043
    lo, hi = lr.binomial_interval(256, 512)
    assert 0.45 < lo < 0.46 and 0.54 < hi < 0.55
    # two mixers at the ceiling tie; the interval of their gap is not zero-width
    recs = [_rec('gated_cnn', 6, s, 1.0) for s in range(3)] + \
        [_rec('ss2d', 6, s, 1.0) for s in range(3)]
    g = lr.paired_gaps(recs, 'ss2d')[0]
    assert g['ceiling'] and g['gap']['low'] < 0 < g['gap']['high']
    assert lr.gap_reading(g) == 'tie at the ceiling'


def _res(records, points, fields=None, cost=()):
    return dict(records=records, plan=dict(points=points, seeds=[0, 1, 2], pairs=2),
                fields=fields or dict(gated_cnn=6.0, gated_cnn_dilated=9.0, ss2d=None,
                                      gated_cnn_gap=6.0, attention=None),
                cost=list(cost), settings=lr.ProbeSettings().to_dict(), cells_planned=1)


def test_verdict_claims_a_gap_only_beyond_the_spread_and_reads_the_d_axis_against_the_field():
    s = lr.ProbeSettings()
    clear = [_rec('gated_cnn', 9, k, 0.5 + 0.01 * k) for k in range(3)] + \
        [_rec('ss2d', 9, k, 0.97 - 0.01 * k) for k in range(3)] + \
        [_rec('gated_cnn_gap', 9, k, 0.49 + 0.01 * k) for k in range(3)]
    text = ' '.join(lr.verdict(_res(clear, {'L': [[48, 20, 9, 2]], 'd': [[48, 20, 9, 2]]}), s))
    assert 'Axis L, ss2d minus gated_cnn: ahead' in text
    assert 'at chance in 1 of 1 cells' in text and 'no image-level shortcut' in text
    assert 'gated_cnn (radius 6): d 3: above chance, d 5: above chance, d 9: at chance; as its ' \
        'field predicts' in text
    noisy = [_rec('gated_cnn', 9, k, a) for k, a in enumerate((0.5, 0.6, 0.4))] + \
        [_rec('ss2d', 9, k, a) for k, a in enumerate((0.45, 0.7, 0.5))]
    text = ' '.join(lr.verdict(_res(noisy, {'L': [[48, 20, 9, 2]]}), s))
    assert 'never ahead' in text and 'no difference beyond the spread' in text
    bad = noisy + [_rec('attention', 9, 0, 0.5, learned=False)]
    assert 'not learned: attention (1)' in lr.verdict(_res(bad, {'L': [[48, 20, 9, 2]]}), s)[0]


def test_verdict_says_when_the_d_axis_does_not_move_the_result_as_l_over_6d_predicts():
    s = lr.ProbeSettings()
    recs = []
    for dim in (32, 48, 64):  # L = 256: L/(6D) = 1.33, 0.89, 0.67
        recs += [_rec('gated_cnn', 9, k, 0.5 + 0.01 * k, grid=16, dim=dim) for k in range(3)]
        recs += [_rec('ss2d', 9, k, 0.98 + 0.005 * k, grid=16, dim=dim) for k in range(3)]
    pts = {'D': [[32, 16, 9, 2], [48, 16, 9, 2], [64, 16, 9, 2]]}
    text = ' '.join(lr.verdict(_res(recs, pts), s))
    assert 'does not move with D as L/(6D) predicts' in text and 'not supported' in text


def test_cost_front_and_attention_threshold_come_from_the_counts():
    recs = [_rec('gated_cnn', 9, k, 0.5) for k in range(2)] + \
        [_rec('gated_cnn_dilated', 9, k, 1.0) for k in range(2)] + \
        [_rec('attention', 9, k, 1.0) for k in range(2)]
    L = 400
    cost = [dict(mixer='gated_cnn', dim=48, grid=20, flops=10 * L, latency_ms=1.0, params=1),
            dict(mixer='gated_cnn_dilated', dim=48, grid=20, flops=10 * L, latency_ms=1.1,
                 params=1),
            dict(mixer='attention', dim=48, grid=20, flops=8 * L + 0.01 * L * L,
                 flops_by_op={'scaled_dot_product_attention': 0.01 * L * L}, latency_ms=3.0,
                 params=1)]
    ix = Index(_res(recs, {'L': [[48, 20, 9, 2]]}, cost=cost))
    # a mixer at chance is off the front whatever it costs; equal accuracy: the cheaper one
    assert cost_front(ix, (48, 20, 9, 2)) == ['gated_cnn_dilated']
    assert cost_front(ix, (48, 20, 9, 2), 'latency_ms') == ['gated_cnn_dilated']
    cost[2]['latency_ms'] = 0.5  # attention now the fastest at equal accuracy: alone on the front
    ix = Index(_res(recs, {'L': [[48, 20, 9, 2]]}, cost=cost))
    assert cost_front(ix, (48, 20, 9, 2), 'latency_ms') == ['attention']
    th = attention_cost_thresholds(ix)[0]
    assert th['l_star'] == pytest.approx(800) and th['cross_gated_cnn'] == pytest.approx(200)


def test_store_keeps_finished_cells_of_the_same_settings(tmp_path):
    store = lr.ResultStore(str(tmp_path / 'cells.jsonl'))
    store.append(dict(cell='a', settings_key='k1', acc=1))
    store.append(dict(cell='b', settings_key='k2', acc=2))
    with open(store.path, 'a') as f:
        f.write('{"cell": "c", "settings_')  # a line cut short by a kill
    assert set(store.load('k1')) == {'a'} and set(store.load()) == {'a', 'b'}
    assert json.loads(open(store.path).readline())['acc'] == 1
    assert lr.ProbeSettings(iters=5).key() != lr.ProbeSettings().key()
    assert lr.ProbeSettings(scan_backend='torch').key() == lr.ProbeSettings().key()
    prov = lr.provenance(threads=1)
    assert len(prov['commit']) == 40 and prov['threads'] == 1
    assert set(prov['versions']) >= {'torch', 'numpy', 'python'} and prov['argv']


def test_replication_compares_readings_cell_by_cell():
    from mambaout_dense.analysis.longrange.report import replication_text
    pts = {'L': [[48, 20, 9, 2]]}
    main = [_rec('gated_cnn', 9, k, 0.5 + 0.01 * k) for k in range(3)] + \
        [_rec('ss2d', 9, k, 0.97 - 0.01 * k) for k in range(3)]
    same = [dict(r, seed=r['seed'] + 3) for r in main]
    other = [_rec('gated_cnn', 9, k, 0.5 + 0.01 * (k - 3)) for k in range(3, 6)] + \
        [_rec('ss2d', 9, k, a) for k, a in zip(range(3, 6), (0.5, 0.52, 0.49))]
    res, rep, bad = _res(main, pts), _res(same, pts), _res(other, pts)
    rep['plan']['seeds'] = bad['plan']['seeds'] = [3, 4, 5]
    text = replication_text(res, rep)
    assert 'the one-line verdict is the same' in text
    assert 'same chance reading in 2 of 2' in text and 'same gap reading in 1 of 1' in text
    assert 'No reading differs' in text
    text = replication_text(res, bad)
    assert 'same chance reading in 1 of 2' in text and 'ss2d (D 48, L 400, d 9' in text
    assert 'above chance' in text and 'at chance' in text


def test_the_factorial_axis_gets_a_table_row_per_point():
    from mambaout_dense.analysis.longrange.report import factorial_table
    recs = [_rec(m, d, k, 0.5 if m == 'gated_cnn' else 0.99, grid=g, dim=D)
            for m in ('gated_cnn', 'ss2d') for (D, g, d) in ((32, 16, 9), (64, 20, 12))
            for k in range(3)]
    text = '\n'.join(factorial_table(Index(_res(recs, {'factorial': [[32, 16, 9, 2],
                                                                      [64, 20, 12, 2]]}))))
    assert '| 32 | 256 | 1.33 | 9 |' in text and '| 64 | 400 | 1.04 | 12 |' in text
    assert text.count('+0.49') == 2  # ss2d - gated_cnn in both rows
