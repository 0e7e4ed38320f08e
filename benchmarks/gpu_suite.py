#!/usr/bin/env python
"""GPU suite: the Triton selective scan (checked and timed against its memory floor) and backbone
training throughput, in one prepared run of at most 8 minutes on one H100/H200.

Models: MambaOut ("MambaOut: Do We Really Need Mamba for Vision?", Yu & Wang, arXiv:2405.07992),
ours and timm's ``mambaout_tiny``; VMamba ("VMamba: Visual State Space Model", Liu et al.,
arXiv:2401.10166) with our Triton kernels of the Mamba selective scan ("Mamba: Linear-Time
Sequence Modeling with Selective State Spaces", Gu & Dao, arXiv:2312.00752); and Swin-T ("Swin
Transformer", Liu et al., arXiv:2103.14030) from timm, which needs no mmcv op.

Sections (each recorded in the JSON even when another fails):

1. ``environment``: device, versions, copy bandwidth and GEMM rates
   (:mod:`mambaout_dense.analysis.measure`).
2. ``scan_check``: ``selective_scan(..., backend='triton')`` against the float64 ``reference``
   loop, output, last state and every input gradient, small shapes of several chunks; on CUDA
   also the forward at the full VMamba-T stage-1 length.
3. ``scan_speed``: the Triton scan's forward and forward+backward times against the HBM floor
   ``4 * batch * (3 dim L + 2 groups N L)`` bytes / copy bandwidth (forward; ``8 dim L +
   6 groups N L`` for forward+backward), beside the pure-PyTorch ``torch`` backend.
4. ``backbones``: forward+backward images/s in bf16 autocast and fp32 of MambaOut-T (ours and
   timm's), VMamba-T (ours, Triton scan) and Swin-T (timm), at 8 x 512x512 and 2 x 800x1280.

Robustness: every section and every row runs in ``try``/``except`` and records its error; the
``scan`` part (sections 2-3) and the ``backbones`` part each run in a child process (``--isolate``,
the default), so that a Triton kernel fault that breaks the CUDA context costs one part at most
(the VMamba rows come last in theirs); the JSON is rewritten after every row, so a child that
crashes or is killed keeps what it measured. A global time budget (``--budget-s``) skips the
rows that would start too late and says so. Progress lines carry the time and elapsed seconds.
Outputs: ``gpu_suite.json`` and ``gpu_suite.md`` in ``--out``. The README section ``speed-gpu``
is generated from a JSON (``--readme`` after a GPU run, ``--readme-from`` for a JSON copied
back), or says "not measured" (``--readme-placeholder``).

The suite imports only the torch + mmengine part of the package (``models``, ``ops``,
``analysis``): the lent GPU machine has no mmcv, mmdet or mmseg, and the JSON lists any of them
that got loaded (``openmmlab_modules``, empty by design). See docs/gpu_suite.md for the device
command.

    python benchmarks/gpu_suite.py [--out DIR] [--budget-s 420] [--readme]   # on a GPU
    python benchmarks/gpu_suite.py --smoke [--out DIR]                       # CPU, tiny shapes
    python benchmarks/gpu_suite.py --readme-from work_dirs/gpu_suite/gpu_suite.json
    python benchmarks/gpu_suite.py --readme-placeholder
    python benchmarks/gpu_suite.py --check-imports    # third-party modules the suite loads
"""
import argparse
import json
import math
import os
import os.path as osp
import platform
import re
import sys
import textwrap
import time
import traceback
from contextlib import nullcontext
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_OUT = osp.join(REPO_ROOT, 'work_dirs', 'gpu_suite')
JSON_NAME = 'gpu_suite.json'
MD_NAME = 'gpu_suite.md'
README_SECTION = 'speed-gpu'
NOT_MEASURED = 'not measured'
SCHEMA = 1

# Scan shapes: (name, batch, dim, L, N, groups). VMamba-T stage 1: 4 directions x 96 channels,
# d_state 1, L = (H/4) * (W/4); Vanilla VMamba-T (v0): 4 x 192 channels, d_state 16.
ScanShape = Tuple[str, int, int, int, int, int]
GPU_SCAN_SPEED: List[ScanShape] = [
    ('VMamba-T stage 1, 512x512', 1, 384, 128 * 128, 1, 4),
    ('VMamba-T stage 1, 512x512, batch 8', 8, 384, 128 * 128, 1, 4),
    ('VMamba-T stage 1, 800x1344', 1, 384, 200 * 336, 1, 4),
    ('Vanilla VMamba-T stage 1 (N 16), 512x512', 1, 768, 128 * 128, 16, 4),
]
SMOKE_SCAN_SPEED: List[ScanShape] = [('tiny, N 1, 2 chunks', 1, 4, 130, 1, 2)]

# Correctness shapes: (name, batch, dim, L, N, groups, options, softplus). L > 128 gives several
# chunks of the kernels' BLOCK_L (128 at N <= 16).
CheckCase = Tuple[str, int, int, int, int, int, Dict[str, bool], bool]
GPU_SCAN_CHECK: List[CheckCase] = [
    ('VMamba-like N1 G4, 3 chunks', 2, 64, 300, 1, 4, dict(z=False), True),
    ('all options N16 G1', 1, 16, 200, 16, 1, {}, True),
    ('plain N3 G2, odd channels per group', 2, 12, 130, 3, 2,
     dict(D=False, z=False, bias=False), False),
]
SMOKE_SCAN_CHECK: List[CheckCase] = [
    ('VMamba-like N1 G4, 2 chunks', 1, 8, 150, 1, 4, dict(z=False), True),
    ('all options N4 G2', 1, 4, 40, 4, 2, {}, True),
]
SCAN_TOLERANCE = 1e-4  # max |error| / max |reference|, float32 kernels vs float64 loop

# Backbones: (key, label). Inputs: (batch, H, W). dtypes: bf16 autocast, fp32.
BACKBONES: List[Tuple[str, str]] = [
    ('mambaout_ours', 'MambaOut-T (ours)'),
    ('mambaout_timm', 'MambaOut-T (timm)'),
    ('vmamba_ours', 'VMamba-T (ours, Triton scan)'),
    ('swin_timm', 'Swin-T (timm)'),
]
GPU_INPUTS: List[Tuple[int, int, int]] = [(8, 512, 512), (2, 800, 1280)]
SMOKE_INPUTS: List[Tuple[int, int, int]] = [(2, 32, 32)]
DTYPES: List[str] = ['bf16', 'fp32']
DTYPE_LABELS = {'bf16': 'bf16 autocast', 'fp32': 'fp32'}
REFERENCE_BACKBONE = 'swin_timm'


# ------------------------------------------------------------------------------------------
# Plumbing: progress, time budget, sections
# ------------------------------------------------------------------------------------------


class Suite:
    """State of one run: the result dict, the clock and where it is written.

    Args:
        out (str): Output folder.
        budget_s (float): Seconds the whole run may take (measured from construction).
        reserve_s (float): Seconds kept for writing the outputs; work that would start later
            than ``budget_s - reserve_s`` is skipped. Defaults to 15.
        name (str): Prefix of the progress lines. Defaults to 'gpu_suite'.
    """

    def __init__(self, out: str, budget_s: float, reserve_s: float = 15.0,
                 name: str = 'gpu_suite') -> None:
        self.out = out
        self.name = name
        self.t0 = time.monotonic()
        self.budget_s = budget_s
        self.reserve_s = reserve_s
        self.result: Dict[str, Any] = {
            'suite': 'gpu_suite', 'schema': SCHEMA,
            'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'budget_s': budget_s,
            'sections': {}
        }
        self.running: Optional[str] = None

    def add_row(self, row: Dict[str, Any]) -> None:
        """Record a finished row of the running section and rewrite the outputs."""
        if self.running is not None:
            self.result['sections'][self.running]['rows'].append(row)
            self.write()

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.t0

    def left(self) -> float:
        """Seconds left before the outputs must be written."""
        return self.budget_s - self.reserve_s - self.elapsed()

    def log(self, msg: str) -> None:
        """Print a progress line with the wall clock and the elapsed seconds."""
        print(f'[{self.name} {time.strftime("%H:%M:%S")} +{self.elapsed():6.1f}s] {msg}',
              flush=True)

    def section(self, name: str, fn: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
        """Run one section; an exception is recorded in its entry and the run goes on.

        Args:
            name (str): Section name (key in ``result['sections']``).
            fn (Callable): Returns the section's entry (a dict, ``status`` defaults to 'ok').

        Returns:
            dict: The recorded entry.
        """
        self.log(f'section {name}: start')
        start = time.monotonic()
        if self.left() <= 0:
            entry: Dict[str, Any] = {'status': 'skipped', 'reason': 'time budget spent'}
        else:
            # rows finished so far are kept if the process is killed during the section
            self.result['sections'][name] = {'status': 'running', 'rows': []}
            self.running = name
            try:
                entry = dict(fn())
                entry.setdefault('status', 'ok')
            except Exception as e:  # noqa: BLE001 - one failing section must not lose the rest
                entry = {'status': 'error', 'error': f'{type(e).__name__}: {e}',
                         'traceback': traceback.format_exc()[-3000:]}
        self.running = None
        entry['seconds'] = round(time.monotonic() - start, 2)
        self.result['sections'][name] = entry
        self.log(f'section {name}: {entry["status"]} in {entry["seconds"]} s'
                 + (f' ({entry.get("error") or entry.get("reason")})'
                    if entry['status'] != 'ok' else ''))
        self.write()
        return entry

    def write(self) -> Tuple[str, str]:
        """Write the JSON and the markdown as they stand; returns their paths."""
        from mambaout_dense.analysis.tables import write_json, write_text
        self.result['wall_s'] = round(self.elapsed(), 2)
        json_path = write_json(osp.join(self.out, JSON_NAME), self.result)
        md_path = write_text(osp.join(self.out, MD_NAME), markdown_report(self.result) + '\n')
        return json_path, md_path


def guarded_row(suite: Suite, row: Dict[str, Any], fn: Callable[[], Dict[str, Any]],
                need_s: float = 0.0) -> Dict[str, Any]:
    """Fill ``row`` from ``fn()``; a failure or the time budget is recorded in the row.

    Args:
        suite (Suite): The run.
        row (dict): The row's identity (key, names); updated in place.
        fn (Callable): Returns the measured values.
        need_s (float): Seconds the row is expected to take; it is skipped when fewer are left.
            Defaults to 0.

    Returns:
        dict: ``row``, with ``status`` 'ok', 'error' or 'skipped'.
    """
    import torch
    if suite.left() < need_s or suite.left() <= 0:
        row.update(status='skipped', reason='time budget')
        suite.log(f'  {row["key"]}: skipped (time budget, {suite.left():.0f} s left)')
        suite.add_row(row)
        return row
    try:
        row.update(fn())
        row['status'] = 'ok'
    except Exception as e:  # noqa: BLE001 - one failing row must not lose the others
        oom = isinstance(e, torch.cuda.OutOfMemoryError)
        row.update(status='error', error=f'{type(e).__name__}: {str(e)[:500]}')
        if not oom:
            row['traceback'] = traceback.format_exc()[-2000:]
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    detail = {k: v for k, v in row.items() if k not in ('key', 'traceback')}
    suite.log(f'  {row["key"]}: {json.dumps(detail, default=str)[:400]}')
    suite.add_row(row)
    return row


def third_party_modules() -> List[str]:
    """Top-level modules loaded in this process that are neither stdlib nor ours."""
    std = set(getattr(sys, 'stdlib_module_names', ()))
    tops = {name.split('.')[0] for name in list(sys.modules)}
    return sorted(t for t in tops
                  if t not in std and not t.startswith('_') and t not in ('mambaout_dense',
                                                                          '__main__'))


def versions() -> Dict[str, str]:
    """Versions of the packages the suite uses (those that import)."""
    from importlib.metadata import PackageNotFoundError, version
    out = {'python': platform.python_version()}
    for name in ('torch', 'triton', 'timm', 'mmengine', 'numpy'):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # importable without metadata (a path on PYTHONPATH)
            module = sys.modules.get(name)
            out[name] = str(getattr(module, '__version__', 'not installed'))
    return out


def to_jsonable(v: Optional[float]) -> Optional[float]:
    """NaN and infinities become None (strict JSON)."""
    return None if v is None or not math.isfinite(v) else float(v)


# ------------------------------------------------------------------------------------------
# Section 1: environment
# ------------------------------------------------------------------------------------------


def section_environment(device: str, smoke: bool) -> Dict[str, Any]:
    """Device, versions, backends, copy bandwidth and GEMM rates."""
    import torch

    from mambaout_dense.analysis.measure import copy_bandwidth, environment, gemm_flops
    from mambaout_dense.ops import available_backends
    entry: Dict[str, Any] = {'environment': environment(device), 'versions': versions(),
                             'scan_backends': available_backends(device)}
    if device.startswith('cuda'):
        props = torch.cuda.get_device_properties(device)
        entry.update(gpu=props.name, capability=f'{props.major}.{props.minor}',
                     gpu_memory_gib=round(props.total_memory / 2**30, 1),
                     multiprocessors=props.multi_processor_count,
                     cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                     cudnn_benchmark=torch.backends.cudnn.benchmark,
                     matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                     cudnn_tf32=torch.backends.cudnn.allow_tf32)
    numel, n = (1 << 20, 256) if smoke else (1 << 28, 8192)
    entry['copy_gb_s'] = copy_bandwidth(device, numel=numel) / 1e9
    entry['gemm_fp32_tmac_s'] = gemm_flops(device, n=n) / 1e12
    if device.startswith('cuda'):
        entry['gemm_bf16_tmac_s'] = gemm_flops(device, n=n, dtype=torch.bfloat16) / 1e12
    entry['rate_units'] = 'copy: bytes read + written per s; GEMM: multiply-adds per s'
    if device.startswith('cuda'):
        torch.cuda.empty_cache()  # hand the buffers back before the parts' child processes
    return entry


# ------------------------------------------------------------------------------------------
# Sections 2 and 3: the Triton scan
# ------------------------------------------------------------------------------------------


def triton_unavailable(device: str) -> Optional[str]:
    """Why the ``triton`` backend cannot run on ``device``, or None."""
    from mambaout_dense.ops import available_backends

    # the probe's message (why Triton is missing) has no public accessor
    from mambaout_dense.ops.scan import _unavailable_reason
    if 'triton' in available_backends(device):
        return None
    return _unavailable_reason('triton') or f'the triton backend does not run on {device}'


def scan_inputs(batch: int, dim: int, length: int, n_state: int, groups: int,
                dtype: Any = None, **kwargs: Any) -> Dict[str, Any]:
    """Random scan inputs with stable decays (``A < 0``, small ``delta``), float32 by default."""
    import torch

    from mambaout_dense.ops.scan_inputs import random_scan_inputs
    return random_scan_inputs(batch, dim, length, n_state, groups,
                              dtype=dtype or torch.float32, **kwargs)


def scan_outputs(x: Dict[str, Any], backend: str, softplus: bool,
                 grads: bool = True) -> Dict[str, Any]:
    """Output, last state and (with ``grads``) every input gradient, float64 on the CPU."""
    import torch

    from mambaout_dense.ops import selective_scan
    leaves = {k: v.detach().clone().requires_grad_(grads) for k, v in x.items()}
    with torch.set_grad_enabled(grads):
        out, last = selective_scan(**leaves, delta_softplus=softplus, return_last_state=True,
                                   backend=backend)
    result = dict(out=out, last=last)
    if grads:
        g = torch.Generator().manual_seed(1)
        cots = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(t) for t in (out, last)]
        dx = torch.autograd.grad([out, last], list(leaves.values()), cots)
        result.update({f'd{k}': v for k, v in zip(leaves, dx)})
    return {k: v.detach().double().cpu() for k, v in result.items()}


def relative_errors(got: Dict[str, Any], expected: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """``max |got - expected| / max |expected|`` per tensor (None when not finite)."""
    errors = {}
    for k, ref in expected.items():
        err = ((got[k] - ref).abs().max() / ref.abs().max().clamp_min(1e-6)).item()
        errors[k] = to_jsonable(err)
    return errors


def section_scan_check(suite: Suite, device: str, smoke: bool) -> Dict[str, Any]:
    """Triton vs the float64 reference loop, forward and backward."""
    import torch
    reason = triton_unavailable(device)
    if reason is not None:
        return {'status': 'skipped', 'reason': reason}
    rows = []
    for name, batch, dim, length, n_state, groups, opts, softplus in (
            SMOKE_SCAN_CHECK if smoke else GPU_SCAN_CHECK):
        row: Dict[str, Any] = {'key': name, 'shape': dict(batch=batch, dim=dim, L=length,
                                                          N=n_state, groups=groups),
                               'options': dict(dict(D=True, z=True, bias=True), **opts),
                               'softplus': softplus}

        def check(batch=batch, dim=dim, length=length, n_state=n_state, groups=groups,
                  opts=opts, softplus=softplus) -> Dict[str, Any]:
            x = scan_inputs(batch, dim, length, n_state, groups, **opts)
            expected = scan_outputs({k: v.double() for k, v in x.items()}, 'reference',
                                    softplus)
            got = scan_outputs({k: v.to(device) for k, v in x.items()}, 'triton', softplus)
            errors = relative_errors(got, expected)
            worst = max((e if e is not None else math.inf) for e in errors.values())
            return {'errors': errors, 'max_error': to_jsonable(worst),
                    'passed': bool(worst < SCAN_TOLERANCE)}
        rows.append(guarded_row(suite, row, check))
    if device.startswith('cuda'):
        name, batch, dim, length, n_state, groups = GPU_SCAN_SPEED[0]
        row = {'key': f'{name}, forward only', 'shape': dict(batch=batch, dim=dim, L=length,
                                                             N=n_state, groups=groups),
               'options': dict(D=True, z=False, bias=True), 'softplus': True}

        def check_full() -> Dict[str, Any]:
            x = scan_inputs(batch, dim, length, n_state, groups, z=False, device=device)
            # the float64 loop runs on the GPU here: 16384 steps of small kernels
            expected = scan_outputs({k: v.double() for k, v in x.items()}, 'reference', True,
                                    grads=False)
            got = scan_outputs(x, 'triton', True, grads=False)
            errors = relative_errors(got, expected)
            worst = max((e if e is not None else math.inf) for e in errors.values())
            return {'errors': errors, 'max_error': to_jsonable(worst),
                    'passed': bool(worst < SCAN_TOLERANCE)}
        rows.append(guarded_row(suite, row, check_full, need_s=60))
        torch.cuda.synchronize()
    ok = [r for r in rows if r['status'] == 'ok']
    return {'tolerance': SCAN_TOLERANCE, 'rows': rows,
            'all_passed': bool(ok) and len(ok) == len(rows) and all(r['passed'] for r in ok)}


def floor_bytes(batch: int, dim: int, length: int, n_state: int, groups: int,
                backward: bool = False) -> int:
    """Bytes an fp32 scan must move at least (docs/reference.md section 4).

    Forward: read ``u``, ``delta``, write ``out`` (3 dim L) and read ``B``, ``C``
    (2 groups N L). Forward+backward adds reading ``u``, ``delta``, ``dout`` and writing ``du``,
    ``ddelta`` (5 dim L), reading ``B``, ``C`` and writing ``dB``, ``dC`` (4 groups N L).
    ``A``, ``D``, the bias and the kernels' chunk states are negligible and not counted.
    """
    per_batch = 3 * dim * length + 2 * groups * n_state * length
    if backward:
        per_batch += 5 * dim * length + 4 * groups * n_state * length
    return 4 * batch * per_batch


def section_scan_speed(suite: Suite, device: str, smoke: bool, bandwidth: Optional[float],
                       repeat: int) -> Dict[str, Any]:
    """Triton (and torch-backend) scan times against the HBM floor."""
    import torch

    from mambaout_dense.analysis.measure import copy_bandwidth, median_seconds, peak_memory_mb
    from mambaout_dense.ops import selective_scan
    reason = triton_unavailable(device)
    if reason is not None:
        return {'status': 'skipped', 'reason': reason}
    if not bandwidth:
        bandwidth = copy_bandwidth(device, numel=1 << 20 if smoke else 1 << 28)
    rows = []
    for name, batch, dim, length, n_state, groups in (SMOKE_SCAN_SPEED if smoke
                                                      else GPU_SCAN_SPEED):
        for backend in ('triton', 'torch'):
            row: Dict[str, Any] = {'key': f'{name} | {backend}', 'case': name,
                                   'backend': backend,
                                   'shape': dict(batch=batch, dim=dim, L=length, N=n_state,
                                                 groups=groups)}

            def measure(batch=batch, dim=dim, length=length, n_state=n_state, groups=groups,
                        backend=backend) -> Dict[str, Any]:
                def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
                    return torch.randn(*shape, device=device) * scale  # made on the device

                # what VMamba passes: D, delta_bias and softplus, no z
                x = dict(u=randn(batch, dim, length), delta=randn(batch, dim, length, scale=0.5),
                         A=-torch.rand(dim, n_state, device=device) * 3,
                         B=randn(batch, groups, n_state, length),
                         C=randn(batch, groups, n_state, length), D=randn(dim),
                         delta_bias=randn(dim, scale=0.3))
                leaves = {k: v.requires_grad_() for k, v in x.items()}
                dout = randn(batch, dim, length)

                def forward() -> None:
                    with torch.no_grad():
                        selective_scan(**x, delta_softplus=True, backend=backend)

                def forward_backward() -> None:
                    out = selective_scan(**leaves, delta_softplus=True, backend=backend)
                    torch.autograd.grad(out, list(leaves.values()), dout)

                warmup = 0 if smoke else 2  # the interpreter compiles nothing
                fwd = median_seconds(forward, device, warmup=warmup, repeat=repeat)
                fwd_bwd = median_seconds(forward_backward, device, warmup=warmup,
                                         repeat=repeat)
                shape = (batch, dim, length, n_state, groups)
                floor_fwd = floor_bytes(*shape) / bandwidth
                floor_fwd_bwd = floor_bytes(*shape, backward=True) / bandwidth
                return {'fwd_ms': fwd * 1e3, 'fwd_bwd_ms': fwd_bwd * 1e3,
                        'floor_fwd_ms': floor_fwd * 1e3, 'floor_fwd_bwd_ms': floor_fwd_bwd * 1e3,
                        'x_floor_fwd': fwd / floor_fwd, 'x_floor_fwd_bwd': fwd_bwd / floor_fwd_bwd,
                        'floor_fwd_mb': floor_bytes(*shape) / 1e6,
                        'peak_mib_fwd_bwd': to_jsonable(peak_memory_mb(forward_backward, device))}
            rows.append(guarded_row(suite, row, measure, need_s=5))
    for row in rows:  # torch backend time / triton time, per case
        tri = next((r for r in rows if r['case'] == row['case'] and r['backend'] == 'triton'
                    and r['status'] == 'ok'), None)
        if row['status'] == 'ok' and tri is not None:
            row['fwd_vs_triton'] = row['fwd_ms'] / tri['fwd_ms']
            row['fwd_bwd_vs_triton'] = row['fwd_bwd_ms'] / tri['fwd_bwd_ms']
    return {'copy_gb_s': bandwidth / 1e9, 'rows': rows}


# ------------------------------------------------------------------------------------------
# Section 4: backbones
# ------------------------------------------------------------------------------------------


def build_backbone(key: str, hw: Tuple[int, int], smoke: bool,
                   scan_backend: str) -> Tuple[Any, Callable[[Any, Any], Sequence[Any]]]:
    """A backbone and the function returning its four NCHW stage maps.

    Ours: the dense-backbone ``forward`` (per-stage output norms, NCHW). timm: its
    ``forward_intermediates(x, indices=4, intermediates_only=True)``. With ``smoke`` the
    ``test`` archs and equally small timm configurations.
    """
    import timm

    from mambaout_dense.models import MambaOut, VMamba

    def ours(model: Any, x: Any) -> Sequence[Any]:
        return model(x)

    def timm_maps(model: Any, x: Any) -> Sequence[Any]:
        return model.forward_intermediates(x, indices=4, intermediates_only=True)

    arch = 'test' if smoke else 'tiny'
    if key == 'mambaout_ours':
        return MambaOut(arch), ours
    if key == 'vmamba_ours':
        return VMamba(arch, scan_backend=scan_backend), ours
    if key == 'mambaout_timm':
        kw = dict(depths=(1, 1, 2, 1), dims=(16, 24, 32, 48)) if smoke else {}
        model = timm.create_model('mambaout_tiny', pretrained=False, num_classes=0, **kw)
        return model, timm_maps
    if key == 'swin_timm':
        kw = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4)) if smoke else {}
        model = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False,
                                  num_classes=0, img_size=hw, **kw)
        return model, timm_maps
    raise ValueError(f'unknown backbone {key!r}; valid: {[k for k, _ in BACKBONES]}')


def backbone_plan(smoke: bool) -> List[Tuple[str, Tuple[int, int, int], str]]:
    """(backbone key, (batch, H, W), dtype) in the order measured.

    The VMamba rows come last: they run our Triton kernels, and a kernel fault that broke the
    CUDA context would otherwise take the rows after it down too.
    """
    inputs = SMOKE_INPUTS if smoke else GPU_INPUTS
    plan = [(key, inp, dtype) for inp in inputs for dtype in DTYPES for key, _ in BACKBONES
            if key != 'vmamba_ours']
    return plan + [('vmamba_ours', inp, dtype) for inp in inputs for dtype in DTYPES]


def backbone_row_key(key: str, inp: Tuple[int, int, int], dtype: str) -> str:
    """Row key of one backbone measurement."""
    return f'{key} | {inp[0]}x{inp[1]}x{inp[2]} | {dtype}'


def section_backbones(suite: Suite, device: str, smoke: bool, repeat: int) -> Dict[str, Any]:
    """Forward+backward images/s in bf16 autocast and fp32."""
    import torch

    from mambaout_dense.analysis.measure import median_seconds, peak_memory_mb

    # GPU: the VMamba rows use the Triton scan (or fail saying why). Smoke: the pure-PyTorch
    # scan, since the Triton interpreter takes about a minute per training step of even the
    # `test` arch; the kernels are covered by scan_check and scan_speed.
    scan_backend = 'torch' if smoke else 'triton'
    warmup = 0 if smoke else 2
    rows: List[Dict[str, Any]] = []
    built: Dict[Tuple[str, Tuple[int, int, int]], Any] = {}
    for key, (batch, h, w), dtype in backbone_plan(smoke):
        label = dict(BACKBONES)[key]
        row: Dict[str, Any] = {'key': backbone_row_key(key, (batch, h, w), dtype),
                               'model': label, 'backbone': key, 'input': f'{batch} x {h}x{w}',
                               'dtype': dtype}
        if key == 'vmamba_ours':
            row['scan_backend'] = scan_backend
            if scan_backend != 'triton':
                row['model'] = f'VMamba-T (ours, {scan_backend} scan)'
        if any(inp != (batch, h, w) for _, inp in built):
            built.clear()  # keep only the models of the current input alive

        def measure(key=key, batch=batch, h=h, w=w, dtype=dtype) -> Dict[str, Any]:
            if (key, (batch, h, w)) not in built:
                torch.manual_seed(0)
                model, maps = build_backbone(key, (h, w), smoke, scan_backend)
                built[(key, (batch, h, w))] = (model.to(device).train(), maps)
            model, maps = built[(key, (batch, h, w))]
            x = torch.randn(batch, 3, h, w, device=device)
            autocast = (torch.autocast(device_type=torch.device(device).type,
                                       dtype=torch.bfloat16)
                        if dtype == 'bf16' else nullcontext())
            shapes: List[Tuple[int, ...]] = []

            def step() -> None:
                model.zero_grad(set_to_none=True)
                with autocast:
                    outs = maps(model, x)
                    loss = sum(o.float().mean() for o in outs)
                loss.backward()
                shapes[:] = [tuple(o.shape) for o in outs]

            seconds = median_seconds(step, device, warmup=warmup, repeat=repeat)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            return {'params_m': params, 'ms_per_iter': seconds * 1e3,
                    'images_per_s': batch / seconds,
                    'peak_mib': to_jsonable(peak_memory_mb(step, device)),
                    'output_shapes': [list(s) for s in shapes]}
        rows.append(guarded_row(suite, row, measure, need_s=0 if smoke else 10))
    built.clear()
    for row in rows:
        for ref_key, field in ((REFERENCE_BACKBONE, 'speed_vs_swin'),
                               ('mambaout_timm', 'speed_vs_timm_mambaout')):
            if field == 'speed_vs_timm_mambaout' and row['backbone'] != 'mambaout_ours':
                continue
            ref = next((r for r in rows if r['backbone'] == ref_key and r['status'] == 'ok'
                        and r['input'] == row['input'] and r['dtype'] == row['dtype']), None)
            if row['status'] == 'ok' and ref is not None:
                row[field] = row['images_per_s'] / ref['images_per_s']
    return {'rows': rows, 'reference': REFERENCE_BACKBONE,
            'forward': 'ours: dense forward (output norms, NCHW); timm: forward_intermediates',
            'loss': 'sum of the means of the 4 stage maps, in fp32'}


# ------------------------------------------------------------------------------------------
# Reports: markdown (file and README section)
# ------------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    from mambaout_dense.analysis.tables import format_value
    return format_value(v) if v is not None else 'n/a'


def _status_text(row: Optional[Dict[str, Any]]) -> Optional[str]:
    """None for a measured row, else what to print in its cells."""
    if row is None:
        return NOT_MEASURED
    if row.get('status') == 'ok':
        return None
    if row.get('status') == 'skipped':
        return f'skipped ({row.get("reason", "")})'
    return f'error: {str(row.get("error", ""))[:80]}'


def _plan(result: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if result is not None and 'plan' in result:
        return result['plan']
    return make_plan(smoke=False)


def make_plan(smoke: bool) -> Dict[str, Any]:
    """The rows a run measures (the report lists them all, measured or not)."""
    return {
        'scan_check': [c[0] for c in (SMOKE_SCAN_CHECK if smoke else GPU_SCAN_CHECK)]
        + ([] if smoke else [f'{GPU_SCAN_SPEED[0][0]}, forward only']),
        'scan_speed': [list(c) for c in (SMOKE_SCAN_SPEED if smoke else GPU_SCAN_SPEED)],
        'backbones': [list(inp) for inp in (SMOKE_INPUTS if smoke else GPU_INPUTS)],
    }


def _rows(result: Optional[Dict[str, Any]], section: str) -> List[Dict[str, Any]]:
    if result is None:
        return []
    return result.get('sections', {}).get(section, {}).get('rows', [])


def _section_note(result: Optional[Dict[str, Any]], section: str) -> str:
    if result is None:
        return ''
    entry = result.get('sections', {}).get(section)
    if entry is None:
        return f'\nSection `{section}`: {NOT_MEASURED}.\n'
    if entry.get('status') == 'ok':
        return ''
    return (f'\nSection `{section}`: {entry.get("status")} '
            f'({entry.get("error") or entry.get("reason")}).\n')


def summary_lines(result: Dict[str, Any]) -> List[str]:
    """The run's headline numbers as markdown bullets (what was measured, and only that)."""
    lines = []
    check = result.get('sections', {}).get('scan_check', {})
    if check.get('status') == 'ok':
        ok = [r for r in check['rows'] if r['status'] == 'ok']
        failed = [r['key'] for r in ok if not r['passed']]
        worst = max((r['max_error'] for r in ok if r['max_error'] is not None), default=None)
        verdict = (f'**fails** on {", ".join(failed)}' if failed
                   else f'passes {len(ok)}/{len(check["rows"])} cases')
        lines.append(f'- Triton scan vs the float64 reference: {verdict} '
                     f'(worst relative error {_fmt(worst)}).')
    for row in _rows(result, 'scan_speed'):
        if row['backend'] == 'triton' and row['status'] == 'ok':
            lines.append(f'- Triton scan, {row["case"]}: forward {_fmt(row["fwd_ms"])} ms = '
                         f'{_fmt(row["x_floor_fwd"])}x the HBM floor, forward+backward '
                         f'{_fmt(row["x_floor_fwd_bwd"])}x.')
            break
    rows = [r for r in _rows(result, 'backbones') if r['status'] == 'ok']
    if rows:
        first = rows[0]['input']
        for key in ('mambaout_ours', 'vmamba_ours'):
            parts = [f'{DTYPE_LABELS[r["dtype"]]} {_fmt(r["speed_vs_swin"])}x'
                     for r in rows if r['backbone'] == key and r['input'] == first
                     and 'speed_vs_swin' in r]
            if parts:
                label = next(r['model'] for r in rows if r['backbone'] == key)
                extra = ''
                if key == 'mambaout_ours':
                    timm = [f'{DTYPE_LABELS[r["dtype"]]} {_fmt(r["speed_vs_timm_mambaout"])}x'
                            for r in rows if r['backbone'] == key and r['input'] == first
                            and 'speed_vs_timm_mambaout' in r]
                    extra = f'; vs timm MambaOut-T {", ".join(timm)}' if timm else ''
                lines.append(f'- {label} vs Swin-T (timm), {first}, images/s: '
                             f'{", ".join(parts)}{extra}.')
    return lines


def markdown_report(result: Optional[Dict[str, Any]], heading: str = '###') -> str:
    """The tables of a run (``None``: every GPU row "not measured").

    Args:
        result (dict, optional): A run's JSON, or None for the placeholder.
        heading (str): Markdown heading prefix. Defaults to '###'.

    Returns:
        str: Markdown, without a trailing newline.
    """
    from mambaout_dense.analysis.tables import markdown_table
    plan = _plan(result)
    env = (result or {}).get('sections', {}).get('environment', {})
    smoke = bool((result or {}).get('smoke'))
    lines = [f'{heading} GPU: Triton scan and backbone throughput (`benchmarks/gpu_suite.py`)',
             '']
    if result is None:
        lines.append(f'GPU: {NOT_MEASURED} (no GPU run yet; see docs/gpu_suite.md).')
    else:
        if smoke:
            lines.append('**Smoke run on the CPU (tiny shapes, `test` archs): not GPU numbers.**')
            lines.append('')
        lines.append(f'{env.get("environment", "environment: " + NOT_MEASURED)}; '
                     f'run {result.get("started", "?")}, {result.get("wall_s", "?")} s.')
        if env.get('status') == 'ok':
            rates = [f'copy {_fmt(env.get("copy_gb_s"))} GB/s',
                     f'fp32 GEMM {_fmt(env.get("gemm_fp32_tmac_s"))} T multiply-adds/s']
            if 'gemm_bf16_tmac_s' in env:
                rates.append(f'bf16 GEMM {_fmt(env["gemm_bf16_tmac_s"])} T multiply-adds/s')
            v = env.get('versions', {})
            lines.append(', '.join(rates) + f'; torch {v.get("torch")}, triton '
                         f'{v.get("triton")}, timm {v.get("timm")}.')
        lines += [''] + summary_lines(result)
    lines.append('')

    # scan check
    checks = {r['key']: r for r in _rows(result, 'scan_check')}
    tol = SCAN_TOLERANCE
    lines.append(f'Triton scan vs the float64 reference loop (max |error| / max |reference| over '
                 f'output, last state and all input gradients; pass < {tol:g}):')
    lines.append('')
    table = []
    for name in plan['scan_check']:
        row = checks.get(name)
        status = _status_text(row)
        if result is not None and row is None:
            status = _section_status(result, 'scan_check')
        table.append({'case': name, 'max error': status or _fmt(row['max_error']),
                      'passed': status or ('yes' if row['passed'] else '**no**')})
    lines += [markdown_table(table, ['case', 'max error', 'passed']), '']
    lines.append(_section_note(result, 'scan_check').strip())

    # scan speed
    speed = {r['key']: r for r in _rows(result, 'scan_speed')}
    lines.append('Triton scan time against the HBM floor (fp32, softplus, D and bias; floor = '
                 'bytes / measured copy bandwidth; forward 4·(3·dim·L + 2·groups·N·L) bytes per '
                 'image, forward+backward 4·(8·dim·L + 6·groups·N·L)), beside the pure-PyTorch '
                 '`torch` backend:')
    lines.append('')
    table = []
    for name, batch, dim, length, n_state, groups in plan['scan_speed']:
        tri, tor = speed.get(f'{name} | triton'), speed.get(f'{name} | torch')
        if result is not None and tri is None:
            tri = {'status': 'skipped', 'reason': _section_status(result, 'scan_speed')}
        status = _status_text(tri)
        cell: Dict[str, Any] = {'case': name, 'shape': f'{batch}x{dim}x{length}, N {n_state}, '
                                f'G {groups}'}
        if status:
            cell['floor fwd ms'] = status  # the other cells stay empty
        else:
            cell.update({'floor fwd ms': tri['floor_fwd_ms'], 'fwd ms': tri['fwd_ms'],
                         'x floor': tri['x_floor_fwd'], 'fwd+bwd ms': tri['fwd_bwd_ms'],
                         'x floor (fwd+bwd)': tri['x_floor_fwd_bwd']})
        tor_status = _status_text(tor) if result is not None else NOT_MEASURED
        if not status:
            cell['torch backend fwd / fwd+bwd ms'] = tor_status or (
                f'{_fmt(tor["fwd_ms"])} / {_fmt(tor["fwd_bwd_ms"])}')
        table.append(cell)
    lines += [markdown_table(table, ['case', 'shape', 'floor fwd ms', 'fwd ms', 'x floor',
                                     'fwd+bwd ms', 'x floor (fwd+bwd)',
                                     'torch backend fwd / fwd+bwd ms']), '']
    lines.append(_section_note(result, 'scan_speed').strip())

    # backbones
    bb = {r['key']: r for r in _rows(result, 'backbones')}
    lines.append('Backbone training throughput, forward+backward (random weights, loss = sum of '
                 'the means of the four stage maps); speed ratio > 1 means faster than Swin-T '
                 '(timm) at the same input and precision:')
    lines.append('')
    table = []
    for batch, h, w in plan['backbones']:
        for dtype in DTYPES:
            for key, label in BACKBONES:
                row = bb.get(backbone_row_key(key, (batch, h, w), dtype))
                if result is not None and row is None:
                    row = {'status': 'skipped', 'reason': _section_status(result, 'backbones')}
                if row is not None and row.get('scan_backend') not in (None, 'triton'):
                    label = f'VMamba-T (ours, {row["scan_backend"]} scan)'
                status = _status_text(row)
                cell = {'model': label, 'input': f'{batch} x {h}x{w}',
                        'precision': DTYPE_LABELS[dtype]}
                if status:
                    cell['images/s'] = status  # the other cells stay empty
                else:
                    cell.update({'images/s': row['images_per_s'], 'ms/iter': row['ms_per_iter'],
                                 'peak MiB': _fmt(row.get('peak_mib')),
                                 'speed vs Swin-T': _fmt(row.get('speed_vs_swin'))})
                    if 'speed_vs_timm_mambaout' in row:
                        cell['speed vs timm MambaOut-T'] = row['speed_vs_timm_mambaout']
                table.append(cell)
    lines += [markdown_table(table, ['model', 'input', 'precision', 'images/s', 'ms/iter',
                                     'peak MiB', 'speed vs Swin-T',
                                     'speed vs timm MambaOut-T']), '']
    lines.append(_section_note(result, 'backbones').strip())
    lines = [_wrap(line) for line in lines]
    return re.sub(r'\n{3,}', '\n\n', '\n'.join(lines)).rstrip('\n')


def _wrap(line: str, width: int = 100) -> str:
    """Wrap a prose line or bullet at ``width`` (tables and headings stay as they are)."""
    if line.startswith(('|', '#')) or len(line) <= width:
        return line
    indent = '  ' if line.startswith('- ') else ''
    return textwrap.fill(line, width, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def _section_status(result: Dict[str, Any], section: str) -> str:
    entry = result.get('sections', {}).get(section)
    if entry is None:
        return NOT_MEASURED
    if entry.get('status') == 'ok':
        return 'missing'
    return str(entry.get('reason') or entry.get('error') or entry.get('status'))[:80]


def readme_text(result: Optional[Dict[str, Any]]) -> str:
    """The ``speed-gpu`` README section for a run's JSON, or the placeholder for None."""
    return markdown_report(result)


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------


PARTS: Dict[str, Tuple[str, ...]] = {'scan': ('scan_check', 'scan_speed'),
                                     'backbones': ('backbones', )}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=DEFAULT_OUT, help='output folder (default: %(default)s)')
    parser.add_argument('--device', help='default: cuda; cpu with --smoke')
    parser.add_argument('--smoke', action='store_true',
                        help='CPU, tiny shapes and `test` archs (CI); the Triton kernels run '
                        'under TRITON_INTERPRET=1')
    parser.add_argument('--budget-s', type=float, default=420.0,
                        help='seconds the whole run may take (default: %(default)s)')
    parser.add_argument('--repeat', type=int, help='timed calls per row (default: 5; smoke: 1)')
    parser.add_argument('--parts', nargs='+', default=list(PARTS), choices=list(PARTS),
                        help='parts to run after the environment (default: all)')
    parser.add_argument('--isolate', action=argparse.BooleanOptionalAction, default=True,
                        help='run each part in a child process, so that a crash or a broken '
                        'CUDA context in one keeps the others (default: on)')
    parser.add_argument('--readme', action='store_true',
                        help='after a GPU run, rewrite the README section speed-gpu')
    parser.add_argument('--readme-from', metavar='JSON',
                        help='only rewrite the README section from a stored run')
    parser.add_argument('--readme-placeholder', action='store_true',
                        help='only write the README section with every GPU row "not measured"')
    parser.add_argument('--readme-path', help="README to rewrite (default: the repository's)")
    parser.add_argument('--check-imports', action='store_true',
                        help='import what the suite needs and list the third-party modules')
    # internal: how the parent process starts a part in a child
    parser.add_argument('--child-part', choices=list(PARTS), help=argparse.SUPPRESS)
    parser.add_argument('--copy-gb-s', type=float, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def write_readme(text: str, path: Optional[str]) -> None:
    """Rewrite section ``speed-gpu`` of the README (appended when missing)."""
    from mambaout_dense.analysis.tables import README, update_readme_section
    target = path or README
    if not update_readme_section(README_SECTION, text, readme=target):
        raise FileNotFoundError(f'no README at {target}')
    print(f'[gpu_suite] README section {README_SECTION!r} rewritten in {target}', flush=True)


def run_part(suite: Suite, part: str, device: str, smoke: bool, repeat: int,
             bandwidth: Optional[float]) -> None:
    """Run the sections of one part in this process."""
    for name in PARTS[part]:
        if name == 'scan_check':
            suite.section(name, lambda: section_scan_check(suite, device, smoke))
        elif name == 'scan_speed':
            suite.section(name, lambda: section_scan_speed(suite, device, smoke, bandwidth,
                                                           repeat))
        elif name == 'backbones':
            suite.section(name, lambda: section_backbones(suite, device, smoke, repeat))


def run_part_isolated(suite: Suite, part: str, device: str, smoke: bool, repeat: int,
                      bandwidth: Optional[float]) -> None:
    """Run one part in a child process and merge the sections it recorded.

    The child writes its JSON after every row, so a child that crashes or is killed at the
    time limit still hands over what it measured; the sections it did not finish are marked.
    """
    import subprocess
    import tempfile
    # The child starts no row in the last 15 s of its budget (its reserve), i.e. 5 s before this
    # process's reserve begins, and is killed at the end of its budget at the latest.
    budget = suite.left() + 10
    if budget <= 15:
        for name in PARTS[part]:
            suite.result['sections'][name] = {'status': 'skipped', 'reason': 'time budget spent'}
        suite.write()
        return
    with tempfile.TemporaryDirectory(prefix='gpu_suite_') as tmp:
        cmd = [sys.executable, osp.abspath(__file__), '--child-part', part, '--out', tmp,
               '--device', device, '--budget-s', f'{budget:.0f}', '--repeat', str(repeat)]
        if smoke:
            cmd.append('--smoke')
        if bandwidth:
            cmd += ['--copy-gb-s', f'{bandwidth / 1e9:.6g}']
        suite.log(f'part {part}: child process')
        try:
            ended = f'exit status {subprocess.run(cmd, timeout=budget).returncode}'
        except subprocess.TimeoutExpired:
            ended = 'killed at the time limit'
        child: Dict[str, Any] = {}
        if osp.isfile(osp.join(tmp, JSON_NAME)):
            with open(osp.join(tmp, JSON_NAME)) as f:
                child = json.load(f)
    for key in ('triton_interpret', ):
        if key in child:
            suite.result.setdefault(key, child[key])
    suite.result.setdefault('child_modules', {})[part] = child.get('modules', [])
    for name in PARTS[part]:
        entry = child.get('sections', {}).get(name)
        if entry is None:
            entry = {'status': 'error', 'error': f'child process ended ({ended}) before the '
                     'section started; see the log'}
        elif entry.get('status') == 'running':
            entry.update(status='error', error=f'child process ended ({ended}) during the '
                         'section; the rows it finished are kept; see the log')
        suite.result['sections'][name] = entry
    suite.log(f'part {part}: child {ended}')
    suite.write()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the suite (or one of the README modes); returns the exit status."""
    args = parse_args(argv)
    device = args.device or ('cpu' if args.smoke else 'cuda')
    if device == 'cpu' and 'triton' not in sys.modules:
        # The Triton interpreter runs the kernels on CPU tensors; it must be switched on
        # before Triton is first imported.
        os.environ.setdefault('TRITON_INTERPRET', '1')

    if args.readme_placeholder or args.readme_from:
        result = None
        if args.readme_from:
            with open(args.readme_from) as f:
                result = json.load(f)
            if result.get('smoke'):
                print('[gpu_suite] warning: this JSON is from a --smoke run', flush=True)
        write_readme(readme_text(result), args.readme_path)
        return 0

    if args.check_imports:
        import timm  # noqa: F401

        import mambaout_dense.analysis.measure  # noqa: F401
        import mambaout_dense.analysis.tables  # noqa: F401
        import mambaout_dense.models  # noqa: F401
        import mambaout_dense.ops  # noqa: F401
        print(' '.join(third_party_modules()))
        return 0

    import torch
    if device.startswith('cuda') and not torch.cuda.is_available():
        print('[gpu_suite] no CUDA device: run with --smoke on a CPU', file=sys.stderr)
        return 2
    if device.startswith('cuda'):
        torch.backends.cudnn.benchmark = True  # training-style convolution autotuning
    if args.smoke:
        # Smoke timings mean nothing; one thread keeps a loaded CI machine from spending
        # seconds per tiny operator in OpenMP barriers (measured: 1.6 s vs 0.02 s per step).
        torch.set_num_threads(1)
    repeat = args.repeat or (1 if args.smoke else 5)
    suite = Suite(args.out, args.budget_s,
                  name=f'gpu_suite:{args.child_part}' if args.child_part else 'gpu_suite')
    suite.result.update(smoke=args.smoke, device=device, repeat=repeat,
                        triton_interpret=os.environ.get('TRITON_INTERPRET') == '1')
    if args.child_part:
        bandwidth = args.copy_gb_s * 1e9 if args.copy_gb_s else None
        run_part(suite, args.child_part, device, args.smoke, repeat, bandwidth)
        suite.result['modules'] = third_party_modules()
        suite.write()
        return 0

    suite.result.update(plan=make_plan(args.smoke), isolate=args.isolate,
                        argv=list(argv if argv is not None else sys.argv[1:]))
    suite.log(f'device {device}, smoke {args.smoke}, budget {args.budget_s:.0f} s, '
              f'out {args.out}')
    env = suite.section('environment', lambda: section_environment(device, args.smoke))
    bandwidth = env['copy_gb_s'] * 1e9 if env['status'] == 'ok' else None
    for part in args.parts:
        runner = run_part_isolated if args.isolate else run_part
        runner(suite, part, device, args.smoke, repeat, bandwidth)
    modules = set(third_party_modules())
    for names in suite.result.get('child_modules', {}).values():
        modules.update(names)
    suite.result['openmmlab_modules'] = sorted(
        m for m in modules if m in ('mmcv', 'mmdet', 'mmseg', 'mmpretrain'))
    json_path, md_path = suite.write()
    print(markdown_report(suite.result), flush=True)
    suite.log(f'wrote {json_path} and {md_path}')
    if args.readme:
        if args.smoke or not device.startswith('cuda'):
            print('[gpu_suite] --readme ignored: not a GPU run', flush=True)
        else:
            write_readme(readme_text(suite.result), args.readme_path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
