"""What this machine offers a job: the CPUs this process may run on (its affinity, as a container's
CPU limit sets it; ``os.cpu_count`` where affinity is unknown)."""

from __future__ import annotations

import os


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


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


def memory_limit_bytes() -> int:
    """The memory this process's container may use: its cgroup's limit (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``) when one is set, else the machine's (``MemTotal``)."""
    total = _meminfo("MemTotal")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as handle:
                raw = handle.read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < total:  # "max", or v1's huge number: no limit
            return int(raw)
    return total


def memory_in_use_bytes() -> int:
    """What the container uses now: its cgroup's usage, else the machine's (total - available)."""
    for path in ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"):
        try:
            with open(path) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            continue
    return _meminfo("MemTotal") - _meminfo("MemAvailable")


def resident_bytes() -> int:
    """This process's resident memory (``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _meminfo(field: str) -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/meminfo has no {field}")
