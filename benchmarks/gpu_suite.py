#!/usr/bin/env python
"""GPU suite: the Triton selective scan (checked, and timed against its memory floor) and backbone
training throughput, in one prepared call of at most 7 minutes on one H100/H200.

Models: MambaOut ("MambaOut: Do We Really Need Mamba for Vision?", Yu & Wang, arXiv:2405.07992),
ours and timm's ``mambaout_tiny``; VMamba ("VMamba: Visual State Space Model", Liu et al.,
arXiv:2401.10166) with our Triton kernels of the Mamba selective scan ("Mamba: Linear-Time
Sequence Modeling with Selective State Spaces", Gu & Dao, arXiv:2312.00752); Swin-T ("Swin
Transformer", Liu et al., arXiv:2103.14030) from timm, which needs no mmcv op.

The run, in order (docs/gpu_suite.md has the device command):

1. **preflight** (:mod:`gpu_preflight`), within seconds: the carried wheels installed, the
   imports (``mambaout_dense.models`` included), one tiny Triton forward+backward compiled and
   compared with the float64 reference; it prints its verdict, and on ``fail`` nothing else runs;
2. ``environment`` (:mod:`gpu_speed`): device, versions, the scan registry, copy bandwidth, GEMM;
3. the **scan** part: ``scan_check`` (:mod:`gpu_correctness`) and ``scan_speed`` (every
   registered backend that runs on the device);
4. the **backbones** part: MambaOut-T (ours, timm), Swin-T, then VMamba-T, bf16 and fp32.

Each part runs in a child process (``--isolate``, the default) with a cap of its own, so a slow
compile cannot eat the next part's time and a fault that breaks the CUDA context costs one part
at most. Every row is written to the output folder as soon as it is measured (atomically); a fault
marks its row and the later rows of its section, never the earlier ones (:mod:`gpu_plumbing`).
The exit status is 0 when something was measured, 1 when nothing was (or the preflight failed),
2 when no CUDA device is present without ``--smoke``. Outputs in ``--out``: ``gpu_suite.json``,
``gpu_suite.md`` and ``parts/<part>.json`` (each child's own rows). The section ``speed-gpu``
of docs/results.md (:mod:`gpu_report`) is written only from a run that measured something.

``--smoke`` is the dress rehearsal on the CPU (CI): tiny shapes, the Triton kernels under
``TRITON_INTERPRET=1``, the preflight, the child processes, the atomic writes and an injected
fault in the last backbone row (``--inject-fault``).

    python benchmarks/gpu_suite.py --out DIR [--wheelhouse work_dirs/gpu_wheelhouse]  # on a GPU
    python benchmarks/gpu_suite.py --smoke [--out DIR] [--inject-fault backbones:3]   # CPU
    python benchmarks/gpu_suite.py --smoke --preflight-only                           # CPU
    python benchmarks/gpu_suite.py --readme-from DIR_OR_JSON [--readme-path FILE]
    python benchmarks/gpu_suite.py --readme-clear      # remove the section (no GPU numbers)
    python benchmarks/gpu_suite.py --check-imports     # third-party modules the suite loads
"""
import argparse
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The lent machine runs this file with only the carried wheels on PYTHONPATH: the suite finds
# the package (repository root) and its sibling modules (benchmarks/) itself.
for _path in (REPO_ROOT, osp.join(REPO_ROOT, 'benchmarks')):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from gpu_correctness import check_plan, section_scan_check  # noqa: E402
from gpu_plumbing import (  # noqa: E402
    PARTS_DIR,
    Suite,
    block_optional_imports,
    mark_part,
    part_budget,
    run_child,
    third_party_modules,
)
from gpu_preflight import (  # noqa: E402
    WHEELHOUSE,
    check_imports,
    preflight_plan,
    section_preflight,
    verdict,
)
from gpu_report import (  # noqa: E402
    load_run,
    markdown_report,
    measured_rows,
    readme_text,
    write_readme,
)
from gpu_speed import (  # noqa: E402
    backbone_plan,
    backbone_ratios,
    scan_ratios,
    scan_speed_plan,
    section_backbones,
    section_environment,
    section_scan_speed,
)

DEFAULT_OUT = osp.join(REPO_ROOT, 'work_dirs', 'gpu_suite')
#: Seconds the whole run may take on a GPU: the device call's ``timeout_s`` of 420 s
#: (docs/gpu_suite.md) keeps 30 s for installing the wheels and starting Python.
GPU_BUDGET_S = 390.0
SMOKE_BUDGET_S = 900.0
#: Cap of each part (its child is killed 5 s after it). 90 + 120 + 150 = 360 s leaves 30 s of
#: the budget for the preflight's imports and the environment section.
PART_CAPS_S = {'preflight': 90.0, 'scan': 120.0, 'backbones': 150.0}
SMOKE_PART_CAPS_S = {'preflight': 240.0, 'scan': 240.0, 'backbones': 240.0}
#: The sections of each part; 'preflight' (the Triton step) runs before the others.
PARTS: Dict[str, Tuple[str, ...]] = {'preflight': ('preflight_triton', ),
                                     'scan': ('scan_check', 'scan_speed'),
                                     'backbones': ('backbones', )}
TIMED_PARTS = ('scan', 'backbones')
#: The smoke run's fault: the last backbone row (the earlier ones must survive it).
SMOKE_FAULT = 'backbones:-1'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=DEFAULT_OUT, help='output folder (default: %(default)s)')
    parser.add_argument('--device', help='default: cuda; cpu with --smoke')
    parser.add_argument('--smoke', action='store_true',
                        help='CPU rehearsal: tiny shapes and `test` archs, Triton under '
                        'TRITON_INTERPRET=1, a fault injected in the last backbone row')
    parser.add_argument('--budget-s', type=float,
                        help=f'seconds the whole run may take (default: {GPU_BUDGET_S:.0f}; '
                        f'smoke: {SMOKE_BUDGET_S:.0f})')
    parser.add_argument('--repeat', type=int, help='timed calls per row (default: 5; smoke: 1)')
    parser.add_argument('--parts', nargs='*', default=list(TIMED_PARTS), choices=TIMED_PARTS,
                        help='timed parts to run after the preflight (default: all)')
    parser.add_argument('--preflight-only', action='store_true',
                        help='run the preflight, print its verdict and exit (0: pass)')
    parser.add_argument('--wheelhouse', help='the carried wheels: check each is installed at '
                        f'its version (the device command passes {WHEELHOUSE})')
    parser.add_argument('--inject-fault', action='append', metavar='SECTION:INDEX',
                        help='raise a fault in that row (negative: from the end); "none": no '
                        f'fault (default: none; smoke: {SMOKE_FAULT})')
    parser.add_argument('--isolate', action=argparse.BooleanOptionalAction, default=True,
                        help='run the Triton preflight and each part in a child process with '
                        'its own cap (default: on)')
    parser.add_argument('--readme', action='store_true',
                        help='after a GPU run that measured something, rewrite the section '
                        'speed-gpu of docs/results.md')
    parser.add_argument('--readme-from', metavar='PATH',
                        help="only rewrite the results section from a stored run (its JSON or "
                        "output folder); a run that measured nothing removes the section")
    parser.add_argument('--readme-clear', action='store_true',
                        help='only remove the results section speed-gpu (no GPU numbers)')
    parser.add_argument('--readme-path', help="results file to rewrite (default: the "
                        "repository's docs/results.md)")
    parser.add_argument('--check-imports', action='store_true',
                        help='import what the suite needs and list the third-party modules')
    # internal: how the parent process starts a part in a child
    parser.add_argument('--child-part', choices=list(PARTS), help=argparse.SUPPRESS)
    parser.add_argument('--deadline', type=float, help=argparse.SUPPRESS)
    parser.add_argument('--copy-gb-s', type=float, help=argparse.SUPPRESS)
    parser.add_argument('--no-triton', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.device = args.device or ('cpu' if args.smoke else 'cuda')
    args.repeat = args.repeat or (1 if args.smoke else 5)
    args.budget_s = args.budget_s if args.budget_s is not None else (
        SMOKE_BUDGET_S if args.smoke else GPU_BUDGET_S)
    specs = args.inject_fault or ([SMOKE_FAULT] if args.smoke else [])
    args.inject = {}
    for spec in specs:
        if spec != 'none':
            section, _, index = spec.partition(':')
            if section not in {s for names in PARTS.values() for s in names} | {
                    'preflight', 'environment'} or not index.lstrip('-').isdigit():
                parser.error(f'--inject-fault {spec!r}: expected SECTION:INDEX')
            args.inject[section] = int(index)
    return args


def make_plan(args: argparse.Namespace, triton_ok: bool = True,
              registry: bool = True) -> Dict[str, List[Dict]]:
    """Every row the run means to measure, by section (``registry``: the scan backends are
    known, i.e. the package imports)."""
    vmamba_scan = 'triton' if triton_ok and not args.smoke else 'torch'
    plan = {'preflight': preflight_plan(), 'preflight_triton': check_plan(args.smoke, True),
            'scan_check': check_plan(args.smoke), 'backbones': backbone_plan(args.smoke,
                                                                             vmamba_scan)}
    plan['scan_speed'] = scan_speed_plan(args.device, args.smoke) if registry else []
    return plan


def run_sections(suite: Suite, part: str, args: argparse.Namespace,
                 bandwidth: Optional[float], triton_ok: bool) -> None:
    """Run the sections of one part in this process."""
    plan, device = suite.result['plan'], args.device
    sections = {
        'preflight_triton': (lambda: section_scan_check(suite, device, plan['preflight_triton']),
                             None),
        'scan_check': (lambda: section_scan_check(suite, device, plan['scan_check'], triton_ok),
                       None),
        'scan_speed': (lambda: section_scan_speed(suite, device, plan['scan_speed'], args.smoke,
                                                  bandwidth, args.repeat, triton_ok),
                       scan_ratios),
        'backbones': (lambda: section_backbones(suite, device, plan['backbones'], args.smoke,
                                                args.repeat), backbone_ratios),
    }
    for name in PARTS[part]:
        fn, finish = sections[name]
        suite.section(name, fn, plan[name], finish=finish)


def child_args(args: argparse.Namespace, bandwidth: Optional[float],
               triton_ok: bool) -> List[str]:
    """The options that give a child process this run's settings (its faults included)."""
    child = ['--device', args.device, '--repeat', str(args.repeat)]
    child += ['--smoke'] if args.smoke else []
    child += ['--copy-gb-s', f'{bandwidth / 1e9:.6g}'] if bandwidth else []
    child += ['--no-triton'] if not triton_ok else []
    for spec in [f'{section}:{index}' for section, index in args.inject.items()] or ['none']:
        child += ['--inject-fault', spec]
    return child


def run_part(suite: Suite, part: str, args: argparse.Namespace, budget_s: float,
             bandwidth: Optional[float], triton_ok: bool) -> None:
    """One part with ``budget_s`` seconds: in a child process, or here without ``--isolate``."""
    if args.isolate:
        run_child(suite, part, PARTS[part], budget_s, child_args(args, bandwidth, triton_ok))
        return
    suite.part_deadline = time.time() + budget_s
    try:
        run_sections(suite, part, args, bandwidth, triton_ok)
    finally:
        suite.part_deadline = None


def run_child_part(args: argparse.Namespace) -> int:
    """``--child-part``: run one part's sections, writing ``parts/<part>.json`` after each row."""
    setup_torch(args)
    suite = Suite(args.out, args.deadline or time.time() + args.budget_s,
                  name=f'gpu_suite:{args.child_part}', device=args.device, inject=args.inject,
                  json_path=osp.join(args.out, PARTS_DIR, f'{args.child_part}.json'))
    suite.result.update(smoke=args.smoke, device=args.device, repeat=args.repeat,
                        triton_interpret=os.environ.get('TRITON_INTERPRET') == '1',
                        plan=make_plan(args, triton_ok=not args.no_triton))
    bandwidth = args.copy_gb_s * 1e9 if args.copy_gb_s else None
    run_sections(suite, args.child_part, args, bandwidth, triton_ok=not args.no_triton)
    suite.result['modules'] = third_party_modules()
    suite.write()
    return 0


def setup_torch(args: argparse.Namespace) -> None:
    """cuDNN autotuning on a GPU; one thread for the smoke run."""
    import torch
    if args.device.startswith('cuda'):
        torch.backends.cudnn.benchmark = True  # training-style convolution autotuning
    if args.smoke:
        # Smoke timings mean nothing; one thread keeps a loaded CI machine from spending
        # seconds per tiny operator in OpenMP barriers (measured: 1.6 s vs 0.02 s per step).
        torch.set_num_threads(1)


def readme_mode(args: argparse.Namespace) -> int:
    """``--readme-from`` / ``--readme-clear``: write or remove the results section."""
    from common import RESULTS
    text = None
    if args.readme_from:
        result = load_run(args.readme_from)
        if result.get('smoke'):
            print('[gpu_suite] warning: this run is a --smoke run on the CPU', flush=True)
        text = readme_text(result)
    print('[gpu_suite] ' + write_readme(text, args.readme_path or RESULTS), flush=True)
    return 0


def preflight(suite: Suite, args: argparse.Namespace, caps: Dict[str, float]) -> str:
    """Wheels and imports here, then the Triton step; prints and returns the verdict word
    ('pass', 'degraded', 'fail', or 'no cuda' when the device is missing)."""
    entry = suite.section('preflight', lambda: section_preflight(suite, args.wheelhouse),
                          suite.result['plan']['preflight'])
    if entry['status'] == 'ok' and all(r['status'] == 'ok' for r in entry['rows']):
        import torch
        if args.device.startswith('cuda') and not torch.cuda.is_available():
            suite.result['error'] = 'no CUDA device: run with --smoke on a CPU'
            suite.write()
            print(f'[gpu_suite] {suite.result["error"]}', file=sys.stderr, flush=True)
            return 'no cuda'
        setup_torch(args)
        suite.result['plan'] = make_plan(args)
        later = sum(caps[p] for p in args.parts) if not args.preflight_only else 0.0
        run_part(suite, 'preflight', args, part_budget(suite, caps['preflight'], later), None,
                 triton_ok=True)
    word, line = verdict(suite.result)
    suite.result['preflight_verdict'] = {'verdict': word, 'text': line,
                                         'seconds': round(suite.elapsed(), 1)}
    suite.log(f'preflight verdict: {line}')
    suite.write()
    return word


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the suite (or one of the other modes); returns the exit status."""
    args = parse_args(argv)
    if args.device == 'cpu' and 'triton' not in sys.modules:
        # The Triton interpreter runs the kernels on CPU tensors; it must be switched on
        # before Triton is first imported.
        os.environ.setdefault('TRITON_INTERPRET', '1')
    block_optional_imports()  # before anything imports mmengine
    if args.readme_from or args.readme_clear:
        return readme_mode(args)
    if args.check_imports:
        check_imports()
        print(' '.join(third_party_modules()))
        return 0
    if args.child_part:
        return run_child_part(args)

    caps = SMOKE_PART_CAPS_S if args.smoke else PART_CAPS_S
    suite = Suite(args.out, time.time() + args.budget_s, device=args.device, inject=args.inject,
                  report=markdown_report)
    suite.result.update(smoke=args.smoke, device=args.device, repeat=args.repeat,
                        isolate=args.isolate, part_caps_s=caps, injected_faults=args.inject,
                        argv=list(argv if argv is not None else sys.argv[1:]),
                        triton_interpret=os.environ.get('TRITON_INTERPRET') == '1',
                        plan=make_plan(args, registry=False))
    suite.log(f'device {args.device}, smoke {args.smoke}, budget {args.budget_s:.0f} s, parts '
              f'{args.parts}, out {args.out}')
    word = preflight(suite, args, caps)
    if word == 'no cuda':
        return 2
    if args.preflight_only:
        return 0 if word == 'pass' else 1
    triton_ok = word == 'pass'
    if word == 'fail':
        for part in args.parts:
            mark_part(suite.result, PARTS[part], 'skipped', 'the preflight failed')
    else:
        if not triton_ok:
            suite.result['plan'] = make_plan(args, triton_ok=False)
        env = suite.section('environment', lambda: section_environment(args.device, args.smoke))
        bandwidth = env['copy_gb_s'] * 1e9 if env['status'] == 'ok' else None
        for i, part in enumerate(args.parts):
            later = sum(caps[p] for p in args.parts[i + 1:])
            run_part(suite, part, args, part_budget(suite, caps[part], later), bandwidth,
                     triton_ok)
    modules = set(third_party_modules())
    for child in suite.result.get('children', {}).values():
        modules.update(child.get('modules', []))
    suite.result['openmmlab_modules'] = sorted(
        m for m in modules if m in ('mmcv', 'mmdet', 'mmseg', 'mmpretrain'))
    measured = measured_rows(suite.result)
    suite.result['measured_rows'] = measured
    suite.write()
    print(markdown_report(suite.result), flush=True)
    suite.log(f'done: measured {measured} rows; preflight {word}; wrote {suite.json_path}'
              + ('' if measured else '; nothing was measured: exit status 1'))
    if args.readme and measured:
        if args.smoke or not args.device.startswith('cuda'):
            print('[gpu_suite] --readme ignored: not a GPU run', flush=True)
        else:
            from common import RESULTS
            print('[gpu_suite] ' + write_readme(readme_text(suite.result),
                                                args.readme_path or RESULTS), flush=True)
    return 0 if measured else 1


if __name__ == '__main__':
    sys.exit(main())
