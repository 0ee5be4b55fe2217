"""Checkpoints for spot interruptions: the trees so far plus the loop's state, written atomically.

SageMaker creates ``/opt/ml/checkpoints`` when a job has a checkpoint configuration (managed spot
training) and keeps it in sync with S3; a restarted job finds the files there again. Layout::

    costaware-0000040.model.ubj    the booster after 40 rounds: XGBoost's UBJSON, or its JSON
                                   (``.model.json``) when the loop grows a booster per round
                                   (row/column sampling; see costaware.training.boosting), whose
                                   trees are held as JSON text: a checkpoint is then a string join
                                   instead of a round trip through XGBoost. Never pickle.
    costaware-0000040.model.fold1.ubj ...  the cross-fitting fold models (one per fold), likewise
    costaware-0000040.state.json   the loop's state: rounds, early-stopping best, the fingerprint
                                   of the settings and data, each model file's SHA-256

A checkpoint exists once its state file does: the models are written first, the state (which
names the model files and their SHA-256) last, each to a temporary name and renamed into place (atomic on
POSIX), so a kill at any moment leaves either the old checkpoint or the new one, never half of one;
a checkpoint with a model file that does not match its state (a torn upload, a corrupt copy) is
skipped for the next older one. The newest :data:`KEEP` checkpoints are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .. import storage

FORMAT = 2
KEEP = 2
PREFIX = "costaware-"
_STATE = re.compile(r"^costaware-(\d{7,})\.state\.json$")


class TrainingInterrupted(Exception):
    """Training stopped on SIGTERM (after saving a checkpoint when checkpointing is on).

    Not an :class:`~costaware.errors.InputError`, but reported the same way: a one-line failure
    reason and a non-zero exit, so that an interrupted job is never reported as completed.
    """


@dataclass
class Checkpoint:
    rounds: int  # boosting rounds in the models
    models: list[bytes]  # the boosters (XGBoost UBJSON or JSON), member 0 (the model) first
    state: dict
    path: str  # the state file


class CheckpointStore:
    """The checkpoint directory: save (atomic, rotated) and find the newest valid checkpoint."""

    def __init__(self, directory: str, keep: int = KEEP, log: Callable[[str], None] = print):
        self.directory = directory
        self.keep = keep
        self.log = log

    def state_path(self, rounds: int) -> str:
        return os.path.join(self.directory, f"{PREFIX}{rounds:07d}.state.json")

    def model_path(self, rounds: int, model_format: str, member: int = 0) -> str:
        fold = f"fold{member}." if member else ""
        return os.path.join(self.directory, f"{PREFIX}{rounds:07d}.model.{fold}{model_format}")

    def rounds_saved(self) -> list[int]:
        """Rounds of the committed checkpoints (those with a state file), oldest first."""
        try:
            names = os.listdir(self.directory)
        except OSError:  # gone, or not a directory: no checkpoints (saving will say why)
            return []
        return sorted(int(m.group(1)) for m in map(_STATE.match, names) if m)

    def save(self, rounds: int, models: list[bytes], state: dict, model_format: str = "ubj") -> str:
        """Write the checkpoint of ``rounds``; on a failure (a full disk) the files this call wrote
        are removed again, so that no orphan model file or temporary file keeps the disk full or
        is uploaded, and the older checkpoints stay as they were."""
        written = []
        try:
            files = []
            for member, model in enumerate(models):
                path = self.model_path(rounds, model_format, member)
                storage.atomic_write(path, model)
                written.append(path)
                files.append({"file": os.path.basename(path),
                              "sha256": hashlib.sha256(model).hexdigest()})
            state_path = self.state_path(rounds)
            record = {"format": FORMAT, "rounds": rounds, "models": files, **state}
            storage.atomic_write(state_path,
                                 (json.dumps(record, indent=1, allow_nan=False) + "\n").encode())
        except BaseException:
            for path in written:
                with contextlib.suppress(OSError):
                    os.remove(path)
            raise
        storage.fsync_directory(self.directory)
        self._rotate()
        return state_path

    def _rotate(self) -> None:
        old = self.rounds_saved()[: -self.keep]
        for rounds in old:  # the state first: no state, no checkpoint
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.state_path(rounds))
        stems = tuple(f"{PREFIX}{rounds:07d}.model." for rounds in old)
        for name in os.listdir(self.directory):
            # old models, and leftovers of a write killed half-way
            leftover = name.startswith("." + PREFIX) and storage.TEMPORARY in name
            if leftover or (stems and name.startswith(stems)):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.directory, name))

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint whose files are complete and consistent, or ``None``."""
        for rounds in reversed(self.rounds_saved()):
            state_path = self.state_path(rounds)
            try:
                with open(state_path, encoding="utf-8") as handle:
                    state = json.load(handle)
                if not isinstance(state, dict) or state.get("format") != FORMAT:
                    raise ValueError(f"not a costaware checkpoint state of format {FORMAT}")
                if state.get("rounds") != rounds:
                    raise ValueError(f"says {state.get('rounds')!r} rounds")
                files = state.get("models")
                if not isinstance(files, list) or not files:
                    raise ValueError("names no model files")
                models = []
                for entry in files:
                    name = str(entry.get("file")) if isinstance(entry, dict) else ""
                    if not name.startswith(f"{PREFIX}{rounds:07d}.model.") or os.sep in name:
                        raise ValueError(f"names the model file {name!r}")
                    with open(os.path.join(self.directory, name), "rb") as handle:
                        model = handle.read()
                    if hashlib.sha256(model).hexdigest() != entry.get("sha256"):
                        raise ValueError(f"{name} does not match its SHA-256")
                    models.append(model)
            except (OSError, ValueError, AttributeError) as exc:
                self.log(f"checkpoint {state_path} skipped: {exc}")
                continue
            return Checkpoint(rounds, models, state, state_path)
        return None


def digest(*arrays) -> str:
    """A short hash of arrays' shapes, types and bytes (``None`` entries count too; features
    left in their files count by their ``digest_key``: the files and the rows chosen)."""
    h = hashlib.blake2b(digest_size=16)
    for array in arrays:
        if array is None:
            h.update(b"none;")
            continue
        if hasattr(array, "digest_key"):
            array = array.digest_key()
        a = np.ascontiguousarray(array)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        if a.dtype.kind == "O":  # text columns (facet, group)
            h.update("\x1f".join(map(str, a.ravel())).encode())
        else:
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()


class StopRequest:
    """Set by SIGTERM; the training loop looks at it after every round."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def set(self, signum: int = signal.SIGTERM) -> None:
        self.signal = signum


@contextlib.contextmanager
def stop_on_sigterm(request: StopRequest) -> Iterator[StopRequest]:
    """While active, SIGTERM sets ``request`` instead of killing the process (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: request.set(signum))
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, previous)
