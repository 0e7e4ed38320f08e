"""The main-job section comes from the stored curves: the target verdict and the old recipe."""
import main_job


def _curve(points, **extra):
    return dict(points=[dict(iter=i, train_min=m, mIoU=v, mAcc=v, aAcc=v) for i, m, v in points],
                wall_min=points[-1][1] + 1, train_min=points[-1][1], s_per_iter=0.5,
                losses=[], commit='abc1234', **extra)


def test_target_verdict_uses_the_last_score_within_the_budget():
    result = dict(curve=_curve([(800, 7.0, 79.0), (1600, 14.0, 81.0), (1800, 16.0, 90.0)]))
    text = main_job.readme_text('seg', result, 15.0)
    assert 'mIoU 81.000' in text and '(iteration 1600)' in text and '**met**' in text
    text = main_job.readme_text('seg', result, 10.0)
    assert '(iteration 800)' in text and '**missed**' in text


def test_old_recipe_says_when_it_ran():
    old = _curve([(500, 8.0, 60.0)], date='2026-12-07 10:00')
    result = dict(curve=_curve([(400, 4.0, 55.0), (800, 8.0, 70.0)]), old_curve=old)
    text = main_job.readme_text('seg', result, 15.0)
    assert 'on 2026-12-07 10:00' in text and 'iteration 800): mIoU 70.000' in text
    del old['date']
    assert 'in an earlier session' in main_job.readme_text('seg', result, 15.0)


def test_per_class_iou_is_parsed_and_reported(tmp_path, monkeypatch):
    recs = [dict(iter=10, time=0.5, loss=1.0),
            {'mIoU': 60.0, 'mAcc': 70.0, 'aAcc': 80.0, 'IoU.box': 21.5, 'IoU.ball': 38.25}]
    monkeypatch.setattr(main_job, 'records', lambda work: recs)
    curve = main_job.parse_curve('seg', str(tmp_path), 60.0)
    assert curve['points'][0]['per_class_iou'] == {'box': 21.5, 'ball': 38.25}
    text = main_job.readme_text('seg', dict(curve=curve), 15.0)
    assert 'IoU per class at iteration 10: box 21.5, ball 38.2' in text
