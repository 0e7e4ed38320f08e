"""``benchmarks/gpu_suite.py`` end to end on the CPU: the dress rehearsal of its one GPU call.

The suite is written for a lent GPU machine (see docs/gpu_suite.md); these tests run it as CI
can: ``--smoke`` (tiny shapes, ``test`` archs, the Triton kernels under ``TRITON_INTERPRET=1``),
with its preflight, its child processes, its atomic writes and injected faults. No test asserts a
speed: only that the measurements exist and are positive, that the correctness checks pass, and
that the preflight answers within a minute.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SUITE = osp.join(REPO_ROOT, 'benchmarks', 'gpu_suite.py')
MEASURED = ('scan_check', 'scan_speed', 'backbones')


def load(out) -> dict:
    with open(out / 'gpu_suite.json') as f:
        return json.load(f)


def statuses(result: dict, section: str) -> list:
    return [r['status'] for r in result['sections'][section]['rows']]


@pytest.fixture(scope='module')
def smoke(tmp_path_factory, run_suite):
    """One ``--smoke`` run (its fault injected in the last backbone row): (result, markdown,
    stdout, output folder)."""
    out = tmp_path_factory.mktemp('gpu_suite')
    proc = run_suite('--smoke', '--out', str(out))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return load(out), (out / 'gpu_suite.md').read_text(), proc.stdout, out


def test_smoke_run_passes_its_preflight_and_records_every_section(smoke):
    result, _, stdout, _ = smoke
    assert result['smoke'] is True and result['device'] == 'cpu'
    assert result['triton_interpret'] is True
    assert result['preflight_verdict']['verdict'] == 'pass'
    assert 'preflight verdict: pass' in stdout
    assert set(result['sections']) == {'preflight', 'preflight_triton', 'environment',
                                       *MEASURED}
    for name, entry in result['sections'].items():
        expected = 'fault' if name == 'backbones' else 'ok'  # the injected fault
        assert entry['status'] == expected, (name, entry.get('error'), entry.get('reason'))
    env = result['sections']['environment']
    assert env['copy_gb_s'] > 0 and env['gemm_fp32_tmac_s'] > 0
    assert result['measured_rows'] > 0
    assert '[gpu_suite ' in stdout  # timestamped progress lines


def test_smoke_run_needs_no_openmmlab_task_package(smoke):
    # The lent GPU machine has mmengine (carried as a wheel) but no mmcv, mmdet or mmseg.
    result = smoke[0]
    assert result['openmmlab_modules'] == []
    assert {'mmengine', 'timm', 'torch'} <= set(result['children']['backbones']['modules'])


def test_smoke_run_checks_the_triton_scan_against_the_reference(smoke):
    result = smoke[0]
    for section in ('preflight_triton', 'scan_check'):
        entry = result['sections'][section]
        assert [r['key'] for r in entry['rows']] == [r['key'] for r in result['plan'][section]]
        for row in entry['rows']:
            assert row['status'] == 'ok', row
            assert set(row['errors']) >= {'out', 'last', 'du', 'ddelta', 'dA', 'dB', 'dC'}
            assert row['passed'] and row['max_error'] < row['tolerance'], row
    assert {r['dtype'] for r in result['sections']['preflight_triton']['rows']} == {'fp32',
                                                                                   'bf16'}


def test_smoke_run_times_every_available_registered_backend_against_the_floor(smoke):
    result = smoke[0]
    registry = result['sections']['environment']['scan_backends']
    rows = result['sections']['scan_speed']['rows']
    available = {name for name, state in registry.items() if state == 'available'}
    assert {r['backend'] for r in rows} == available - {'reference'}
    assert {'triton', 'torch'} <= available  # triton: under the interpreter
    for row in rows:
        assert row['status'] == 'ok', row
        shape = row['shape']
        expected_mb = 4 * shape['batch'] * (3 * shape['dim'] * shape['L']
                                            + 2 * shape['groups'] * shape['N'] * shape['L'])
        assert row['floor_fwd_mb'] == pytest.approx(expected_mb / 1e6)
        assert row['fwd_ms'] > 0 and row['fwd_bwd_ms'] > 0 and row['x_floor_fwd'] > 0
        assert row['fwd_vs_triton'] > 0


def test_smoke_run_keeps_the_backbone_rows_measured_before_the_injected_fault(smoke):
    result, _, _, out = smoke
    rows = result['sections']['backbones']['rows']
    assert [r['backbone'] for r in rows[:3]] == ['mambaout_ours', 'mambaout_timm', 'swin_timm']
    assert statuses(result, 'backbones') == ['ok'] * 7 + ['fault']
    assert 'InjectedFault' in rows[-1]['error']
    for row in rows[:7]:
        assert row['images_per_s'] > 0 and row['ms_per_iter'] > 0
        # four NCHW maps at strides 4, 8, 16, 32 of the 2 x 32x32 input, for every model
        assert [tuple(s[2:]) for s in row['output_shapes']] == [(8, 8), (4, 4), (2, 2), (1, 1)]
        assert row['speed_vs_swin'] > 0
    # the smoke run's VMamba uses the pure-PyTorch scan (the interpreter is too slow for a
    # whole backbone); a GPU run uses the Triton kernels
    assert rows[6]['model'] == 'VMamba-T (ours, torch scan)'
    assert rows[0]['speed_vs_timm_mambaout'] > 0
    # the child wrote the same rows to its own file as it measured them
    with open(out / 'parts' / 'backbones.json') as f:
        child = json.load(f)
    assert [r['key'] for r in child['sections']['backbones']['rows']] == [r['key'] for r in rows]


def test_smoke_markdown_lists_the_measured_rows(smoke):
    result, md, stdout, _ = smoke
    assert 'Smoke run on the CPU' in md and 'Preflight: pass' in md
    for label in ('MambaOut-T (ours)', 'MambaOut-T (timm)', 'VMamba-T (ours, torch scan)',
                  'Swin-T (timm)', 'bf16 autocast', 'fp32', 'x floor', 'preflight: N1 G4',
                  'fault (InjectedFault'):
        assert label in md
    from gpu_report import fmt
    assert fmt(result['sections']['backbones']['rows'][0]['ms_per_iter']) in md
    assert md.strip() in stdout  # the same report is printed


def test_readme_section_from_a_stored_run_then_removed(smoke, tmp_path, run_suite):
    readme = tmp_path / 'README.md'
    readme.write_text('# title\n\nbody\n')
    proc = run_suite('--readme-from', str(smoke[3]), '--readme-path', str(readme))
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text()
    assert text.startswith('# title\n\nbody\n') and text.count('<!-- speed-gpu:begin -->') == 1
    section = text.split('<!-- speed-gpu:begin -->')[1].split('<!-- speed-gpu:end -->')[0]
    assert 'Smoke run on the CPU' in section and 'not measured' not in section
    proc = run_suite('--readme-clear', '--readme-path', str(readme))
    assert proc.returncode == 0, proc.stderr
    assert readme.read_text() == '# title\n\nbody\n'  # no GPU section without GPU numbers


def test_a_fault_in_the_middle_of_a_section_keeps_the_earlier_rows_in_the_output(
        tmp_path, run_suite):
    proc = run_suite('--smoke', '--parts', 'backbones', '--inject-fault', 'backbones:3',
                     '--out', str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]  # rows measured
    result = load(tmp_path)
    rows = result['sections']['backbones']['rows']
    assert statuses(result, 'backbones') == ['ok'] * 3 + ['fault'] + ['not run'] * 4
    assert all(r['images_per_s'] > 0 for r in rows[:3])
    assert all('after the fault' in r['reason'] for r in rows[4:])
    assert result['measured_rows'] == 3
    with open(tmp_path / 'parts' / 'backbones.json') as f:
        child = json.load(f)
    assert child['sections']['backbones']['rows'][:3] == rows[:3]  # the child's own file


def test_preflight_prints_its_verdict_within_a_minute_on_the_cpu(tmp_path):
    """The preflight (wheels, imports, Triton fwd+bwd under the interpreter) answers first;
    measured from the process's start (about 15 s on 2 loaded cores)."""
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, SUITE, '--smoke', '--preflight-only', '--out',
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=REPO_ROOT, env=env)
    verdict, elapsed = None, None
    try:
        for line in proc.stdout:
            if 'preflight verdict:' in line:
                verdict, elapsed = line, time.monotonic() - start
                break
        code = proc.wait(timeout=300)
    finally:
        proc.kill()
    assert verdict is not None and 'preflight verdict: pass' in verdict, verdict
    assert elapsed < 60, f'verdict after {elapsed:.0f} s'
    assert code == 0
    result = load(tmp_path)
    assert [r['status'] for r in result['sections']['preflight']['rows']] == ['ok', 'ok']
    assert 'backbones' not in result['sections']  # nothing timed


def test_the_suite_exits_non_zero_when_nothing_was_measured(tmp_path, run_suite):
    # the imports row faults: nothing can run, every timed section says why
    proc = run_suite('--smoke', '--inject-fault', 'preflight:1', '--out', str(tmp_path))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'preflight verdict: fail' in proc.stdout and 'nothing was measured' in proc.stdout
    result = load(tmp_path)
    assert result['measured_rows'] == 0
    for name in MEASURED:
        assert result['sections'][name]['status'] == 'skipped'
        assert result['sections'][name]['reason'] == 'the preflight failed'
    assert result['sections']['preflight']['rows'][0]['status'] == 'ok'  # kept: before it


def test_a_run_whose_parent_was_killed_is_completed_from_the_childrens_files(smoke, tmp_path):
    import shutil

    from gpu_report import load_run, readme_text
    out = tmp_path / 'run'
    shutil.copytree(smoke[3], out)
    result = load(out)
    del result['sections']['backbones']  # the parent died before merging the last part
    (out / 'gpu_suite.json').write_text(json.dumps(result))
    merged = load_run(str(out))
    assert statuses(merged, 'backbones') == ['ok'] * 7 + ['fault']
    assert 'MambaOut-T (timm)' in readme_text(merged)
    with pytest.raises(FileNotFoundError, match='no readable run'):
        load_run(str(tmp_path / 'absent'))
