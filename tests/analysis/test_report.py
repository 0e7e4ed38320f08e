"""The long-range driver and the report on a tiny run: one backbone, 2 iterations, 64 px."""
import json
import os.path as osp
import subprocess
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO_ROOT, 'tools', 'analysis')


def _run(script, *args):
    return subprocess.run([sys.executable, osp.join(TOOLS, script), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)


def test_longrange_driver_then_report_rewrites_the_readme_section(tmp_path):
    work = tmp_path / 'work'
    proc = _run('longrange_experiment.py', '--generate', '--max-iters', 2, '--size', 64,
                '--num-train', 4, '--num-val', 2, '--batch-size', 2, '--workers', 0,
                '--backbones', 'mambaout', '--data-root', tmp_path / 'data', '--work-dir', work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(work / 'results.json') as f:
        res = json.load(f)
    runs = {(r['backbone'], r['variant']): r for r in res['runs']}
    assert set(runs) == {('mambaout', 'far'), ('mambaout', 'local')}
    for run in runs.values():
        assert run['status'] == 'ok' and run['iters'] == 2
        assert 0.0 <= run['mIoU'] <= 100.0
        assert set(run['iou']) == {'cue_a', 'cue_b', 'background'}
    table = (work / 'results.md').read_text()
    assert '| mambaout |' in table and 'cue-blind oracle' in table

    # without --generate, a data root holding another set is refused (nothing overwritten)
    proc = _run('longrange_experiment.py', '--max-iters', 2, '--size', 96, '--num-train', 4,
                '--num-val', 2, '--backbones', 'mambaout', '--data-root', tmp_path / 'data',
                '--work-dir', tmp_path / 'work2')
    assert proc.returncode != 0 and 'pass --generate' in proc.stderr

    readme = tmp_path / 'README.md'
    readme.write_text('# title\n\n<!-- long-sequence:begin -->\nold\n<!-- long-sequence:end -->\n'
                      '\n## after\n')
    docs = tmp_path / 'docs'
    proc = _run('report.py', '--only', 'longrange', 'long_sequence', '--docs', docs, '--readme',
                readme, '--longrange-results', work / 'results.json')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    longrange_md = (docs / 'longrange.md').read_text()
    assert 'Smoke run' in longrange_md and '| mambaout |' in longrange_md
    text = readme.read_text()
    assert text.startswith('# title\n') and text.rstrip().endswith('## after')
    assert 'old' not in text and '## Probing the long-sequence hypothesis' in text
    assert '| 224×224 | L=3136, 5.44 |' in text  # the token table of MambaOut-T
