"""What this machine offers a job: the CPUs this process may run on (its affinity, as a container's
CPU limit sets it; ``os.cpu_count`` where affinity is unknown), and the memory available."""

from __future__ import annotations

import os


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable``: free and reclaimable, the page cache
    included), ``None`` where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):  # not Linux
        pass
    return None


def one_blas_thread(function):
    """Decorate ``function`` to run with numpy's BLAS (OpenBLAS) on one thread.

    Why: costaware's BLAS calls (the calibrators' dot products over a job's held-out rows, between
    XGBoost's rounds) are too short to share out, and OpenBLAS's threads spin for a while after
    each call, on the cores XGBoost's OpenMP threads need next: on 2 cores a 1M-row job's trees
    took 13.6 s, 7.6 s with one BLAS thread (``benchmarks/bench_training.py``)."""
    import functools

    @functools.wraps(function)
    def run(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)
    return run
