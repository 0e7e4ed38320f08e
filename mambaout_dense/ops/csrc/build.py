"""Build the optional C++ CPU selective scan ahead of time, and check it.

Usage::

    python -m mambaout_dense.ops.csrc.build [--verbose]

Compiles ``selective_scan_cpu.cpp`` (the recurrence of "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", Gu & Dao, arXiv:2312.00752) with ``torch.utils.cpp_extension`` into
``mambaout_dense/ops/csrc/build/``, checks its forward and gradients against the float64
``reference`` backend with every instruction set the CPU runs (AVX-512, AVX2, portable), and only
then writes ``meta.json`` (torch version, SHA-1 of the source, instruction sets, largest
relative error). Without that
file the ``cpu`` backend is unavailable; with it, it is the default for CPU tensors (see
:func:`mambaout_dense.ops.get_default_backend`). Nothing is timed here: speed comparisons live in
``benchmarks/scan_speed.py``.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from types import ModuleType
from typing import Dict, List

import torch
from torch.utils.cpp_extension import load

from ..scan_cpu import BUILD_DIR, LIB_NAME, META_FILE, SOURCE

CFLAGS = ['-O3', '-fopenmp-simd', '-fno-trapping-math']
# (batch, dim, L, N, groups): N == 1 (VMamba-T), N == 16 (vanilla VMamba) and an odd N with a
# partial vector of states and of steps.
CHECK_SHAPES = ((2, 8, 200, 1, 2), (1, 8, 150, 16, 4), (2, 6, 77, 5, 3))
TOLERANCE = 1e-4


def _inputs(batch: int, dim: int, length: int, n_state: int, groups: int,
            seed: int = 0) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    return dict(u=rand(batch, dim, length), delta=rand(batch, dim, length, scale=0.5),
                A=-torch.rand(dim, n_state, generator=g, dtype=torch.float64) * 4,
                B=rand(batch, groups, n_state, length), C=rand(batch, groups, n_state, length),
                D=rand(dim), z=rand(batch, dim, length), delta_bias=rand(dim, scale=0.1))


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
                        raise RuntimeError(f'the compiled CPU scan ({isa}) disagrees with the '
                                           f'reference at shape {shape}: relative error {err}')
                    worst = max(worst, err)
    finally:
        module.set_isa(best)
    return dict(isas=list(module.isas()), max_rel_err=worst)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--verbose', action='store_true', help='show the compiler output')
    args = parser.parse_args(argv)
    os.makedirs(BUILD_DIR, exist_ok=True)
    meta_path = osp.join(BUILD_DIR, META_FILE)
    if osp.exists(meta_path):
        os.remove(meta_path)  # an interrupted or failed build must not leave a kernel in use
    start = time.time()
    module = load(name=LIB_NAME, sources=[SOURCE], build_directory=BUILD_DIR,
                  extra_cflags=CFLAGS, verbose=args.verbose)
    print(f'[scan_cpu] built {LIB_NAME} in {time.time() - start:.0f} s into {BUILD_DIR}')
    from .. import scan_cpu
    scan_cpu.use_module(module)  # the check runs through selective_scan(backend='cpu')
    try:
        result = check(module)
    except RuntimeError as e:
        scan_cpu.use_module(None)
        print(f'[scan_cpu] check failed, the kernel stays unused: {e}')
        return 1
    meta = dict(torch=torch.__version__, source_sha1=scan_cpu.source_sha1(), **result)
    with open(meta_path, 'w') as f:
        json.dump(meta, f, indent=2)
    print(f'[scan_cpu] checked against the reference: {json.dumps(meta)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
