"""The long-range driver end to end on a tiny budget (with resume), then the report."""
import json
import os.path as osp
import subprocess
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO_ROOT, 'tools', 'analysis')
SETTINGS = ['--mixers', 'gated_cnn', 'ss2d', '--seeds', '0', '1', '--iters', '3', '--batch',
            '8', '--dim', '16', '--depth', '1', '--eval-samples', '8', '--curve-every', '2',
            '--curve-samples', '4', '--jobs', '1', '--l-distance', '6']
TINY = SETTINGS + ['--axes', 'd', 'L', '--d-grid', '14', '--distances', '6', '--l-grids', '14',
                   '16']


def _run(script, *args):
    return subprocess.run([sys.executable, osp.join(TOOLS, script), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)


def test_longrange_driver_resumes_then_report_rewrites_the_readme_section(tmp_path):
    work = tmp_path / 'work'
    proc = _run('longrange_experiment.py', *TINY, '--work-dir', work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'latency ms / image' in proc.stderr and 'ETA' in proc.stderr
    # 2 mixers x {(14, 6) shared by d and L, (16, 6)} x 2 seeds
    lines = (work / 'cells.jsonl').read_text().splitlines()
    assert len(lines) == 2 * 2 * 2
    res = json.loads((work / 'results.json').read_text())
    assert {(r['mixer'], r['grid'], r['seed']) for r in res['records']} == {
        (m, g, s) for m in ('gated_cnn', 'ss2d') for g in (14, 16) for s in (0, 1)}
    assert res['fields'] == {'gated_cnn': 3.0, 'ss2d': None, 'gated_cnn_gap': 3.0}
    assert all(0.0 <= r['acc'] <= 1.0 and r['iters_done'] == 3 for r in res['records'])
    rec = res['records'][0]
    assert rec['curve'] and len(rec['provenance']['commit']) == 40 and rec['provenance']['argv']
    assert res['provenance']['versions']['torch'] and res['sessions'][0]['command']
    assert {c['grid'] for c in res['cost']} == {14, 16} and all(c['flops'] for c in res['cost'])
    for name in ('accuracy_vs_distance', 'accuracy_vs_length', 'accuracy_vs_cost'):
        assert (work / f'{name}.png').is_file(), name

    # a killed sweep: drop the last finished cell; the rerun trains only that one
    (work / 'cells.jsonl').write_text('\n'.join(lines[:-1]) + '\n')
    proc = _run('longrange_experiment.py', *TINY, '--work-dir', work, '--no-cost')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '7 done' in proc.stderr and '1 to run' in proc.stderr
    assert len((work / 'cells.jsonl').read_text().splitlines()) == 8
    sessions = json.loads((work / 'results.json').read_text())['sessions']
    assert [s['cells_run'] for s in sessions] == [8, 1]
    # another axis into the same work dir keeps the earlier records and tables
    proc = _run('longrange_experiment.py', *SETTINGS, '--axes', 'D', '--dims', '16', '32',
                '--dim-grid', '14', '--work-dir', work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((work / 'results.json').read_text())
    assert set(res['plan']['points']) == {'d', 'L', 'D'} and len(res['records']) == 8 + 4

    readme = tmp_path / 'README.md'
    readme.write_text('# title\n\n<!-- long-sequence:begin -->\nSTALE SECTION\n'
                      '<!-- long-sequence:end -->\n\n## after\n')
    docs = tmp_path / 'docs'
    proc = _run('report.py', '--only', 'longrange', 'long_sequence', '--docs', docs, '--readme',
                readme, '--longrange-results', work / 'results.json')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    page = (docs / 'longrange' / 'results.md').read_text()
    assert 'Smoke run' in page and 'Verdict' in page and '| gated_cnn |' in page
    assert '**Axis D**' in page and 'Every run' in page
    assert (docs / 'longrange' / 'results.json').is_file()
    assert (docs / 'longrange' / 'accuracy_vs_width.png').is_file()
    text = readme.read_text()
    assert text.startswith('# title\n') and text.rstrip().endswith('## after')
    assert 'STALE SECTION' not in text and '## Probing the long-sequence hypothesis' in text
    assert '| 224×224 | L=3136, 5.44 |' in text  # the token table of MambaOut-T
    assert 'ss2d − gated_cnn' in text and 'longrange_experiment.py --mixers' in text
    assert '**Axis L**' in text and '| mixer | field radius (tokens) |' in text

    # the stored copy in docs/ is enough to regenerate (no work dir)
    proc = _run('report.py', '--only', 'longrange', '--docs', docs, '--readme', readme,
                '--longrange-results', tmp_path / 'missing.json')
    assert proc.returncode == 0 and 'ss2d − gated_cnn' in readme.read_text()


def test_upernet_arm_runs_tools_train_per_cell_and_flags_an_untrained_run(tmp_path):
    """The second arm end to end: written data, tools/train.py per cell, the learned flag."""
    work = tmp_path / 'upernet'
    args = ['--arm', 'upernet', '--backbones', 'mambaout', '--iters', '2', '--batch', '2',
            '--seeds', '0', '--distances', '8', '--size', '64', '--num-train', '4',
            '--num-val', '2', '--work-dir', work]
    proc = _run('longrange_experiment.py', *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '2 to run' in proc.stderr and 'ETA' in proc.stderr
    res = json.loads((work / 'upernet_results.json').read_text())
    assert res['distances'] == [3, 8]  # the local control first
    assert {(r['mixer'], r['distance']) for r in res['records']} == {('mambaout', 3),
                                                                     ('mambaout', 8)}
    # two iterations learn nothing: every run is labelled, none counts as evidence
    assert all(0.0 <= r['acc'] <= 1.0 and r['learned'] is False for r in res['records'])
    assert '(0/1)' in (work / 'upernet_results.md').read_text()
    # resumable: a rerun finds both cells done and trains nothing
    proc = _run('longrange_experiment.py', *args)
    assert proc.returncode == 0 and '2 done, 0 to run' in proc.stderr, proc.stderr[-3000:]
