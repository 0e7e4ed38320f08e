"""``benchmarks/gpu_suite.py``: the GPU suite's ``--smoke`` run on the CPU and its README modes.

The suite is written for a lent GPU machine (see docs/gpu_suite.md); these tests run it on the
CPU with tiny shapes and ``test`` archs, the Triton kernels under ``TRITON_INTERPRET=1``, so that
every section, the JSON layout, the markdown and the README section generation stay working.
No test asserts a time: only that the measurements exist and are positive, and that the
correctness checks pass.
"""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO_ROOT, 'benchmarks', 'gpu_suite.py')
HAS_TRITON = importlib.util.find_spec('triton') is not None
SECTIONS = ('environment', 'scan_check', 'scan_speed', 'backbones')


def load_suite_module():
    """The script as a module (its top level imports the standard library only)."""
    spec = importlib.util.spec_from_file_location('gpu_suite', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    proc = subprocess.run([sys.executable, SCRIPT, *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    """One ``--smoke`` run: (result JSON, markdown file, stdout, output folder)."""
    out = tmp_path_factory.mktemp('gpu_suite')
    proc = run_script('--smoke', '--out', str(out))
    with open(out / 'gpu_suite.json') as f:
        result = json.load(f)
    return result, (out / 'gpu_suite.md').read_text(), proc.stdout, out


def test_smoke_run_records_every_section_without_errors(smoke):
    result, _, stdout, _ = smoke
    assert result['smoke'] is True and result['device'] == 'cpu'
    assert set(result['sections']) == set(SECTIONS)
    for name, entry in result['sections'].items():
        assert entry['status'] == 'ok', (name, entry.get('error'), entry.get('reason'),
                                         entry.get('traceback'))
    env = result['sections']['environment']
    assert env['copy_gb_s'] > 0 and env['gemm_fp32_tmac_s'] > 0
    assert '[gpu_suite ' in stdout  # timestamped progress lines


def test_smoke_run_needs_no_openmmlab_task_package(smoke):
    # The lent GPU machine has mmengine (carried as a wheel) but no mmcv, mmdet or mmseg.
    result = smoke[0]
    assert result['openmmlab_modules'] == []
    assert {'mmengine', 'timm', 'torch'} <= set(result['child_modules']['backbones'])


@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_smoke_run_checks_the_triton_scan_against_the_reference(smoke):
    result = smoke[0]
    assert result['triton_interpret'] is True
    entry = result['sections']['scan_check']
    assert [r['key'] for r in entry['rows']] == result['plan']['scan_check']
    for row in entry['rows']:
        assert row['status'] == 'ok', row
        assert set(row['errors']) >= {'out', 'last', 'du', 'ddelta', 'dA', 'dB', 'dC'}
        assert row['passed'] and row['max_error'] < entry['tolerance'], row
    assert entry['all_passed'] is True


@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_smoke_run_times_the_scan_against_its_memory_floor(smoke):
    result = smoke[0]
    rows = result['sections']['scan_speed']['rows']
    assert {r['backend'] for r in rows} == {'triton', 'torch'}
    for row in rows:
        assert row['status'] == 'ok', row
        shape = row['shape']
        expected_mb = 4 * shape['batch'] * (3 * shape['dim'] * shape['L']
                                            + 2 * shape['groups'] * shape['N'] * shape['L'])
        assert row['floor_fwd_mb'] == pytest.approx(expected_mb / 1e6)
        assert row['fwd_ms'] > 0 and row['fwd_bwd_ms'] > 0 and row['x_floor_fwd'] > 0
    torch_row = next(r for r in rows if r['backend'] == 'torch')
    assert torch_row['fwd_vs_triton'] > 0


def test_smoke_run_measures_every_backbone_in_both_precisions(smoke):
    result = smoke[0]
    rows = result['sections']['backbones']['rows']
    models = {r['backbone'] for r in rows}
    assert models == {'mambaout_ours', 'mambaout_timm', 'vmamba_ours', 'swin_timm'}
    assert {r['dtype'] for r in rows} == {'bf16', 'fp32'}
    assert len(rows) == 8
    for row in rows:
        assert row['status'] == 'ok', row
        assert row['images_per_s'] > 0 and row['ms_per_iter'] > 0
        # four NCHW maps at strides 4, 8, 16, 32 of the 2 x 32x32 input, for every model
        assert [s[0] for s in row['output_shapes']] == [2] * 4, row
        assert [tuple(s[2:]) for s in row['output_shapes']] == [(8, 8), (4, 4), (2, 2),
                                                                 (1, 1)], row
        assert row['speed_vs_swin'] > 0
    # the smoke run's VMamba uses the pure-PyTorch scan (the interpreter is too slow for a
    # whole backbone); a GPU run uses the Triton kernels
    vmamba = [r for r in rows if r['backbone'] == 'vmamba_ours']
    assert {(r['scan_backend'], r['model']) for r in vmamba} == {
        ('torch', 'VMamba-T (ours, torch scan)')}
    ours = next(r for r in rows if r['backbone'] == 'mambaout_ours')
    assert ours['speed_vs_timm_mambaout'] > 0


def test_smoke_markdown_lists_the_measured_rows(smoke):
    result, md, stdout, _ = smoke
    assert 'Smoke run on the CPU' in md
    assert 'not measured' not in md
    for label in ('MambaOut-T (ours)', 'MambaOut-T (timm)', 'VMamba-T (ours, torch scan)',
                  'Swin-T (timm)', 'bf16 autocast', 'fp32', 'x floor'):
        assert label in md
    ms = result['sections']['backbones']['rows'][0]['ms_per_iter']
    module = load_suite_module()
    assert module._fmt(ms) in md
    assert md.strip() in stdout  # the same report is printed


def test_readme_placeholder_then_from_a_stored_run(smoke, tmp_path):
    result_path = smoke[3] / 'gpu_suite.json'
    readme = tmp_path / 'README.md'
    readme.write_text('# title\n\nbody\n')
    run_script('--readme-placeholder', '--readme-path', str(readme))
    text = readme.read_text()
    assert text.startswith('# title\n\nbody\n')
    section = text.split('<!-- speed-gpu:begin -->')[1].split('<!-- speed-gpu:end -->')[0]
    # every GPU row of the plan is listed, unmeasured: 4 checks, 4 scan cases, 16 backbone rows
    assert section.count('not measured') >= 4 + 4 + 16
    assert 'Swin-T (timm)' in section and '8 x 512x512' in section
    run_script('--readme-from', str(result_path), '--readme-path', str(readme))
    text = readme.read_text()
    assert text.count('<!-- speed-gpu:begin -->') == 1
    section = text.split('<!-- speed-gpu:begin -->')[1].split('<!-- speed-gpu:end -->')[0]
    assert 'not measured' not in section
    assert 'Smoke run on the CPU' in section


def test_a_failing_section_is_recorded_and_the_next_one_still_runs(tmp_path):
    module = load_suite_module()
    suite = module.Suite(str(tmp_path), budget_s=60)

    def broken():
        raise RuntimeError('kernel exploded')

    first = suite.section('scan_check', broken)
    second = suite.section('environment', lambda: {'environment': 'here'})
    assert first['status'] == 'error' and 'kernel exploded' in first['error']
    assert second['status'] == 'ok'
    with open(tmp_path / 'gpu_suite.json') as f:
        stored = json.load(f)
    assert stored['sections']['scan_check']['status'] == 'error'
    assert stored['sections']['environment']['environment'] == 'here'
    assert 'kernel exploded' in (tmp_path / 'gpu_suite.md').read_text()


def test_the_time_budget_skips_work_instead_of_overrunning(tmp_path):
    module = load_suite_module()
    suite = module.Suite(str(tmp_path), budget_s=0)
    ran = []
    entry = suite.section('backbones', lambda: ran.append(1) or {})
    assert entry['status'] == 'skipped' and not ran
    row = module.guarded_row(suite, {'key': 'x'}, lambda: ran.append(1) or {})
    assert row['status'] == 'skipped' and not ran


def test_a_crashed_child_part_keeps_the_rows_it_finished(tmp_path, monkeypatch):
    # On the GPU each part runs in a child process, so that a kernel fault that breaks the
    # CUDA context loses one part at most; here the child is faked.
    module = load_suite_module()
    suite = module.Suite(str(tmp_path), budget_s=120)
    case = module.GPU_SCAN_SPEED[0][0]
    finished = {'key': f'{case} | triton', 'case': case, 'backend': 'triton', 'status': 'ok',
                'fwd_ms': 0.123, 'fwd_bwd_ms': 0.5, 'floor_fwd_ms': 0.02,
                'floor_fwd_bwd_ms': 0.05, 'x_floor_fwd': 6.15, 'x_floor_fwd_bwd': 10.0}
    calls = []

    def crashing_child(cmd, timeout):
        calls.append((cmd, timeout))
        partial = {'sections': {'scan_check': {'status': 'ok', 'rows': []},
                                'scan_speed': {'status': 'running', 'rows': [finished]}}}
        with open(osp.join(cmd[cmd.index('--out') + 1], 'gpu_suite.json'), 'w') as f:
            json.dump(partial, f)
        return subprocess.CompletedProcess(cmd, -11)

    monkeypatch.setattr(subprocess, 'run', crashing_child)
    module.run_part_isolated(suite, 'scan', 'cuda', False, 5, 3e12)
    (cmd, timeout), = calls
    assert cmd[cmd.index('--child-part') + 1] == 'scan' and 0 < timeout <= 120
    sections = suite.result['sections']
    assert sections['scan_check']['status'] == 'ok'
    assert sections['scan_speed']['status'] == 'error'
    assert 'exit status -11' in sections['scan_speed']['error']
    assert sections['scan_speed']['rows'] == [finished]
    md = (tmp_path / 'gpu_suite.md').read_text()
    assert '0.123' in md and 'exit status -11' in md

    def hanging_child(cmd, timeout):
        raise subprocess.TimeoutExpired(cmd, timeout)

    monkeypatch.setattr(subprocess, 'run', hanging_child)
    module.run_part_isolated(suite, 'backbones', 'cuda', False, 5, 3e12)
    entry = suite.result['sections']['backbones']
    assert entry['status'] == 'error' and 'killed at the time limit' in entry['error']
    assert suite.result['sections']['scan_speed']['rows'] == [finished]  # earlier parts kept
