"""What training needs from the other hosts: sums, a gathered column, a shared flag or error.

A :class:`Cluster` is the group of hosts training one model, each holding a shard of every
channel's rows; host ``rank`` 0 is the one that writes the model. :data:`SOLO` is the one-host
cluster, where every operation is the identity, so the single-host path runs the same code. The
multi-host cluster (:class:`XGBoostCluster`) uses XGBoost's own collective (the communicator its
distributed ``hist`` training runs on), so there is one network group, not two.

Every operation is collective: each host must call the same operations in the same order, as
XGBoost's boosting rounds do. Nothing is pickled: arrays travel as numbers, text as UTF-8 bytes.
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np

from .errors import DataError, InputError


class PeerError(InputError):
    """Another host failed (bad data, a failed check): this one stops with its reason."""


class Cluster:
    """The hosts of one training job, as seen from one of them."""

    rank = 0
    size = 1
    hosts: tuple[str, ...] = ("local",)

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    @property
    def host(self) -> str:
        return self.hosts[self.rank]

    # The primitives; the single-host versions are the identity.
    def allreduce(self, values: np.ndarray, op: str) -> np.ndarray:
        """Element-wise ``op`` ("sum", "max", "min") of ``values`` over the hosts."""
        return np.asarray(values).copy()

    def sum(self, values) -> np.ndarray:
        """Element-wise sum over the hosts (float64)."""
        return self.allreduce(np.atleast_1d(np.asarray(values, dtype=np.float64)), "sum")

    def any(self, flags) -> np.ndarray:
        """Element-wise "any host" of boolean flags."""
        return self.allreduce(np.atleast_1d(np.asarray(flags, dtype=np.int32)), "max").astype(bool)

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Every host's ``values`` (1-D, same dtype everywhere) concatenated in rank order."""
        return np.asarray(values)

    def gather_text(self, text: str) -> list[str]:
        """Every host's ``text``, in rank order."""
        return [text]

    def agree(self, error: Exception | None) -> None:
        """A barrier for failures: if any host passes an error, every host raises one.

        The failing host re-raises its own error (its reason goes to its failure file); the others
        raise :class:`PeerError` naming that host, so that no host waits forever for a peer that
        stopped.
        """
        if self.size == 1:
            if error is not None:
                raise error
            return
        messages = self.gather_text("" if error is None else _reason(error))
        if error is not None:
            raise error
        for host, message in zip(self.hosts, messages):
            if message:
                raise PeerError(f"host {host} failed: {message}")


def _reason(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


SOLO = Cluster()
Reduce = Callable[[np.ndarray], np.ndarray]  # element-wise sum over the hosts: SOLO.sum on one


_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}


class XGBoostCluster(Cluster):
    """The hosts joined in XGBoost's collective (``xgboost.collective.init`` has been called)."""

    def __init__(self, hosts: list[str], rank: int):
        self.hosts = list(hosts)
        self.rank = rank
        self.size = len(self.hosts)

    def allreduce(self, values: np.ndarray, op: str) -> np.ndarray:
        from xgboost import collective

        values = np.ascontiguousarray(values)
        if values.size == 0:
            return values.copy()
        reduced = collective.allreduce(values.ravel(), getattr(collective.Op, _OPS[op]))
        return reduced.reshape(values.shape)

    def gather(self, values: np.ndarray) -> np.ndarray:
        # An all-gather from allreduce: each host fills its own slice of a zero buffer and the
        # buffers are summed (each element has one non-zero contribution, so the sum is exact).
        values = np.ascontiguousarray(values).ravel()
        counts = self.sum([values.size if r == self.rank else 0 for r in range(self.size)])
        counts = counts.astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)])
        kind = values.dtype
        wire = values.view(np.uint8) if kind.kind in "fb" else values  # floats and bools bit-exact
        item = kind.itemsize if kind.kind in "fb" else 1
        buffer = np.zeros(int(starts[-1]) * item, dtype=wire.dtype)
        buffer[int(starts[self.rank]) * item:int(starts[self.rank + 1]) * item] = wire
        merged = self.allreduce(buffer, "sum")
        return merged.view(kind) if kind.kind in "fb" else merged

    def gather_text(self, text: str) -> list[str]:
        data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        lengths = self.sum([data.size if r == self.rank else 0 for r in range(self.size)])
        joined = self.gather(data).tobytes()
        out, start = [], 0
        for length in lengths.astype(np.int64):
            out.append(joined[start:start + int(length)].decode("utf-8"))
            start += int(length)
        return out


def gather_values(cluster: Cluster, values: np.ndarray | None, what: str = "a column"
                  ) -> np.ndarray | None:
    """Gather a per-row column that may hold text (facet or group values).

    Numbers travel as float64; text travels as JSON. Hosts without rows have no say in the type;
    hosts with rows must agree on it (one host reading the union would not mix them either).
    ``None`` on every host gives ``None``.
    """
    if cluster.size == 1:
        return values
    kind = ("none" if values is None else "empty" if values.size == 0 else
            "number" if values.dtype.kind in "fiub" else "text")
    kinds = cluster.gather_text(kind)
    if all(k == "none" for k in kinds):
        return None
    if "none" in kinds:
        raise InputError(f"{what} is present on some hosts and not on others "
                         f"({', '.join(h for h, k in zip(cluster.hosts, kinds) if k == 'none')} "
                         "lack it)")
    voting = {k for k in kinds if k != "empty"}
    if len(voting) > 1:
        text = ", ".join(h for h, k in zip(cluster.hosts, kinds) if k == "text")
        raise DataError(f"{what} holds text on {text} and numbers on the other hosts; make the "
                        "values alike in every file")
    if voting != {"text"}:
        return cluster.gather(np.asarray(values, dtype=np.float64))
    texts = cluster.gather_text(json.dumps([_plain(v) for v in values]))
    return np.array([v for text in texts for v in json.loads(text)], dtype=object)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return value
