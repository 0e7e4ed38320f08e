"""The long-range probe: matched mixers, receptive fields, the not-learned flag, statistics."""
import json
import math

import pytest
import torch

from mambaout_dense.analysis import longrange as lr
from mambaout_dense.analysis.probe import (
    MIXERS,
    ProbeNet,
    block_params,
    probe_complexity,
    receptive_field,
    set_ssm_init,
)


@pytest.mark.parametrize('dim,depth', [(32, 4), (48, 2)])
def test_mixers_match_the_gated_cnn_parameters_within_5_percent(dim, depth):
    ref = sum(p.numel() for p in ProbeNet('gated_cnn', dim=dim, depth=depth).parameters())
    for mixer in MIXERS:
        model = ProbeNet(mixer, dim=dim, depth=depth)
        n = sum(p.numel() for p in model.parameters())
        assert abs(n / ref - 1) < 0.05, (mixer, n, ref)
        assert len(block_params(model)) == depth
    hybrid = [type(b).__name__ for b in ProbeNet('hybrid', dim=dim, depth=4).blocks]
    assert hybrid == ['ChannelsFirst', 'ChannelsFirst', 'GatedCNNBlock', 'GatedCNNBlock']


def _influence_radius(model, grid=16, patch=4):
    """Chebyshev radius (tokens) of the input tokens that move the output token at the centre."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, grid * patch, grid * patch, requires_grad=True)
    c = grid // 2
    model(x)[0, :, c, c].sum().backward()
    tok = x.grad.abs().sum(1)[0].view(grid, patch, grid, patch).sum((1, 3))  # (grid, grid)
    ys, xs = torch.nonzero(tok > 0, as_tuple=True)
    return int(torch.maximum((ys - c).abs(), (xs - c).abs()).max())


@pytest.mark.parametrize('mixer,depth', [('gated_cnn', 1), ('gated_cnn', 2), ('ss2d', 1),
                                         ('hybrid', 2), ('attention', 1)])
def test_receptive_field_is_what_the_gradient_reaches(mixer, depth):
    model = ProbeNet(mixer, dim=16, depth=depth, head_dim=8)
    rf = receptive_field(mixer, depth)
    reach = _influence_radius(model)
    if math.isfinite(rf):
        assert reach == rf == 3 * depth
    else:
        assert reach == 8  # the whole 16x16 map from its centre
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2, 8, 8)


def test_flops_count_the_scan_and_the_attention_products():
    ss2d = probe_complexity(ProbeNet('ss2d', dim=16, depth=1), grid=8)
    assert ss2d['flops_by_op'].get('selective_scan', 0) > 0 and ss2d['tokens'] == 64
    att = probe_complexity(ProbeNet('attention', dim=16, depth=1, head_dim=16), grid=8)
    # Q K^T and A V: 2 * L^2 * D multiply-adds for one image
    assert att['flops_by_op']['scaled_dot_product_attention'] == 2 * 64 * 64 * 16
    big = probe_complexity(ProbeNet('attention', dim=16, depth=1, head_dim=16), grid=16)
    assert big['flops_by_op']['scaled_dot_product_attention'] == 16 * \
        att['flops_by_op']['scaled_dot_product_attention']  # quadratic in L


def test_ssm_init_range_is_applied():
    model = ProbeNet('ss2d', dim=16, depth=2)
    assert set_ssm_init(model, 0.05, 0.2) == 2
    dt = torch.nn.functional.softplus(model.blocks[0].block.op.dt_projs_bias)
    assert 0.05 - 1e-5 <= float(dt.min()) and float(dt.max()) <= 0.2 + 1e-5


def test_untrained_model_is_flagged_not_learned():
    s = lr.ProbeSettings(dim=16, depth=1, iters=0, eval_samples=64)
    rec = lr.train_cell(s, lr.Cell('gated_cnn', 8, 5, 0))
    assert rec['iters_done'] == 0 and not rec['learned']
    assert abs(rec['acc_local'] - 0.5) < 0.2  # a random head: near chance
    row = lr.summarise([rec])[0]
    assert row['runs'] == 1 and row['learned'] == 0 and row['acc']['n'] == 0


def test_a_short_training_learns_the_local_control():
    """The flag's other side: a one-block Gated CNN learns the local control in 100 steps."""
    torch.set_num_threads(1)
    s = lr.ProbeSettings(dim=32, depth=1, iters=100, batch=16, lr=3e-3, eval_samples=64)
    rec = lr.train_cell(s, lr.Cell('gated_cnn', 8, 3, 0))
    assert rec['learned'] and rec['acc_local'] >= 0.9


def _rec(mixer, d, seed, acc, learned=True, grid=24):
    return dict(mixer=mixer, grid=grid, tokens=grid * grid, distance=d, seed=seed, acc=acc,
                acc_local=0.99 if learned else 0.5, learned=learned)


def test_statistics_pair_seeds_and_leave_out_not_learned_runs():
    recs = [_rec('gated_cnn', 16, s, 0.5 + 0.01 * s) for s in range(3)]
    recs += [_rec('ss2d', 16, s, 0.9 + 0.01 * s) for s in range(3)]
    recs += [_rec('ss2d', 16, 3, 0.1, learned=False), _rec('gated_cnn', 16, 3, 0.5)]
    row = {r['mixer']: r for r in lr.summarise(recs)}['ss2d']
    assert (row['runs'], row['learned']) == (4, 3)
    assert row['acc']['mean'] == pytest.approx(0.91) and row['acc']['std'] == pytest.approx(0.01)
    gap = lr.paired_gaps(recs, 'ss2d')[0]
    assert gap['seeds'] == [0, 1, 2] and gap['gap']['mean'] == pytest.approx(0.4)
    assert gap['gap']['std'] == pytest.approx(0.0, abs=1e-12)
    st = lr.mean_std_ci([1.0, 2.0, 3.0])
    assert st['ci'] == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)


def test_verdict_claims_a_gap_only_beyond_the_seed_spread():
    s = lr.ProbeSettings()
    rf = dict(gated_cnn=12.0, ss2d=math.inf)
    clear = [_rec('gated_cnn', 16, k, 0.5 + 0.01 * k) for k in range(3)] + \
        [_rec('ss2d', 16, k, 0.9 - 0.01 * k) for k in range(3)]
    text = ' '.join(lr.verdict(clear, s, 24, rf))
    assert 'ss2d minus gated_cnn beyond the Gated-CNN field: ss2d ahead' in text
    noisy = [_rec('gated_cnn', 16, k, a) for k, a in enumerate((0.5, 0.6, 0.4))] + \
        [_rec('ss2d', 16, k, a) for k, a in enumerate((0.45, 0.7, 0.5))]
    text = ' '.join(lr.verdict(noisy, s, 24, rf))
    assert 'no difference larger than the seed spread' in text and 'ahead' not in text
    bad = noisy + [_rec('attention', 16, 0, 0.5, learned=False)]
    assert 'not learned: attention (1)' in lr.verdict(bad, s, 24, rf)[0]


def test_plan_covers_both_axes_and_rejects_impossible_distances():
    plan = lr.SweepPlan(['gated_cnn', 'ss2d'], [0, 1], d_grid=24, distances=[6, 21],
                        l_grids=[8, 16, 24], far_fraction=0.875)
    assert plan.grid_distances() == [(24, 6), (24, 21), (8, 6), (16, 14)]  # (24, 21) shared
    cells = plan.cells()
    assert len(cells) == 2 * 4 * 2 and [c.seed for c in cells[:8]] == [0] * 8
    with pytest.raises(ValueError, match='does not fit'):
        lr.SweepPlan(['gated_cnn'], [0], 8, [9], [8], 0.5).cells()


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
