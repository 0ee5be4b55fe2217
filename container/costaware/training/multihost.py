"""Multi-instance training: which hosts train, how they find each other, which rows each one holds.

SageMaker starts the image on hosts ``algo-1 … algo-N`` and lists them in
``/opt/ml/input/config/resourceconfig.json``. As in SageMaker's built-in XGBoost container:

1. Every host resolves every host name (retrying: the cluster's DNS entries appear while it boots).
2. If the train channel is ``ShardedByS3Key``, all hosts first meet once to learn which of them
   received train files; a host without any takes no part and ends successfully (with
   ``FullyReplicated`` every host has the data).
3. The hosts with data form XGBoost's collective: the first of them in sorted order runs XGBoost's
   tracker (``RabitTracker``), every one joins as a worker, rank = position in sorted order. A host
   that never comes ends the job on every host after ``COSTAWARE_PEER_TIMEOUT`` seconds with a
   failure naming the hosts and the tracker's address.

Host names may be names or addresses (``127.0.0.2``), inside the image or outside it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from .. import config_files
from ..cluster import XGBoostCluster
from ..errors import InputError

DEFAULT_PORT = 9099  # the built-in container's; the members' meeting uses this, training port + 1
DEFAULT_PEER_TIMEOUT = 600.0  # seconds: instances of one job can start minutes apart


class ClusterError(InputError):
    """The hosts could not form or keep their training group (a peer never came, a name never
    resolved): reported in the failure file like bad input, because the reason is one line."""


@dataclass(frozen=True)
class HostConfig:
    """The hosts of a training job, from ``resourceconfig.json`` and the environment."""

    hosts: tuple[str, ...]  # sorted
    current_host: str
    port: int = DEFAULT_PORT
    peer_timeout: float = DEFAULT_PEER_TIMEOUT

    @property
    def multi_host(self) -> bool:
        return len(self.hosts) > 1


def read_host_config(config_dir: str, env=None) -> HostConfig | None:
    """``None`` without ``resourceconfig.json`` (a local run: one host)."""
    env = os.environ if env is None else env
    path = os.path.join(config_dir, "resourceconfig.json")
    if not os.path.exists(path):
        return None
    hosts, current = config_files.read_hosts(path)
    if len(hosts) == 1:  # one host: nothing to meet, the variables are not read
        return HostConfig((current,), current)
    return HostConfig(tuple(sorted(hosts)), current, _port(env), _timeout(env))


def _port(env) -> int:
    return int(config_files.env_number(env, "COSTAWARE_TRACKER_PORT", DEFAULT_PORT, int, 1, 65534,
                           "a port from 1 to 65534 (training uses it and the next one)"))


def _timeout(env) -> float:
    return config_files.env_number(env, "COSTAWARE_PEER_TIMEOUT", DEFAULT_PEER_TIMEOUT, float, 1, 86400,
                       "the seconds to wait for the other hosts, from 1 to 86400")


def resolve(host: str, deadline: float, sleep: Callable[[float], None] = time.sleep) -> str:
    """The IPv4 address of ``host``, retrying with backoff until ``deadline`` (``time.monotonic``)."""
    wait = 0.1
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError as exc:
            if time.monotonic() + wait > deadline:
                raise ClusterError(f"host name {host!r} (from resourceconfig.json) did not resolve "
                                   f"before the peer timeout: {exc}") from None
        sleep(wait)
        wait = min(wait * 2, 5.0)


@contextlib.contextmanager
def joined(hosts: list[str], current_host: str, port: int, timeout: float,
           log: Callable[[str], None], purpose: str = "the training group"
           ) -> Iterator[XGBoostCluster]:
    """XGBoost's collective over ``hosts`` (sorted), as a :class:`XGBoostCluster`.

    The first host runs the tracker on ``port``; every host joins, ``current_host`` with rank =
    its position. Forming the group waits at most ``timeout`` seconds for the slowest host.
    """
    from xgboost import collective
    from xgboost.core import XGBoostError
    from xgboost.tracker import RabitTracker

    hosts = sorted(hosts)
    deadline = time.monotonic() + timeout
    addresses = {host: resolve(host, deadline) for host in hosts}
    index = hosts.index(current_host)
    tracker_address = addresses[hosts[0]]
    tracker = None
    group = f"{len(hosts)} hosts ({', '.join(hosts)}) with the tracker on {hosts[0]} " \
            f"({tracker_address}:{port})"
    if index == 0:
        try:
            tracker = RabitTracker(n_workers=len(hosts), host_ip=tracker_address, port=port,
                                   sortby="task", timeout=max(1, int(timeout)))
            tracker.start()
        except XGBoostError as exc:
            raise ClusterError(f"could not start the tracker on {tracker_address}:{port}: "
                               f"{_first_line(exc)}") from None
    log(f"host {current_host}: joining {purpose} of {group}")
    try:
        _init(collective, XGBoostError, tracker_address, port, index, current_host, deadline,
              f"host {current_host}: {purpose} of {group} did not form within {timeout:g} s "
              "(COSTAWARE_PEER_TIMEOUT); a host may have failed to start")
    except ClusterError:
        if tracker is not None:
            with contextlib.suppress(XGBoostError):
                tracker.free()
        raise
    failed = False
    try:
        rank = collective.get_rank()
        if rank != index:
            raise ClusterError(f"host {current_host} got rank {rank}, expected {index}: is "
                               "another job using the tracker port?")
        log(f"host {current_host}: rank {rank} of {len(hosts)} in {purpose}")
        yield XGBoostCluster(hosts=hosts, rank=rank)
    except BaseException:
        failed = True
        raise
    finally:
        with contextlib.suppress(XGBoostError):
            collective.finalize()
        if tracker is not None:
            with contextlib.suppress(XGBoostError):
                # after a failure, peers may never say goodbye: do not wait for them long
                tracker.wait_for(5 if failed else max(1, int(timeout)))
            with contextlib.suppress(XGBoostError):
                tracker.free()


@contextlib.contextmanager
def peer_failures(cluster: XGBoostCluster) -> Iterator[None]:
    """A collective operation that fails (a peer stopped or its connection broke) becomes a
    one-line :class:`ClusterError` instead of XGBoost's stack trace."""
    from xgboost.core import XGBoostError

    try:
        yield
    except XGBoostError as exc:
        raise ClusterError(f"host {cluster.host}: lost the training group of "
                           f"{', '.join(cluster.hosts)} (a host stopped or a collective step "
                           f"failed; see the hosts' logs): {_first_line(exc)}") from None


def _init(collective, error_type, address: str, port: int, index: int, host: str,
          deadline: float, failure: str) -> None:
    """Join the tracker's group, retrying until ``deadline`` while the tracker is not up yet.

    One attempt per call (``dmlc_retry=1``): XGBoost's own retries back off for minutes. Probing
    the port with a bare TCP connection instead would make the tracker log a failed handshake.
    """
    wait = 0.1
    while True:
        try:
            # The task id orders ranks: rank i is hosts[i], whatever addresses the tracker sees.
            collective.init(dmlc_communicator="rabit", dmlc_tracker_uri=address,
                            dmlc_tracker_port=port, dmlc_task_id=f"{index:06d}-{host}",
                            dmlc_retry=1)
            return
        except error_type as exc:
            if time.monotonic() + wait > deadline:
                raise ClusterError(f"{failure}: {_first_line(exc)}") from None
        time.sleep(wait)
        wait = min(wait * 2, 2.0)


def _first_line(exc: Exception) -> str:
    """XGBoost's errors carry a stack trace; its reasons are the lines starting with '- ['."""
    lines = [line.strip() for line in str(exc).splitlines()]
    reasons = [line.split("]:", 1)[-1].strip() for line in lines if line.startswith("- [")]
    return "; ".join(r for r in reasons if r)[:300] or (lines[0] if lines else type(exc).__name__)
