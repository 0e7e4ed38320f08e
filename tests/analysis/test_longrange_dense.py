"""The dense long-range arms: matched backbones, per-group metrics, lengths, gate and verdict."""
import math
import os.path as osp

import pytest
import torch

from mambaout_dense.analysis.dense_longrange import (
    BACKBONES,
    BASELINES,
    DenseCell,
    DenseSettings,
    apply_gate,
    build_results,
    length_table,
    plan_cells,
    render_dense_markdown,
)
from mambaout_dense.errors import UsageError

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _config(arm, backbone):
    return osp.join(REPO_ROOT, 'configs', DenseCell(arm, backbone, 0, 0, 0).config_name() + '.py')


def test_three_backbones_match_in_parameters_within_5_percent_in_both_arms():
    from mambaout_dense.builder import build_backbone, load_config
    counts = {}
    for arm in ('upernet', 'maskrcnn'):
        for b in BACKBONES:
            model = build_backbone(load_config(_config(arm, b)))
            counts[arm, b] = sum(p.numel() for p in model.parameters())
    for b in BACKBONES:  # the same backbone in both arms
        assert counts['upernet', b] == counts['maskrcnn', b]
    ref = counts['upernet', 'mambaout']
    assert 5.7e6 < ref < 5.9e6  # MambaOut-Femto's 5.82 M (the config comments)
    for b in BACKBONES:
        assert abs(counts['upernet', b] / ref - 1) < 0.05, (b, counts)


def test_length_table_doubles_the_cue_in_every_stage_when_the_size_doubles():
    rows = length_table([128, 256], 32, [3, 20], [48, 96, 192, 288])
    get = {(r['size'], r['stage'], r['distance']): r for r in rows}
    assert get[128, 1, 20]['distance_px'] == 80 and get[128, 1, 20]['distance_tokens'] == 20
    assert get[128, 4, 20]['distance_tokens'] == 2.5 and get[128, 4, 20]['side'] == 4
    assert get[256, 1, 20]['distance_tokens'] == 40 and get[256, 1, 20]['L'] == 64 * 64
    assert get[256, 1, 3]['L_over_6D'] == pytest.approx(4096 / 288)
    assert len(rows) == 2 * 4 * 2


def test_plan_is_seed_major_and_rejects_bad_cells():
    s = DenseSettings(arm='upernet')
    cells = plan_cells(s, ['mambaout', 'vmamba'], [128], [20], [5, 6])
    assert [c.key() for c in cells][:2] == ['upernet/mambaout/s128/d20/seed5',
                                            'upernet/vmamba/s128/d20/seed5']
    assert cells[0].config_name() == 'upernet_longrange_mambaout_femto'
    with pytest.raises(UsageError, match='exceed the near'):
        plan_cells(s, ['mambaout'], [128], [3], [0])
    with pytest.raises(UsageError, match='multiple of the scene grid'):
        plan_cells(s, ['mambaout'], [100], [20], [0])
    with pytest.raises(UsageError, match='>= 128 px'):
        plan_cells(DenseSettings(arm='maskrcnn'), ['mambaout'], [64], [20], [0])
    with pytest.raises(UsageError, match='unknown arm'):
        DenseSettings(arm='fcn')
    assert DenseSettings(arm='upernet').key() != DenseSettings(arm='upernet', iters=5).key()


def test_grouped_pixel_metric_scores_each_group_on_labelled_pixels_only():
    from mambaout_dense.evaluation.grouped_seg_metric import GroupedPixelMetric
    metric = GroupedPixelMetric()

    def sample(name, pred, label):  # as mmengine's Evaluator hands them over: dicts
        return dict(img_path=f'/x/{name}.jpg', pred_sem_seg=dict(data=torch.tensor([pred])),
                    gt_sem_seg=dict(data=torch.tensor([label])))
    metric.process({}, [sample('LR_val_near_00000001', [[0, 1], [1, 1]], [[0, 1], [255, 255]]),
                        sample('LR_val_far_00000001', [[1, 1], [0, 0]], [[0, 1], [0, 255]])])
    res = metric.compute_metrics(metric.results)
    assert res['near_acc'] == 1.0 and res['near_mIoU'] == 1.0 and res['near_pixels'] == 2
    assert res['far_acc'] == pytest.approx(2 / 3)
    # far: class 0 IoU 1/2 (one hit, one missed as 1), class 1 IoU 1/2
    assert res['far_mIoU'] == pytest.approx(0.5) and res['all_acc'] == pytest.approx(4 / 5)


def test_grouped_coco_metric_splits_ap_and_colour_accuracy_by_group(tmp_path):
    """Perfect boxes, right classes near and swapped classes far: near AP 1, far colour 0."""
    import json

    import numpy as np

    from mambaout_dense.datasets.synthetic.longrange_dense import write_longrange_dense
    from mambaout_dense.evaluation.grouped_coco_metric import GroupedCocoMetric
    info = write_longrange_dense(str(tmp_path / 'd'), {'near': 3, 'far': 8}, 1, 2, 16, 128)
    with open(info['coco_val']) as f:
        coco = json.load(f)
    metric = GroupedCocoMetric(ann_file=info['coco_val'], metric=['bbox'])
    metric.dataset_meta = dict(classes=('red', 'blue'))
    results = []
    for img in coco['images']:
        anns = [a for a in coco['annotations'] if a['image_id'] == img['id']]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)])
        labels = np.array([a['category_id'] - 1 for a in anns])
        if img['distance_group'] == 'far':
            labels = 1 - labels
        results.append((dict(img_id=img['id'], width=128, height=128),
                        dict(img_id=img['id'], bboxes=boxes, scores=np.ones(len(anns)),
                             labels=labels)))
    res = metric.compute_metrics(results)
    assert res['near_bbox_mAP'] == pytest.approx(1.0) and res['far_bbox_mAP'] == 0.0
    assert res['near_colour_acc'] == 1.0 and res['far_colour_acc'] == 0.0
    assert res['near_recall50'] == res['far_recall50'] == 1.0 and res['far_targets'] == 4


def _record(backbone, seed, near, far, size=128):
    s = DenseSettings(arm='upernet')
    return dict(cell=f'upernet/{backbone}/s{size}/d20/seed{seed}', settings_key=s.key(),
                arm='upernet', backbone=backbone, size=size, far=20, seed=seed, mixer=backbone,
                dim=48, grid=size // 4, distance=20 * size // 128, pairs=2,
                far_px=20 * size / 32, acc=far, acc_control=near, targets=128,
                targets_control=128, scores=dict(near=dict(acc=near, mIoU=near),
                                                 far=dict(acc=far, mIoU=far)),
                curve=[[10, near, far]], iters_to_criterion=10, s_per_iter=0.5, wall_s=5.0,
                provenance=dict(commit='0' * 40, dirty=False))


def test_gate_scores_only_learned_runs_and_the_verdict_follows_the_numbers():
    far = {'mambaout': (0.50, 0.52, 0.49), 'vmamba': (0.97, 0.99, 0.98),
           'hybrid': (0.80, 0.70, 0.75)}
    recs = [_record(b, seed, 0.99, far[b][seed]) for b in BACKBONES for seed in range(3)]
    recs.append(_record('mambaout', 3, 0.60, 0.99))  # not learned: its 0.99 must not count
    res = build_results(DenseSettings(arm='upernet'), recs, 10,
                        length_table([128], 32, [3, 20], [48, 96, 192, 288]), [], 0.9, 0.5, 'x')
    flags = {r['cell']: (r['learned'], r['scored']) for r in res['records']}
    assert flags['upernet/mambaout/s128/d20/seed3'] == (False, False)
    assert flags['upernet/vmamba/s128/d20/seed0'] == (True, True)
    row = next(r for r in res['summary'] if r['backbone'] == 'mambaout')
    assert (row['runs'], row['learned'], row['scored']) == (4, 3, 3)
    assert row['far_acc']['mean'] == pytest.approx(0.5033, abs=1e-3)
    text = '\n'.join(res['verdict'])
    assert 'not scored: upernet/mambaout/s128/d20/seed3' in text
    assert "ordering (SS2D ahead of the Gated CNN beyond its field) holds" in text
    assert 'mambaout 0.50' in text and '(at chance)' in text and 'vmamba 0.98' in text
    # how fast: the curve's one point (logged at 10, validated at the interval, 125)
    assert 'far cue reaches 0.9' in text and 'mambaout —, —, —; vmamba 125, 125, 125' in text
    md = render_dense_markdown(res)
    assert '| mambaout | 128 | 20 (80) | 3/3/4 |' in md and '**Verdict**' in md
    # the same runs with vmamba at chance: the reading flips
    flat = [dict(r, acc=0.5, scores=dict(r['scores'], far=dict(acc=0.5, mIoU=0.5)))
            if r['backbone'] == 'vmamba' else r for r in recs]
    res2 = build_results(DenseSettings(arm='upernet'), flat, 10, [], [], 0.9, 0.5, 'x')
    assert 'holds' not in '\n'.join(res2['verdict'])


def test_maskrcnn_gate_needs_recall_and_a_colour_score():
    base = dict(arm='maskrcnn', acc=0.7)
    recs = [dict(base, acc_control=0.95, scores=dict(near=dict(recall50=0.9))),
            dict(base, acc_control=0.95, scores=dict(near=dict(recall50=0.2))),
            dict(base, acc_control=math.nan, scores=dict(near=dict(recall50=0.0)))]
    assert [r['learned'] for r in apply_gate(recs, 0.9, 0.5)] == [True, False, False]
    assert [r['learned'] for r in apply_gate(recs, 0.0, 0.0)] == [True, True, False]


def test_trained_erf_needs_the_final_checkpoint_and_says_where_it_looked(tmp_path):
    from mambaout_dense.analysis.dense_longrange.erf import final_checkpoint
    from mambaout_dense.errors import DataError
    with pytest.raises(DataError, match='no final checkpoint.*iter_50.pth'):
        final_checkpoint(str(tmp_path), 50)
    (tmp_path / 'iter_50.pth').write_bytes(b'x')
    assert final_checkpoint(str(tmp_path), 50) == str(tmp_path / 'iter_50.pth')
    other = tmp_path / 'elsewhere.pth'
    other.write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text(str(other))
    assert final_checkpoint(str(tmp_path), 50) == str(other)


def test_gate_reads_iterations_to_criterion_near_and_far_from_the_curve_at_its_threshold():
    rec = dict(arm='upernet', acc=0.95, acc_control=1.0, scores=dict(near={}),
               curve=[[120, 0.8, 0.5], [250, 0.95, 0.7], [370, 1.0, 0.92], [500, 1.0, 0.95]])
    (r, ) = apply_gate([rec], 0.9, val_interval=125)
    assert [p[0] for p in r['curve']] == [125, 250, 375, 500]  # logged 120 -> validated at 125
    assert (r['iters_to_criterion'], r['far_iters_to_criterion']) == (250, 375)
    (r, ) = apply_gate([rec], 0.94)
    assert (r['iters_to_criterion'], r['far_iters_to_criterion']) == (250, 500)
    (r, ) = apply_gate([dict(rec, curve=[[125, 0.95, 0.5]])], 0.9)
    assert r['far_iters_to_criterion'] is None


def test_plan_takes_the_shortcut_baseline_in_the_upernet_arm_only():
    cells = plan_cells(DenseSettings(arm='upernet'), ['mambaout', 'local'], [128], [20], [0])
    assert [c.config_name() for c in cells] == ['upernet_longrange_mambaout_femto',
                                                'upernet_longrange_local_femto']
    assert all(osp.isfile(_config(c.arm, c.backbone)) for c in cells)
    assert 'local' in BASELINES and 'local' not in BACKBONES
    with pytest.raises(UsageError, match='shortcut baseline local exists for the upernet arm '
                                         'only, not maskrcnn'):
        plan_cells(DenseSettings(arm='maskrcnn'), ['mambaout', 'local'], [128], [20], [0])
    with pytest.raises(UsageError, match='unknown backbones.*valid: mambaout, vmamba, hybrid, '
                                         'local'):
        plan_cells(DenseSettings(arm='upernet'), ['global'], [128], [20], [0])


def _reach_rows(near_in_view=True, far_out_of_view=True):
    # as measured by reach.baseline_reach (tests/analysis/test_longrange_local_baseline.py)
    return [dict(baseline='local', size=128, far=20, reach_px=52, full_px=46, clipped=False,
                 near_view_px=19, far_gap_px=69, near_in_view=near_in_view,
                 far_out_of_view=far_out_of_view)]


def _with_baseline(far_local, near_local=0.99, reach=None):
    far = {'mambaout': (0.50, 0.52, 0.49), 'vmamba': (0.97, 0.99, 0.98),
           'hybrid': (0.80, 0.70, 0.75), 'local': far_local}
    recs = [_record(b, seed, near_local if b == 'local' else 0.99, far[b][seed])
            for b in BACKBONES + ('local', ) for seed in range(3)]
    cost = [dict(backbone=b, size=128, params=p, backbone_params=p, flops=f, backbone_flops=f,
                 latency_ms=None)
            for b, p, f in (('mambaout', 6e6, 2e9), ('local', 2e5, 5e8))]
    return build_results(DenseSettings(arm='upernet'), recs, 12,
                         length_table([128], 32, [3, 20], [48, 96, 192, 288]), cost, 0.9, 0.5,
                         'x', reach=_reach_rows() if reach is None else reach)


def test_report_shows_the_shortcut_baseline_apart_and_its_verdict_follows_the_numbers():
    res = _with_baseline((0.51, 0.49, 0.53))
    text = '\n'.join(res['verdict'])
    line = next(v for v in res['verdict'] if 'shortcut baseline (local' in v)
    assert line.startswith('128 px, shortcut baseline (local; reach 52 px, measured: the near '
                           'marker in full view (needs 19 px), a far target\'s own marker out of '
                           'view (from 69 px)): far 0.51 ± 0.02 [')
    assert ', near 0.99 ' in line and '(3 of 3 runs scored, far d = 20): at chance: no shortcut' \
        in line
    # not a contender: no gap, ordering, length-axis or cost ratio names it
    assert all(g['mixer'] != 'local' for g in res['gaps'])
    assert 'local 0.51' not in text.split('shortcut baseline')[0]
    cost_line = next(v for v in res['verdict'] if v.startswith('Cost at 128 px'))
    assert 'local' not in cost_line
    assert 'shortcut baseline local at 128 px far 0.51' in res['headline']
    md = render_dense_markdown(res)
    scores, rest = md.split('**Shortcut baseline**, not a contender', 1)
    assert '| local |' not in scores.split('**Scores**')[1]  # not in the contenders' table
    assert '| local | 128 | 20 (80) | 3/3/3 | 0.99' in rest
    assert '| at chance | 52 / 46 | 19 | 69 |' in rest
    assert 'local (shortcut baseline, not parameter-matched) | 128 | 0.20 M' in md
    # far above chance without the marker in view: the task has a shortcut
    res = _with_baseline((0.97, 0.95, 0.99))
    assert 'ABOVE chance: the far group has a shortcut' in '\n'.join(res['verdict'])
    # a reach that sees the far marker at this size: no baseline, whatever its score
    res = _with_baseline((0.51, 0.49, 0.53), reach=_reach_rows(far_out_of_view=False))
    assert 'NOT out of view' in '\n'.join(res['verdict'])
    assert 'so it is no baseline here' in '\n'.join(res['verdict'])
    # not learned: stored and listed, never read as evidence
    res = _with_baseline((0.51, 0.49, 0.53), near_local=0.6)
    assert 'learned in 0 of 3 runs (gate 0.9), so it rules no shortcut out' in \
        '\n'.join(res['verdict'])
    assert '| local | 128 | 20 (80) | 0/0/3 |' in render_dense_markdown(res)


def test_verdict_says_when_the_shortcut_baseline_was_not_run_and_maskrcnn_has_none():
    recs = [_record(b, 0, 0.99, 0.5) for b in BACKBONES]
    res = build_results(DenseSettings(arm='upernet'), recs, 3, [], [], 0.9, 0.5, 'x')
    assert any(v.startswith('128 px, shortcut baseline (local): not run (`--backbones local`)')
               for v in res['verdict'])
    assert res['headline'].endswith('shortcut baseline not run.')
    assert '**Shortcut baseline** (`local`): not run' in render_dense_markdown(res)
    mask = [dict(r, arm='maskrcnn', scores=dict(near=dict(r['scores']['near'], recall50=0.9),
                                                far=r['scores']['far'])) for r in recs]
    res = build_results(DenseSettings(arm='maskrcnn'), mask, 3, [], [], 0.9, 0.5, 'x')
    assert 'shortcut baseline' not in '\n'.join(res['verdict']) + res['headline']
    assert 'Shortcut baseline' not in render_dense_markdown(res)
