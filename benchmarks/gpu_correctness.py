"""Correctness sections of the GPU suite: the Triton selective scan against the float64 loop.

The scan is the S6 recurrence of "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces" (Gu & Dao, arXiv:2312.00752), as "VMamba: Visual State Space Model" (Liu et al.,
arXiv:2401.10166) calls it. ``selective_scan(..., backend='triton')`` is compared with the
``reference`` backend in float64: output, last state and every input gradient, as
``max |error| / max |reference|``.

Two uses:

- the **preflight** (:data:`PREFLIGHT_CASES`): one tiny forward+backward per risk of the first
  sm_90 compile (size-1 tile axes at N 1, several chunks, the reverse multi-operand
  ``associative_scan`` of the backward, whole 2048-element tiles at ``num_warps=8``, bf16
  inputs), before anything is timed;
- the **scan_check** section: small shapes of several chunks, and on CUDA the forward at the full
  VMamba-T stage-1 length.
"""
import math
from typing import Any, Dict, List, Optional

from gpu_plumbing import SkipRow, Suite

#: Relative tolerance of the float32 kernels against the float64 loop (fp32 inputs).
SCAN_TOLERANCE = 1e-4
#: bf16 inputs: outputs and gradients are rounded to bf16 (8 significant bits).
BF16_TOLERANCE = 2e-2


def check_case(name: str, batch: int, dim: int, length: int, n_state: int, groups: int,
               options: Optional[Dict[str, bool]] = None, softplus: bool = True,
               dtype: str = 'fp32', grads: bool = True) -> Dict[str, Any]:
    """One correctness row's identity (``options``: D, z, bias switched off by False)."""
    return {'key': name, 'backend': 'triton',
            'shape': dict(batch=batch, dim=dim, L=length, N=n_state, groups=groups),
            'options': dict(dict(D=True, z=True, bias=True), **(options or {})),
            'softplus': softplus, 'dtype': dtype, 'grads': grads,
            'tolerance': BF16_TOLERANCE if dtype == 'bf16' else SCAN_TOLERANCE}


# L > 128 gives several chunks of the kernels' BLOCK_L (128 at N <= 16). On a GPU the
# preflight's cases fill whole 2048-element tiles (BLOCK_D x BLOCK_N x BLOCK_L = 16 x 1 x 128 at
# N 1, a size-1 state axis; 8 x 4 x 64 at N 4), as VMamba-T's shapes do; the interpreter
# compiles nothing, so the smoke run keeps the tiles small (6 times faster there).
PREFLIGHT_CASES: List[Dict[str, Any]] = [
    check_case('preflight: N1 G4, 2 chunks, fp32', 1, 64, 150, 1, 4, dict(z=False)),
    check_case('preflight: N4 G2, all options, bf16 inputs', 1, 32, 40, 4, 2, dtype='bf16'),
]
SMOKE_PREFLIGHT_CASES: List[Dict[str, Any]] = [
    check_case('preflight: N1 G4, 2 chunks, fp32', 1, 8, 150, 1, 4, dict(z=False)),
    check_case('preflight: N4 G2, all options, bf16 inputs', 1, 8, 40, 4, 2, dtype='bf16'),
]
GPU_SCAN_CHECK: List[Dict[str, Any]] = [
    check_case('VMamba-like N1 G4, 3 chunks', 2, 64, 300, 1, 4, dict(z=False)),
    check_case('all options N16 G1', 1, 16, 200, 16, 1),
    check_case('plain N3 G2, odd channels per group', 2, 12, 130, 3, 2,
               dict(D=False, z=False, bias=False), softplus=False),
    # VMamba-T stage 1 at 512x512 (4 directions x 96 channels, L = 128 x 128), forward only:
    # the float64 loop runs on the GPU, 16384 steps of small kernels
    check_case('VMamba-T stage 1, 512x512, forward only', 1, 384, 128 * 128, 1, 4,
               dict(z=False), grads=False),
]
SMOKE_SCAN_CHECK: List[Dict[str, Any]] = [
    check_case('VMamba-like N1 G4, 2 chunks', 1, 8, 150, 1, 4, dict(z=False)),
    check_case('all options N4 G2', 1, 4, 40, 4, 2),
]


def check_plan(smoke: bool, preflight: bool = False) -> List[Dict[str, Any]]:
    """The rows of the scan_check section, or of the preflight's Triton step."""
    if preflight:
        return [dict(c) for c in (SMOKE_PREFLIGHT_CASES if smoke else PREFLIGHT_CASES)]
    return [dict(c) for c in (SMOKE_SCAN_CHECK if smoke else GPU_SCAN_CHECK)]


def triton_unavailable(device: str) -> Optional[str]:
    """Why the ``triton`` backend cannot run on ``device`` (the registry's reason), or None."""
    from mambaout_dense.ops import available_backends
    from mambaout_dense.ops.scan import unavailable_reason
    if 'triton' in available_backends(device):
        return None
    return unavailable_reason('triton') or f'the triton backend does not run on {device}'


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


def to_jsonable(v: Optional[float]) -> Optional[float]:
    """NaN and infinities become None (strict JSON)."""
    return None if v is None or not math.isfinite(v) else float(v)


def relative_errors(got: Dict[str, Any], expected: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """``max |got - expected| / max |expected|`` per tensor (None when not finite)."""
    return {k: to_jsonable(((got[k] - ref).abs().max()
                            / ref.abs().max().clamp_min(1e-6)).item())
            for k, ref in expected.items()}


def measure_case(case: Dict[str, Any], device: str) -> Dict[str, Any]:
    """Run one correctness case: Triton on ``device`` against the float64 loop.

    The inputs are made in the case's dtype, so the reference sees the same (rounded) values;
    the reference runs on the CPU, or for a forward-only case on ``device``.
    """
    import time

    import torch

    from mambaout_dense.ops.scan_inputs import random_scan_inputs
    s = case['shape']
    dtype = torch.bfloat16 if case['dtype'] == 'bf16' else torch.float32
    ref_device = 'cpu' if case['grads'] else device
    opts = case['options']
    x = random_scan_inputs(s['batch'], s['dim'], s['L'], s['N'], s['groups'], D=opts['D'],
                           z=opts['z'], bias=opts['bias'], dtype=dtype, device=ref_device)
    expected = scan_outputs({k: v.double() for k, v in x.items()}, 'reference',
                            case['softplus'], grads=case['grads'])
    start = time.perf_counter()
    got = scan_outputs({k: v.to(device) for k, v in x.items()}, 'triton', case['softplus'],
                       grads=case['grads'])  # the first call of a shape compiles its kernels
    seconds = time.perf_counter() - start
    errors = relative_errors(got, expected)
    worst = max((e if e is not None else math.inf) for e in errors.values())
    return {'errors': errors, 'max_error': to_jsonable(worst),
            'passed': bool(worst < case['tolerance']), 'first_call_s': round(seconds, 3)}


def section_scan_check(suite: Suite, device: str, plan: List[Dict[str, Any]],
                       triton_ok: bool = True) -> Dict[str, Any]:
    """Triton against the float64 reference loop, one row per case of ``plan``.

    Args:
        suite (Suite): The run.
        device (str): Where the kernels run.
        plan (list[dict]): Rows from :func:`check_case`.
        triton_ok (bool): False when the preflight found the kernels broken: the section is
            skipped. Defaults to True.

    Returns:
        dict: The section's fields besides its rows.
    """
    if not triton_ok:
        raise SkipRow('the Triton preflight failed')
    reason = triton_unavailable(device)
    if reason is not None:
        raise SkipRow(reason)
    for case in plan:
        suite.row(case, lambda case=case: measure_case(case, device),
                  need_s=0 if case['grads'] else 60)
    rows = [r for r in suite.result['sections'][suite.running]['rows'] if r['status'] == 'ok']
    return {'tolerance': SCAN_TOLERANCE, 'bf16_tolerance': BF16_TOLERANCE,
            'all_passed': bool(rows) and len(rows) == len(plan)
            and all(r['passed'] for r in rows)}


def preflight_passed(entry: Optional[Dict[str, Any]]) -> bool:
    """Whether the Triton preflight section ran every case within tolerance."""
    rows = (entry or {}).get('rows', [])
    return bool(rows) and all(r.get('status') == 'ok' and r.get('passed') for r in rows)
