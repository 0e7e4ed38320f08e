"""Timing, peak memory and machine rates: the one measuring module of the analysis tools and
``benchmarks/``.

- Timing (:func:`timed_runs`, :func:`median_seconds`): warm-up calls, then repeated calls, each
  closed by a CUDA synchronisation when the device is a GPU (as nanoGPT's benchmark does);
  :func:`interleaved_median_seconds` times several functions in turns, for side-by-side ratios.
- Peak memory (:func:`peak_memory_mb`): on CUDA the growth of ``torch.cuda.max_memory_allocated``
  over one call; on the CPU the growth of the resident set over one call, sampled every 0.5 ms by
  a thread of this process after ``malloc_trim`` has handed freed heap back to the system. It runs
  in-process: a forked child would hang in its first OpenMP region once the parent has used the
  thread pool.
- Machine rates (:func:`copy_bandwidth`, :func:`gemm_flops`): the memory bandwidth and the fp32
  matrix-multiply rate of the device, the floors and ceilings the benchmarks compare against.
- :func:`environment`: one line naming the device, threads and torch version, printed with every
  table.
"""
import ctypes
import os
import platform
import statistics
import threading
import time
from typing import Any, Callable, Dict, List, Mapping

import torch

__all__ = [
    'synchronize', 'timed_runs', 'median_seconds', 'interleaved_median_seconds',
    'peak_memory_mb', 'copy_bandwidth', 'gemm_flops', 'environment', 'device_name'
]


def synchronize(device: str) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def timed_runs(fn: Callable[[], Any], device: str = 'cpu', warmup: int = 1,
               repeat: int = 3) -> List[float]:
    """Wall times of ``repeat`` calls of ``fn()`` after ``warmup`` untimed calls, in seconds.

    Args:
        fn (Callable): The work to time.
        device (str): 'cpu' or a CUDA device; CUDA is synchronised around every call.
            Defaults to 'cpu'.
        warmup (int): Untimed calls first. Defaults to 1.
        repeat (int): Timed calls (at least one). Defaults to 3.

    Returns:
        list[float]: One time per timed call.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def median_seconds(fn: Callable[[], Any], device: str = 'cpu', warmup: int = 1,
                   repeat: int = 3) -> float:
    """Median of :func:`timed_runs`, in seconds (same arguments)."""
    return statistics.median(timed_runs(fn, device, warmup, repeat))


def interleaved_median_seconds(fns: Mapping[str, Callable[[], Any]], device: str = 'cpu',
                               warmup: int = 1, repeat: int = 3) -> Dict[str, float]:
    """Median wall time of each function, timed in turns: one call of each per round.

    Side-by-side comparisons use this: a machine whose speed drifts (a shared host, thermal
    limits) slows both sides of a round alike instead of biasing the ratio.

    Args:
        fns (Mapping[str, Callable]): Name -> work to time.
        device (str): 'cpu' or a CUDA device (synchronised around every call).
            Defaults to 'cpu'.
        warmup (int): Untimed rounds first. Defaults to 1.
        repeat (int): Timed rounds. Defaults to 3.

    Returns:
        dict[str, float]: Name -> median seconds.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeat)):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _trim_heap() -> None:
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def peak_memory_mb(fn: Callable[[], Any], device: str = 'cpu') -> float:
    """Peak memory of one ``fn()`` call above what was in use before it, in MiB.

    Args:
        fn (Callable): The work to measure (called once).
        device (str): 'cpu' (resident-set growth, sampled) or a CUDA device (allocator peak).
            Defaults to 'cpu'.

    Returns:
        float: MiB; NaN on a CPU platform without ``/proc`` (the call then still runs).
    """
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    if not os.path.exists('/proc/self/statm'):
        fn()
        return float('nan')
    _trim_heap()
    base = peak = _rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(5e-4)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return (max(peak, _rss_bytes()) - base) / 2**20


def copy_bandwidth(device: str = 'cpu', numel: int = 1 << 26, repeat: int = 5) -> float:
    """Bytes per second of a large float32 copy (bytes read plus bytes written).

    Args:
        device (str): Device. Defaults to 'cpu'.
        numel (int): Elements copied (256 MiB by default, beyond every cache).
        repeat (int): Timed copies (median). Defaults to 5.

    Returns:
        float: Bytes per second.
    """
    x = torch.randn(numel, device=device)
    y = torch.empty_like(x)
    seconds = median_seconds(lambda: y.copy_(x), device, warmup=2, repeat=repeat)
    return 2 * x.numel() * x.element_size() / seconds


def gemm_flops(device: str = 'cpu', n: int = 2048, dtype: torch.dtype = torch.float32,
               repeat: int = 5) -> float:
    """Multiply-adds per second of an n x n x n matrix product (1 multiply-add = 1 FLOP).

    The convention is the FLOP counter's (mmengine, the MambaOut and VMamba papers), so a model's
    FLOPs divided by its time compare directly with this rate.

    Args:
        device (str): Device. Defaults to 'cpu'.
        n (int): Matrix side. Defaults to 2048.
        dtype (torch.dtype): Element type. Defaults to float32.
        repeat (int): Timed products (median). Defaults to 5.

    Returns:
        float: Multiply-adds per second.
    """
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    seconds = median_seconds(lambda: torch.mm(a, b, out=out), device, warmup=2, repeat=repeat)
    return n**3 / seconds


def device_name(device: str = 'cpu') -> str:
    """The GPU's name, or the CPU model from ``/proc/cpuinfo``."""
    if str(device).startswith('cuda'):
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return name


def environment(device: str = 'cpu') -> str:
    """One line naming the device, threads and torch version."""
    threads = torch.get_num_threads()
    return (f'device: {device} ({device_name(device)}), threads: {threads}, '
            f'torch {torch.__version__}')
