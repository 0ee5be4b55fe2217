"""What this machine offers a job: the CPUs this process may run on (its affinity, as a container's
CPU limit sets it; ``os.cpu_count`` where affinity is unknown), and the memory its container may
use, uses and has left (its cgroup's, else the machine's)."""

from __future__ import annotations

import os


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def available_memory() -> int | None:
    """Bytes of memory this process's container has left now: its limit less what it uses
    (:func:`memory_limit_bytes`, :func:`memory_in_use_bytes`; the machine's ``MemAvailable``-like
    figure without a cgroup limit), ``None`` where unknown (not Linux)."""
    try:
        return max(0, memory_limit_bytes() - memory_in_use_bytes())
    except (OSError, ValueError, IndexError):
        return None


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20


def return_freed_memory() -> None:
    """Have glibc's malloc give every block of 1 MiB or more its own mapping, returned to the
    system when freed. Why: by default glibc raises that threshold each time such a block is
    freed (up to 32 MiB), after which a job's per-row arrays (a block of 262,144 rows is 2 MiB a
    column) come from the heap, whose freed pages stay resident: a 2.2M-row job's resident memory
    stayed about 200 MiB above what it used from the rounds on (``bench_training.py --memory``).
    Elsewhere than glibc (musl, macOS) nothing changes."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # not glibc
        pass


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
    for directory, version in _memory_cgroups():
        raw = _read(os.path.join(directory, "memory.max" if version == 2
                                 else "memory.limit_in_bytes"))
        if raw is not None and raw.isdigit() and int(raw) < total:  # "max", v1's huge number: none
            return int(raw)
    return total


def memory_in_use_bytes() -> int:
    """What the container uses now and cannot give back: its cgroup's usage less the inactive
    file cache (the kernel reclaims that before it kills anything; the "working set"), else the
    machine's (total - available)."""
    for directory, version in _memory_cgroups():
        raw = _read(os.path.join(directory, "memory.current" if version == 2
                                 else "memory.usage_in_bytes"))
        if raw is not None and raw.isdigit():
            inactive = "inactive_file" if version == 2 else "total_inactive_file"
            return int(raw) - _stat_field(os.path.join(directory, "memory.stat"), inactive)
    return _meminfo("MemTotal") - _meminfo("MemAvailable")


def _memory_cgroups() -> list[tuple[str, int]]:
    """This process's memory cgroup directories, its own first (from ``/proc/self/cgroup``; a
    container sees its own at the mount's root), with their cgroup version."""
    found = []
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            found.append((os.path.join("/sys/fs/cgroup", path.lstrip("/")), 2))
        elif "memory" in controllers.split(","):
            found.append((os.path.join("/sys/fs/cgroup/memory", path.lstrip("/")), 1))
    found += [("/sys/fs/cgroup", 2), ("/sys/fs/cgroup/memory", 1)]
    return [(d, v) for d, v in found if os.path.isdir(d)]


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _stat_field(path: str, field: str) -> int:
    """A field of a cgroup's ``memory.stat`` (0 when it is not there)."""
    try:
        with open(path) as handle:
            for line in handle:
                name, _, value = line.partition(" ")
                if name == field:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _meminfo(field: str) -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/meminfo has no {field}")
