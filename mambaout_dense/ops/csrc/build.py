"""Build the optional C++ CPU kernels ahead of time, and check them: the selective scan and
RoIAlign.

Usage::

    python -m mambaout_dense.ops.csrc.build [--verbose]

Compiles ``selective_scan_cpu.cpp`` (the recurrence of "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", Gu & Dao, arXiv:2312.00752) with ``torch.utils.cpp_extension`` into
``mambaout_dense/ops/csrc/build/``, checks its forward and gradients against the float64
``reference`` backend with every instruction set the CPU runs (AVX-512, AVX2, portable), and only
then writes ``meta.json`` (torch version, SHA-1 of the source, instruction sets, largest
relative error). Without that
file the ``cpu`` backend is unavailable; with it, it is the default for CPU tensors (see
:func:`mambaout_dense.ops.get_default_backend`). Then ``roi_align_cpu.cpp`` (the parallel RoIAlign
of :mod:`mambaout_dense.ops.roi_align`), checked against torchvision's ``roi_align`` in float64,
forward and input gradient, and recorded in ``roi_align_meta.json``; and
``depthwise_conv_cpu.cpp`` (the weight gradient of :mod:`mambaout_dense.ops.depthwise_conv`),
checked against PyTorch's autograd of ``F.conv2d`` in float64. Nothing is timed here:
speed comparisons live in ``benchmarks/``.
"""
import argparse
import json
import sys
import time
from types import ModuleType
from typing import Dict, List

import torch

from ..scan_cpu import BUILD_DIR, LIB_NAME
from ..scan_inputs import random_scan_inputs

CFLAGS = ['-O3', '-fopenmp-simd', '-fno-trapping-math']
# (batch, dim, L, N, groups): N == 1 (VMamba-T), N == 16 (vanilla VMamba) and an odd N with a
# partial vector of states and of steps.
CHECK_SHAPES = ((2, 8, 200, 1, 2), (1, 8, 150, 16, 4), (2, 6, 77, 5, 3))
TOLERANCE = 1e-4


def _inputs(batch: int, dim: int, length: int, n_state: int, groups: int,
            seed: int = 0) -> Dict[str, torch.Tensor]:
    return random_scan_inputs(batch, dim, length, n_state, groups, seed=seed, a_scale=4.0,
                              bias_scale=0.1)


def _outputs_and_grads(x: Dict[str, torch.Tensor], backend: str) -> List[torch.Tensor]:
    from mambaout_dense.ops import selective_scan

    leaves = {k: v.clone().requires_grad_() for k, v in x.items()}
    out, last = selective_scan(**leaves, delta_softplus=True, return_last_state=True,
                               backend=backend)
    g = torch.Generator().manual_seed(1)
    cots = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype) for t in (out, last)]
    grads = torch.autograd.grad([out, last], list(leaves.values()), cots)
    return [out.detach(), last.detach(), *grads]


def check(module: ModuleType) -> dict:
    """Compare the built kernel (every instruction set) with the float64 reference.

    Args:
        module (ModuleType): The loaded extension.

    Returns:
        dict: ``isas`` (instruction sets checked, best first) and ``max_rel_err``.

    Raises:
        RuntimeError: When an output or gradient is off by more than :data:`TOLERANCE`
            (relative to its largest magnitude).
    """
    best = module.isa()
    worst = 0.0
    try:
        for isa in module.isas():
            module.set_isa(isa)
            for shape in CHECK_SHAPES:
                x = _inputs(*shape)
                for ref, got in zip(_outputs_and_grads(x, 'reference'),
                                    _outputs_and_grads(x, 'cpu')):
                    err = ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
                    if not err < TOLERANCE:  # also catches NaN
                        # internal invariant: a miscompiled kernel, not a user mistake
                        raise RuntimeError(f'the compiled CPU scan ({isa}) disagrees with the '
                                           f'reference at shape {shape}: relative error {err}')
                    worst = max(worst, err)
    finally:
        module.set_isa(best)
    return dict(isas=list(module.isas()), max_rel_err=worst)


#: RoIAlign check cases: (output size, spatial scale, sampling ratio, aligned).
ROI_CASES = ((7, 0.25, 0, True), (14, 0.125, 2, True), (7, 0.5, 0, False), (5, 1.0, 3, True))


def check_roi_align(module: ModuleType) -> dict:
    """Compare the RoIAlign kernel with torchvision's ``roi_align`` (float64, forward and input
    gradient) on random maps and boxes, some reaching beyond the map.

    Raises:
        RuntimeError: When a forward or gradient is off by more than :data:`TOLERANCE`.
    """
    from torchvision.ops import roi_align as tv_roi_align

    from ..roi_align import EXTENSION as ROI_EXTENSION
    from ..roi_align import roi_align
    ROI_EXTENSION.use(module)
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for size, scale, ratio, aligned in ROI_CASES:
        x = torch.randn(2, 3, 13, 17, generator=g, dtype=torch.float64)
        xy = torch.rand(9, 2, generator=g, dtype=torch.float64) * 60 / scale / 4 - 2
        wh = torch.rand(9, 2, generator=g, dtype=torch.float64) * 50 / scale / 4
        rois = torch.cat([torch.randint(0, 2, (9, 1), generator=g).double(), xy, xy + wh], 1)
        cot = torch.randn(9, 3, size, size, generator=g, dtype=torch.float64)
        results = []
        for fn in (roi_align, tv_roi_align):
            leaf = x.clone().requires_grad_()
            out = fn(leaf, rois, (size, size), scale, ratio, aligned)
            (grad, ) = torch.autograd.grad(out, leaf, cot)
            results.append((out.detach(), grad))
        for got, ref in zip(*results):
            err = ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
            if not err < TOLERANCE:  # internal invariant: a miscompiled kernel
                raise RuntimeError(f'the compiled RoIAlign disagrees with torchvision for case '
                                   f'{(size, scale, ratio, aligned)}: relative error {err}')
            worst = max(worst, err)
    return dict(max_rel_err=worst, cases=len(ROI_CASES))


#: Depthwise-convolution check cases: (batch, channels, height, width, kernel).
DEPTHWISE_CASES = ((2, 5, 9, 11, 7), (1, 3, 4, 6, 7), (3, 4, 8, 8, 3))


def check_depthwise(module: ModuleType) -> dict:
    """Compare the depthwise backward (kernel weight gradient, flipped-kernel input gradient)
    with PyTorch's autograd of ``F.conv2d`` in float64.

    Raises:
        RuntimeError: When a gradient is off by more than :data:`TOLERANCE`.
    """
    import torch.nn.functional as F

    from ..depthwise_conv import EXTENSION as DW_EXTENSION
    from ..depthwise_conv import depthwise_conv2d
    DW_EXTENSION.use(module)
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch, channels, height, width, k in DEPTHWISE_CASES:
        x = torch.randn(batch, height, width, channels, generator=g, dtype=torch.float64)
        x = x.permute(0, 3, 1, 2)  # channels-last, as the Gated CNN block passes it
        w = torch.randn(channels, 1, k, k, generator=g, dtype=torch.float64)
        bias = torch.randn(channels, generator=g, dtype=torch.float64)
        cot = torch.randn(batch, channels, height, width, generator=g, dtype=torch.float64)
        results = []
        for fn in (depthwise_conv2d,
                   lambda a, b, c: F.conv2d(a, b, c, padding=k // 2, groups=channels)):
            leaves = [t.clone().requires_grad_() for t in (x, w, bias)]
            out = fn(*leaves)
            results.append([out.detach(), *torch.autograd.grad(out, leaves, cot)])
        for got, ref in zip(*results):
            err = ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
            if not err < TOLERANCE:  # internal invariant: a miscompiled kernel
                raise RuntimeError(f'the depthwise backward disagrees with autograd for '
                                   f'{(batch, channels, height, width, k)}: relative error {err}')
            worst = max(worst, err)
    return dict(max_rel_err=worst, cases=len(DEPTHWISE_CASES))


def build_checked(tag: str, extension, check, verbose: bool = False) -> int:
    """Compile ``extension``, run ``check`` on it, and record the build only if it passes.

    Returns:
        int: 0 on success, 1 when the check failed (the build then stays unused).
    """
    start = time.time()
    module = extension.compile(CFLAGS, verbose=verbose)
    print(f'[{tag}] built in {time.time() - start:.0f} s into {extension.build_dir}')
    try:
        result = check(module)
    except RuntimeError as e:
        extension.use(None)
        print(f'[{tag}] check failed, the kernel stays unused: {e}')
        return 1
    extension.use(None)  # later loads go through the recorded, checked build
    meta = extension.write_meta(**result)
    print(f'[{tag}] checked: {json.dumps(meta)}')
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--verbose', action='store_true', help='show the compiler output')
    args = parser.parse_args(argv)
    from .. import scan_cpu
    start = time.time()
    module = scan_cpu.EXTENSION.compile(CFLAGS, verbose=args.verbose)
    print(f'[scan_cpu] built {LIB_NAME} in {time.time() - start:.0f} s into {BUILD_DIR}')
    scan_cpu.use_module(module)  # the check runs through selective_scan(backend='cpu')
    try:
        result = check(module)
    except RuntimeError as e:
        scan_cpu.use_module(None)
        print(f'[scan_cpu] check failed, the kernel stays unused: {e}')
        return 1
    meta = scan_cpu.EXTENSION.write_meta(**result)
    print(f'[scan_cpu] checked against the reference: {json.dumps(meta)}')
    from ..depthwise_conv import EXTENSION as DW_EXTENSION
    from ..roi_align import EXTENSION as ROI_EXTENSION
    failed = build_checked('roi_align_cpu', ROI_EXTENSION, check_roi_align, args.verbose)
    failed += build_checked('depthwise_conv_cpu', DW_EXTENSION, check_depthwise, args.verbose)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
