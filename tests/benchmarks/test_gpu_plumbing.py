"""``benchmarks/gpu_plumbing.py``: atomic writes, rows that survive faults, caps and children.

In-process tests of the machinery the GPU suite's one call relies on; the child processes are
faked where a test needs them to crash, hang or write a broken file.
"""
import ast
import json
import os
import subprocess
import time

import gpu_plumbing as gp
import pytest

PLAN = [{'key': f'row {i}', 'i': i} for i in range(4)]


def make_suite(tmp_path, budget_s=60.0, **kwargs):
    return gp.Suite(str(tmp_path), time.time() + budget_s, **kwargs)


def run_rows(suite, name='s', fail=None):
    """A section measuring PLAN, each row reading the JSON on disk first; ``fail`` maps a row
    index to the exception it raises."""
    seen_on_disk = []

    def measure(i):
        with open(suite.json_path) as f:
            seen_on_disk.append(len(json.load(f)['sections'][name]['rows']))
        if fail and i in fail:
            raise fail[i]
        return {'value': i * 10}

    def body():
        for r in PLAN:
            suite.row(r, lambda r=r: measure(r['i']))
        return {'extra': 1}

    return suite.section(name, body, PLAN), seen_on_disk


def statuses(entry):
    return [r['status'] for r in entry['rows']]


def test_every_row_is_on_disk_before_the_next_one_starts(tmp_path, monkeypatch):
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(gp.os, 'replace', lambda a, b: replaced.append(b) or real_replace(a, b))
    suite = make_suite(tmp_path)
    entry, seen = run_rows(suite)
    assert seen == [0, 1, 2, 3]  # row i found rows 0 .. i-1 in the file
    assert statuses(entry) == ['ok'] * 4 and entry['extra'] == 1
    assert replaced.count(suite.json_path) >= 5  # written through os.replace, row by row
    assert sorted(os.listdir(tmp_path)) == ['gpu_suite.json']  # no temporary file left


def test_a_fault_marks_its_row_and_the_later_ones_never_the_earlier_ones(tmp_path):
    suite = make_suite(tmp_path, inject={'s': 1})
    entry, seen = run_rows(suite)
    assert statuses(entry) == ['ok', 'fault', 'not run', 'not run']
    assert entry['status'] == 'fault' and 'row 1' in entry['error']
    assert entry['rows'][0]['value'] == 0
    with open(suite.json_path) as f:
        assert json.load(f)['sections']['s']['rows'][0]['value'] == 0
    # the device is gone for this process: the next section is skipped, rows listed
    later = suite.section('t', lambda: pytest.fail('ran after a fault'), PLAN)
    assert later['status'] == 'skipped' and 'faulted earlier' in later['reason']
    assert statuses(later) == ['skipped'] * 4


def test_a_negative_injection_index_counts_from_the_end_of_the_plan(tmp_path):
    entry, _ = run_rows(make_suite(tmp_path, inject={'s': -1}))
    assert statuses(entry) == ['ok', 'ok', 'ok', 'fault']


def test_an_ordinary_error_marks_its_row_only(tmp_path):
    entry, _ = run_rows(make_suite(tmp_path), fail={1: ValueError('bad shape')})
    assert statuses(entry) == ['ok', 'error', 'ok', 'ok']
    assert 'bad shape' in entry['rows'][1]['error'] and entry['status'] == 'ok'


def test_a_cuda_error_that_breaks_the_device_is_a_fault(tmp_path, monkeypatch):
    monkeypatch.setattr(gp, 'device_healthy', lambda device: False)
    entry, _ = run_rows(make_suite(tmp_path, device='cuda'),
                        fail={2: RuntimeError('CUDA error: an illegal memory access')})
    assert statuses(entry) == ['ok', 'ok', 'fault', 'not run']


def test_out_of_memory_is_never_a_fault():
    oom = type('OutOfMemoryError', (RuntimeError, ), {})('CUDA out of memory')
    assert not gp.is_fault(oom, 'cuda')
    assert gp.is_fault(gp.InjectedFault('x'), 'cpu')
    assert not gp.is_fault(RuntimeError('x'), 'cpu')


def test_empty_cache_is_skipped_after_a_fault_and_guarded(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gp, 'release_cached_memory', lambda device: calls.append(device))
    run_rows(make_suite(tmp_path, inject={'s': 2}))
    assert len(calls) == 2  # after rows 0 and 1, not after the fault
    import torch
    monkeypatch.undo()

    def sticky():
        raise RuntimeError('CUDA error: an illegal memory access was encountered')

    monkeypatch.setattr(torch.cuda, 'empty_cache', sticky)
    gp.release_cached_memory('cuda:0')  # does not raise


def test_a_failing_section_keeps_the_rows_it_measured(tmp_path):
    suite = make_suite(tmp_path)

    def body():
        suite.row(PLAN[0], lambda: {'value': 1})
        raise RuntimeError('the section broke between rows')

    entry = suite.section('s', body, PLAN)
    assert entry['status'] == 'error' and statuses(entry) == ['ok'] + ['not run'] * 3
    assert entry['rows'][0]['value'] == 1


def test_derived_fields_are_computed_after_a_fault_too(tmp_path):
    suite = make_suite(tmp_path, inject={'s': 2})

    def finish(rows):
        for r in rows:
            if r['status'] == 'ok':
                r['double'] = 2 * r['value']

    def body():
        for r in PLAN:
            suite.row(r, lambda r=r: {'value': r['i']})

    entry = suite.section('s', body, PLAN, finish=finish)
    assert [r.get('double') for r in entry['rows']] == [0, 2, None, None]


def test_the_time_budget_skips_work_instead_of_overrunning(tmp_path):
    suite = make_suite(tmp_path, budget_s=0)
    ran = []
    entry = suite.section('s', lambda: ran.append(1), PLAN)
    assert entry['status'] == 'skipped' and not ran and statuses(entry) == ['skipped'] * 4
    suite = make_suite(tmp_path, budget_s=gp.RESERVE_S + 30)
    entry = suite.section('s', lambda: [suite.row(r, lambda: {}, need_s=60) for r in PLAN],
                          PLAN)
    assert statuses(entry) == ['skipped'] * 4 and 'time budget' in entry['rows'][0]['reason']


def test_a_part_gets_its_cap_or_its_share_never_the_later_parts_time(tmp_path):
    suite = make_suite(tmp_path, budget_s=1000)
    assert gp.part_budget(suite, 120, 150) == 120  # plenty of time: the cap
    suite = make_suite(tmp_path, budget_s=100)
    share = gp.part_budget(suite, 120, 150)
    assert share == pytest.approx(100 * 120 / 270, abs=1)  # little time: a share, not all
    assert gp.part_budget(suite, 150, 0) == pytest.approx(100, abs=1)  # the last part


def test_the_child_gets_the_deadline_that_its_kill_timer_counts_to(tmp_path, monkeypatch):
    calls = []

    def child(cmd, timeout):
        calls.append((cmd, timeout, time.time()))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, 'run', child)
    suite = make_suite(tmp_path, budget_s=300)
    suite.result['plan'] = {'x': PLAN}
    gp.run_child(suite, 'part', ['x'], 100, ['--smoke'])
    (cmd, timeout, at), = calls
    deadline = float(cmd[cmd.index('--deadline') + 1])
    assert deadline == pytest.approx(at + 100, abs=1)
    assert timeout == pytest.approx(deadline + gp.KILL_GRACE_S - at, abs=1)
    entry = suite.result['sections']['x']  # the child wrote nothing
    assert entry['status'] == 'error' and 'no file' in entry['reason']
    assert statuses(entry) == ['error'] * 4


def fake_child(write):
    """A stand-in for ``subprocess.run`` that writes the child's JSON with ``write(path)``."""

    def run(cmd, timeout):
        out = cmd[cmd.index('--out') + 1]
        part = cmd[cmd.index('--child-part') + 1]
        os.makedirs(os.path.join(out, gp.PARTS_DIR), exist_ok=True)
        return write(os.path.join(out, gp.PARTS_DIR, f'{part}.json'), cmd)
    return run


def test_a_crashed_child_keeps_the_rows_it_finished(tmp_path, monkeypatch):
    done = dict(PLAN[0], status='ok', value=7)

    def crash(path, cmd):
        with open(path, 'w') as f:
            json.dump({'sections': {'a': {'status': 'ok', 'rows': []},
                                    'b': {'status': 'running', 'rows': [done]}}}, f)
        return subprocess.CompletedProcess(cmd, -11)

    monkeypatch.setattr(subprocess, 'run', fake_child(crash))
    suite = make_suite(tmp_path, budget_s=300)
    suite.result['plan'] = {'a': [], 'b': PLAN}
    gp.run_child(suite, 'part', ['a', 'b'], 100, [])
    b = suite.result['sections']['b']
    assert b['status'] == 'error' and 'exit status -11' in b['error']
    assert b['rows'][0] == done
    assert statuses(b) == ['ok', 'error', 'not run', 'not run']  # row 1 was running
    with open(tmp_path / 'gpu_suite.json') as f:
        assert json.load(f)['sections']['b']['rows'][0]['value'] == 7


def test_a_half_written_child_json_is_read_with_a_guard(tmp_path, monkeypatch):
    def truncated(path, cmd):
        with open(path, 'w') as f:
            f.write('{"sections": {"b": {"rows": [')
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(subprocess, 'run', fake_child(truncated))
    suite = make_suite(tmp_path, budget_s=300)
    suite.result['plan'] = {'b': PLAN}
    gp.run_child(suite, 'part', ['b'], 100, [])
    b = suite.result['sections']['b']
    assert b['status'] == 'error' and 'JSONDecodeError' in b['reason']


def test_a_hanging_child_is_killed_and_the_next_part_still_runs(tmp_path, monkeypatch):
    def hang(cmd, timeout):
        raise subprocess.TimeoutExpired(cmd, timeout)

    monkeypatch.setattr(subprocess, 'run', hang)
    suite = make_suite(tmp_path, budget_s=300)
    suite.result['plan'] = {'b': PLAN}
    assert gp.run_child(suite, 'part', ['b'], 100, []).startswith('killed at its cap')
    assert gp.run_child(suite, 'next', ['c'], 5, []) == 'not started'  # below MIN_PART_S
    assert suite.result['sections']['c']['status'] == 'skipped'


def test_the_blocked_imports_cover_every_optional_import_of_mmengine_optim():
    """mmengine.optim tries these at import and catches only ImportError (the device image has
    transformers, whose failure there could be another exception)."""
    import mmengine.optim.optimizer.builder as builder
    with open(builder.__file__) as f:
        tree = ast.parse(f.read())
    tried = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id == 'ImportError'
                for h in node.handlers):
            for stmt in node.body:
                if isinstance(stmt, ast.Import):
                    tried.update(a.name.split('.')[0] for a in stmt.names)
                elif isinstance(stmt, ast.ImportFrom):
                    tried.add(stmt.module.split('.')[0])
    assert 'transformers' in tried
    assert tried <= set(gp.OPTIONAL_IMPORTS), tried - set(gp.OPTIONAL_IMPORTS)
