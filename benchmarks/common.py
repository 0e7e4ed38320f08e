"""Timing and memory helpers shared by the benchmarks (not a test utility).

Timing: warm-up runs, then the median of ``repeat`` runs, with CUDA synchronisation. Peak
memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the growth of the peak resident
set of a forked child that runs the function once (the parent's timings are unaffected).
"""
import os
import platform
import resource
import statistics
import time
from typing import Callable, Dict, List, Sequence

import torch

__all__ = ['median_seconds', 'peak_memory_mb', 'markdown_table', 'environment', 'set_threads']


def set_threads(n: int) -> None:
    torch.set_num_threads(n)


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], device: str = 'cpu', warmup: int = 1,
                   repeat: int = 5) -> float:
    """Median wall time of ``fn()`` in seconds after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mb(fn: Callable[[], object], device: str = 'cpu') -> float:
    """Peak memory of one ``fn()`` call above what was allocated before it, in MiB."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: measure and report, then leave without running atexit handlers
        os.close(read)
        try:
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
    return int(data or b'0') / 1024


def _current_rss_kb() -> int:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') // 1024


def environment(device: str) -> str:
    """One line naming the device, threads and versions."""
    if device.startswith('cuda'):
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine()
        try:
            with open('/proc/cpuinfo') as f:
                name = next(line.split(':', 1)[1].strip() for line in f
                            if line.startswith('model name'))
        except (OSError, StopIteration):
            pass
    return (f'device: {device} ({name}), threads: {torch.get_num_threads()}, '
            f'torch {torch.__version__}')


def markdown_table(rows: List[Dict[str, object]], columns: Sequence[str]) -> str:
    """Render rows (dicts) as a GitHub markdown table with the given column order."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f'{v:.3g}' if abs(v) < 100 else f'{v:.0f}'
        return str(v)
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(fmt(r.get(c, '')) for c in columns) + ' |' for r in rows]
    return '\n'.join(lines)
