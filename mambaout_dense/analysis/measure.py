"""Timing and peak-memory measurement shared by the analysis tools and ``benchmarks/``.

Timing: warm-up calls, then the median of repeated calls, with CUDA synchronisation. Peak memory:
on CUDA the growth of ``torch.cuda.max_memory_allocated``; on the CPU the growth of the peak
resident set of a forked child that runs the function once (the caller's timings are unaffected).
"""
import os
import resource
import statistics
import time
from typing import Any, Callable, List, Tuple

import torch

__all__ = ['median_seconds', 'peak_memory_mb']


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], Any], device: str = 'cpu', warmup: int = 1,
                   repeat: int = 3) -> Tuple[float, List[float]]:
    """Median wall time of ``fn()`` after ``warmup`` calls, synchronising CUDA.

    Returns:
        tuple[float, list[float]]: The median and all timed runs, in seconds.
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _current_rss_kb() -> int:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') // 1024


def peak_memory_mb(fn: Callable[[], Any], device: str = 'cpu') -> float:
    """Peak memory of one ``fn()`` call above what was allocated before it, in MiB.

    CUDA: ``max_memory_allocated`` growth. CPU: growth of the peak RSS of a forked child that runs
    ``fn`` once ; NaN where ``fork`` is missing.
    """
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    if not hasattr(os, 'fork'):
        return float('nan')
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: measure, report, leave without running atexit handlers
        os.close(read)
        try:
            # the parent's OpenMP pool does not survive fork (libgomp would wait for its
            # threads forever); one thread gives the same tensors, so the same peak
            torch.set_num_threads(1)
            before = _current_rss_kb()
            fn()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            os.write(write, str(max(peak - before, 0)).encode())
        finally:
            os._exit(0)
    os.close(write)
    data = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    return int(data) / 1024 if data else float('nan')
