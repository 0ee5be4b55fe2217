"""What this machine offers a job: the CPUs this process may run on (its affinity, as a container's
CPU limit sets it; ``os.cpu_count`` where affinity is unknown)."""

from __future__ import annotations

import os


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)
