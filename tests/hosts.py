"""Several SageMaker hosts as local processes: the toolkit's real ``train`` once per /opt/ml tree,
all started at once, meeting through XGBoost's tracker on 127.0.0.1 (used by the multi-host tests
and benchmarks/bench_multihost.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def hosts_of(n: int) -> list[str]:
    """``127.0.0.1 … 127.0.0.n``: distinct host addresses on one machine."""
    return [f"127.0.0.{i + 1}" for i in range(n)]


def free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1 (the meeting and the training group)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65000:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


def spawn_host(base: Path, port: int, peer_timeout: float) -> subprocess.Popen:
    """One host's ``train`` on its tree, log (stdout and stderr) on a text pipe."""
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base),
               SAGEMAKER_TRAINING_MODULE="costaware.sagemaker.training_job:main",
               COSTAWARE_TRACKER_PORT=str(port), COSTAWARE_PEER_TIMEOUT=str(peer_timeout))
    return subprocess.Popen([str(BIN / "train")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def run_hosts(trees: list[Path], hosts: list[str], timeout: float = 300,
              peer_timeout: float = 60) -> list[tuple[int, str]]:
    """Start every host's ``train`` at once; (exit code, combined log) per host, in order."""
    port = free_port_pair()
    procs = [spawn_host(base, port, peer_timeout) for base in trees]
    out = []
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            log, _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
            out.append((proc.returncode, log))
    finally:
        for proc in procs:  # only ours, and only if still running (a timeout)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out
