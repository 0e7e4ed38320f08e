"""The main-job profiler times every part it names, for both tasks, through the real runner."""
import os.path as osp

import main_job
import main_job_profile as prof
import pytest


@pytest.mark.parametrize('task', sorted(prof.PARTS))
def test_every_named_part_is_timed(task, tmp_path, monkeypatch):
    from mambaout_dense.datasets.synthetic.ade import generate_ade
    from mambaout_dense.datasets.synthetic.coco import generate_coco
    data = str(tmp_path / main_job.TASKS[task]['data'])
    if task == 'det':
        generate_coco(data, num_train=6, num_val=1, size=96)
    else:
        generate_ade(data, num_train=6, num_val=1, size=96)
    monkeypatch.setattr(prof, 'ROOT', str(tmp_path))
    config = osp.join(main_job.ROOT, main_job.TASKS[task]['config'])  # the repo's own config
    monkeypatch.setattr(prof, 'TASKS', {task: dict(main_job.TASKS[task], config=config)})
    res = prof.profile(task, iters=1, warmup=1, threads=1)
    timed = {p['part'] for p in res['parts']}
    hooked, rest = prof.PARTS[task]
    assert {label for _, label in hooked} <= timed
    assert {'loss backward', 'optimizer step (AdamW, clip)', 'waiting for the data loader',
            rest} <= timed
    assert all(p['s'] >= 0 for p in res['parts'] if p['part'] != rest)
    assert res['task'] == task and res['s_per_iter'] > 0
    text = prof.report(res)
    assert ('detector' if task == 'det' else 'segmentor') in text.splitlines()[0]
