"""Build the optional C++ CPU selective scan ahead of time.

Usage::

    python -m mambaout_dense.ops.csrc.build [--verbose] [--no-bench]

Compiles ``selective_scan_cpu.cpp`` with ``torch.utils.cpp_extension`` into
``mambaout_dense/ops/csrc/build/``, checks it against the ``reference`` backend, times it against
the ``torch`` backend on a VMamba-like shape, and writes ``meta.json`` (torch version, timings,
and whether the kernel is faster, which makes it the default CPU backend; see
:func:`mambaout_dense.ops.get_default_backend`).
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

import torch
from torch.utils.cpp_extension import load

from ..scan_cpu import BUILD_DIR, LIB_NAME, META_FILE

SOURCE = osp.join(osp.dirname(osp.abspath(__file__)), 'selective_scan_cpu.cpp')


def _median_ms(fn, repeat: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def _inputs(batch, dim, length, n_state, groups, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    return dict(u=rand(batch, dim, length), delta=rand(batch, dim, length, scale=0.5),
                A=(-torch.rand(dim, n_state, generator=g, dtype=dtype) * 4).requires_grad_(),
                B=rand(batch, groups, n_state, length), C=rand(batch, groups, n_state, length),
                D=rand(dim), z=rand(batch, dim, length), delta_bias=rand(dim, scale=0.1))


def check_and_time(bench: bool = True) -> dict:
    """Compare the built kernel with the reference, and time it against ``torch``."""
    from mambaout_dense.ops import selective_scan

    x = _inputs(2, 8, 200, 3, 2, dtype=torch.float64)
    ref = selective_scan(**x, delta_softplus=True, backend='reference')
    out = selective_scan(**x, delta_softplus=True, backend='cpu')
    err = ((out - ref).abs().max() / ref.abs().max()).item()
    if not err < 1e-4:
        raise RuntimeError(f'the compiled CPU scan disagrees with the reference (rel. err {err})')
    meta = dict(max_rel_err=err)
    if not bench:
        return meta
    timings, faster = {}, True
    for shape in ((1, 384, 2048, 1, 4), (1, 96, 512, 16, 4)):
        x = _inputs(*shape)
        key = 'b{}_d{}_L{}_N{}_g{}'.format(*shape)
        timings[key] = {}
        for name in ('torch', 'cpu'):

            def step(name=name):
                selective_scan(**x, delta_softplus=True, backend=name).sum().backward()

            timings[key][name] = _median_ms(step, repeat=3)
        faster = faster and timings[key]['cpu'] < timings[key]['torch']
    meta.update(timings_fwd_bwd_ms=timings, threads=torch.get_num_threads(),
                faster_than_torch=faster)
    return meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--verbose', action='store_true', help='show the compiler output')
    parser.add_argument('--no-bench', action='store_true',
                        help='skip the timing; the kernel is then not made the default')
    args = parser.parse_args(argv)
    os.makedirs(BUILD_DIR, exist_ok=True)
    meta_path = osp.join(BUILD_DIR, META_FILE)
    if osp.exists(meta_path):
        os.remove(meta_path)  # an interrupted build must not leave a stale kernel in use
    start = time.time()
    load(name=LIB_NAME, sources=[SOURCE], build_directory=BUILD_DIR,
         extra_cflags=['-O3', '-fopenmp-simd', '-fno-trapping-math'], verbose=args.verbose)
    print(f'[scan_cpu] built {LIB_NAME} in {time.time() - start:.0f} s into {BUILD_DIR}')
    with open(meta_path, 'w') as f:
        json.dump(dict(torch=torch.__version__, faster_than_torch=False), f)
    meta = dict(torch=torch.__version__, **check_and_time(bench=not args.no_bench))
    with open(meta_path, 'w') as f:
        json.dump(meta, f, indent=2)
    print(f'[scan_cpu] {json.dumps(meta)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
