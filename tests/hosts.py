"""Several SageMaker hosts as local processes: the toolkit's real ``train`` once per /opt/ml tree,
all started at once, meeting through XGBoost's tracker on 127.0.0.1 (used by the multi-host tests
and benchmarks/bench_multihost.py)."""

from __future__ import annotations

import os
import random
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
    """A port p with p and p + 1 free on 127.0.0.1 (the meeting and the training group), drawn
    below the kernel's ephemeral range: a pair from that range could have p + 1 handed to a
    connection or a port-0 server of the test running beside this one before the hosts bind it
    (a CI run failed so: 'Failed to bind socket ... Address already in use')."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as handle:
            ephemeral = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, ephemeral - 1)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
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
