"""What the GPU suite's one call needs before it starts: the wheelhouse, the imports, the
repository on ``sys.path`` and the documented device call.
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import gpu_plumbing
import gpu_preflight
import gpu_suite
import pytest

REPO_ROOT = gpu_plumbing.REPO_ROOT
DOC = osp.join(REPO_ROOT, 'docs', 'gpu_suite.md')
#: The device tool's limits: a command's length, files back from $OUT.
MAX_COMMAND_CHARS, MAX_FILES_BACK = 2000, 8
#: "The whole call fits in 7 minutes including compile" (issue 21).
MAX_CALL_S = 7 * 60


def device_call() -> dict:
    with open(DOC) as f:
        text = f.read()
    block = text.split('<!-- device-call:begin -->')[1].split('<!-- device-call:end -->')[0]
    return json.loads(block.strip().removeprefix('```json').removesuffix('```'))


def test_the_device_call_is_documented_within_the_tool_limits():
    call = device_call()
    command = call['command']
    assert len(command) <= MAX_COMMAND_CHARS, len(command)
    assert call['carry'] == [gpu_preflight.WHEELHOUSE]
    assert f'--wheelhouse {gpu_preflight.WHEELHOUSE}' in command
    assert 'python3 benchmarks/gpu_suite.py' in command and '--out $OUT' in command
    assert '$PWD' not in command  # the suite finds the repository itself
    # the call's limit holds the suite's budget and the time to install the wheels
    assert gpu_suite.GPU_BUDGET_S + 20 <= call['timeout_s'] <= MAX_CALL_S
    assert sum(gpu_suite.PART_CAPS_S.values()) + 20 <= gpu_suite.GPU_BUDGET_S
    assert 3 + len(gpu_suite.PARTS) <= MAX_FILES_BACK  # json, md, log + parts/<part>.json
    subprocess.run(['bash', '-n', '-c', command], check=True)  # it parses


def test_the_wheelhouse_script_lists_the_pins_the_preflight_checks():
    script = gpu_preflight.WHEELHOUSE_SCRIPT
    listed = subprocess.run(['bash', script, '--list'], capture_output=True, text=True,
                            check=True).stdout.split()
    assert listed == [f'{n}=={v}' for n, v in gpu_preflight.pinned_wheels()]
    with open(script) as f:  # its default destination is what the call carries
        assert f'$ROOT/{gpu_preflight.WHEELHOUSE}' in f.read()


def requirement_closure(names):
    """The installed distributions ``names`` require, transitively (normalized names)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    seen, todo = set(), [gpu_preflight.normalize(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        seen.add(name)
        for text in reqs:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({'extra': ''}):
                todo.append(gpu_preflight.normalize(req.name))
    return seen


def test_the_wheelhouse_holds_exactly_what_the_device_image_lacks(run_suite):
    """The suite's third-party imports, less the image's distributions and what they require,
    are the pinned wheels: none missing, none carried for nothing."""
    from importlib.metadata import packages_distributions
    proc = run_suite('--check-imports')
    assert proc.returncode == 0, proc.stderr
    owners = packages_distributions()
    imported = {gpu_preflight.normalize(d) for m in proc.stdout.split()
                for d in owners.get(m, [])}
    provided = requirement_closure(gpu_preflight.DEVICE_PACKAGES)
    needed = imported - provided - {'mambaout-dense'}
    assert needed == {gpu_preflight.normalize(n) for n, _ in gpu_preflight.pinned_wheels()}


def test_the_wheel_check_names_what_is_missing_from_the_wheelhouse(tmp_path):
    pins = gpu_preflight.pinned_wheels()
    with pytest.raises(RuntimeError, match='no wheelhouse'):
        gpu_preflight.check_wheels(str(tmp_path / 'absent'))
    for name, version in pins[1:]:
        (tmp_path / f'{name.replace("-", "_")}-{version}-py3-none-any.whl').write_bytes(b'')
    first = f'{pins[0][0]}=={pins[0][1]}'
    with pytest.raises(RuntimeError, match=re.escape(f'{first} not in')):
        gpu_preflight.check_wheels(str(tmp_path))
    (tmp_path / f'{pins[0][0]}-{pins[0][1]}-py3-none-any.whl').write_bytes(b'')
    assert set(gpu_preflight.check_wheels(str(tmp_path))['installed']) == {n for n, _ in pins}


def test_a_broken_optional_package_cannot_fail_the_imports(tmp_path, run_suite):
    """The device image has transformers, which mmengine.optim tries at import; one that raises
    something other than ImportError would fail ``import mambaout_dense.models``."""
    broken = tmp_path / 'transformers'
    broken.mkdir()
    (broken / '__init__.py').write_text("raise RuntimeError('built for another torch')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    plain = subprocess.run([sys.executable, '-c', 'import mambaout_dense.models'], env=env,
                           capture_output=True, text=True, cwd=str(tmp_path))
    assert plain.returncode != 0 and 'built for another torch' in plain.stderr  # the hazard
    proc = run_suite('--check-imports', env={'PYTHONPATH': str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'transformers' not in proc.stdout.split()


def test_the_suite_puts_the_repository_on_sys_path_itself(tmp_path):
    """On the lent machine only the carried wheels are on PYTHONPATH: with ``python -S`` (no
    site-packages .pth, so no editable install) the package is found by the suite alone."""
    site_packages = next(p for p in sys.path if p.endswith('site-packages'))
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    env['PYTHONPATH'] = site_packages
    plain = subprocess.run([sys.executable, '-S', '-c', 'import mambaout_dense'], env=env,
                           capture_output=True, text=True, cwd=str(tmp_path))
    assert plain.returncode != 0  # without the suite's own sys.path entry it is not found
    proc = subprocess.run([sys.executable, '-S', gpu_plumbing.SUITE_SCRIPT, '--check-imports'],
                          env=env, capture_output=True, text=True, cwd=str(tmp_path),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'mmengine' in proc.stdout.split()


@pytest.mark.parametrize('argv,inject', [(['--smoke'], {'backbones': -1}),
                                         (['--smoke', '--inject-fault', 'none'], {}),
                                         (['--inject-fault', 'scan_speed:2'], {'scan_speed': 2})])
def test_a_child_process_gets_the_runs_faults_and_settings(argv, inject):
    args = gpu_suite.parse_args(argv)
    assert args.inject == inject
    child = gpu_suite.parse_args(gpu_suite.child_args(args, 3e12, triton_ok=False))
    assert child.inject == inject and child.smoke == args.smoke and child.no_triton
    assert child.copy_gb_s == 3000 and child.device == args.device
    with pytest.raises(SystemExit):
        gpu_suite.parse_args(['--inject-fault', 'nowhere:1'])
