"""Both dense long-range arms end to end on a tiny budget, through tools/train.py.

Each arm: one run (learned flag and report), then the same command again (resume: nothing is
retrained, and a new learned threshold re-gates the stored run).
"""
import json
import os
import os.path as osp
import subprocess
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = ['--seeds', '0', '--scene-grid', '16', '--near', '3', '--distances', '8', '--iters', '2',
        '--batch', '2', '--num-train', '4', '--num-val', '2', '--curve-points', '2',
        '--no-cost']


def _run(tool, *args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'analysis', tool),
                           *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)
    proc.output = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.output[-4000:]
    return proc


def _results(work, arm):
    with open(work / f'{arm}_results.json') as f:
        return json.load(f)


def test_upernet_arm_gates_resumes_and_writes_the_report_section(tmp_path):
    work, md = tmp_path / 'work', tmp_path / 'results.md'
    md.write_text('# Results\n\n<!-- other:begin -->\nkept\n<!-- other:end -->\n')
    args = ['--arm', 'upernet', '--backbones', 'mambaout', '--sizes', '64', *TINY,
            '--work-dir', work, '--results-md', md]
    proc = _run('longrange_experiment.py', *args, '--learned-threshold', '0', cwd=tmp_path)
    assert '1 to run' in proc.output and 'ETA' in proc.output
    res = _results(work, 'upernet')
    (rec, ) = res['records']
    assert rec['cell'] == 'upernet/mambaout/s64/d8/seed0' and rec['learned'] and rec['scored']
    assert [p[0] for p in rec['curve']] == [1, 2] and rec['iters_done'] == 2
    assert 0 <= rec['acc'] <= 1 and 0 <= rec['acc_control'] <= 1 and rec['targets'] == 4
    assert len(rec['provenance']['commit']) == 40 and rec['loss_curve']
    assert rec['far_px'] == 32 and res['lengths'][0]['distance_tokens'] in (3, 8)
    text = md.read_text()
    assert '<!-- other:begin -->\nkept' in text and '**upernet arm**' in text
    assert '| upernet/mambaout/s64/d8/seed0 | yes |' in text
    # trained-model ERFs of the scored run, beside random weights: one row per stage
    assert [e['stage'] for e in res['erf']] == [1, 2, 3, 4]
    assert all(e['r90'] > 0 and e['r90_trained'] > 0 for e in res['erf'])
    assert (work / 'erf' / 'erf_upernet_mambaout_s64_seed0_trained.png').is_file()
    assert '**Effective receptive fields**' in text and 'trained stage-4 ERF' in text
    scalars = next((work / 'runs').rglob('scalars.json'))
    stamp = scalars.stat().st_mtime_ns

    proc = _run('longrange_experiment.py', *args, '--learned-threshold', '0.99', cwd=tmp_path)
    assert '1 stored' in proc.output and '0 to run' in proc.output
    assert scalars.stat().st_mtime_ns == stamp  # not retrained
    assert len((work / 'upernet_cells.jsonl').read_text().splitlines()) == 1
    (rec, ) = _results(work, 'upernet')['records']
    assert not rec['learned'] and not rec['scored']
    assert _results(work, 'upernet')['erf'] == []  # no scored run: no trained-model ERF
    text = md.read_text()
    assert 'not scored: upernet/mambaout/s64/d8/seed0' in text
    assert text.count('<!-- longrange-upernet:begin -->') == 1


def test_maskrcnn_arm_stores_ap_per_group_and_resumes(tmp_path):
    work, md = tmp_path / 'work', tmp_path / 'results.md'
    md.write_text('# Results\n')
    args = ['--arm', 'maskrcnn', '--backbones', 'vmamba', '--sizes', '128', *TINY,
            '--work-dir', work, '--results-md', md]
    _run('longrange_dense.py', *args, cwd=tmp_path)
    (rec, ) = _results(work, 'maskrcnn')['records']
    for group in ('near', 'far'):
        assert {'bbox_mAP', 'segm_mAP', 'recall50', 'colour_acc', 'targets'} <= \
            set(rec['scores'][group])
        assert rec['scores'][group]['targets'] == 4  # 2 images x 2 targets
    # two iterations find nothing: the run is stored, not learned, not scored
    assert not rec['learned'] and not rec['scored'] and len(rec['curve']) == 2
    assert '**maskrcnn arm**' in md.read_text() and 'bbox_mAP near / far' in md.read_text()
    proc = _run('longrange_dense.py', *args, cwd=tmp_path)
    assert '0 to run' in proc.output


def test_gpu_preset_plans_both_arms_every_size_and_three_seeds_and_flags_win(tmp_path):
    proc = _run('longrange_dense.py', '--arm', 'both', '--preset', 'gpu', '--dry-run',
                '--no-cost', '--work-dir', tmp_path, cwd=tmp_path)
    plans = [line for line in proc.output.splitlines() if ' runs: ' in line]
    assert [p.split('] ')[1].split(':')[0] for p in plans] == ['18 runs', '18 runs']
    assert 'upernet/hybrid/s256/d20/seed2' in plans[0]
    assert 'maskrcnn/mambaout/s128/d20/seed0' in plans[1]
    proc = _run('longrange_dense.py', '--arm', 'upernet', '--preset', 'gpu', '--sizes', '128',
                '--dry-run', '--no-cost', '--work-dir', tmp_path, cwd=tmp_path)
    assert '9 runs: ' in proc.output and 's256' not in proc.output


def test_upernet_shortcut_baseline_runs_through_the_same_runner_and_is_reported_apart(tmp_path):
    """--backbones local: one tools/train.py run, stored and gated like a backbone's, reported in
    its own table with its measured reach. At 64 px on a 16-token grid the far marker (d = 8)
    starts 21 px from its target, inside the baseline's field, and the verdict says so."""
    work, md = tmp_path / 'work', tmp_path / 'results.md'
    md.write_text('# Results\n')
    _run('longrange_dense.py', '--arm', 'upernet', '--backbones', 'local', '--sizes', '64',
         *TINY, '--learned-threshold', '0', '--work-dir', work, '--results-md', md,
         cwd=tmp_path)
    res = _results(work, 'upernet')
    (rec, ) = res['records']
    assert rec['cell'] == 'upernet/local/s64/d8/seed0' and rec['scored']
    assert rec['config'] == 'upernet_longrange_local_femto.py' and len(rec['curve']) == 2
    assert res['erf'] == []  # one stage: no trained-model ERF, its reach is measured instead
    (g, ) = res['baseline_reach']
    assert (g['baseline'], g['size'], g['far'], g['far_gap_px']) == ('local', 64, 8, 21)
    assert not g['far_out_of_view']
    text = md.read_text()
    assert '**Shortcut baseline**, not a contender' in text
    assert '| local | 64 | 8 (32) | 1/1/1 |' in text and 'so it is no baseline here' in text
    assert '| upernet/local/s64/d8/seed0 | yes |' in text
    # Mask R-CNN has no baseline: refused before anything runs, also when it comes second
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'analysis',
                                                    'longrange_dense.py'),
                           '--arm', 'both', '--backbones', 'mambaout', 'local', '--dry-run',
                           '--no-cost', '--work-dir', str(tmp_path / 'both')],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 2 and 'upernet arm only, not maskrcnn' in proc.stderr
    assert not (tmp_path / 'both').exists()
