"""The round loop: boosting rounds with metric lines, early stopping, checkpoints and SIGTERM.

:func:`run_rounds` drives a :class:`costaware.training.boosting.Boosting` one round at a time. After each
round a :class:`RoundMonitor` scores the held-out rows (the training module's ``observe``
callback: it calibrates the round's held-out margins and computes the metric line) and decides
early stopping; every ``checkpoint_frequency`` rounds, and on SIGTERM, a checkpoint is saved
(:mod:`costaware.training.checkpoints`), from which a rerun resumes bit for bit.

On several hosts every host runs the loop: every host grows each tree (XGBoost sums the gradient
histograms), the metrics come from sums over all hosts (so every host sees the same numbers), and
a SIGTERM on any host stops every host after the round.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Callable

import xgboost as xgb

from .. import __version__
from ..metrics import log_lines as metric_log
from .boosting import Boosting
from .checkpoints import CheckpointStore, StopRequest, TrainingInterrupted
from ..cluster import SOLO, Cluster
from ..errors import HyperparameterError, InputError

RESUMABLE = ("num_round", "checkpoint_frequency", "nthread")  # may change between run and rerun


class RoundMonitor:
    """Early stopping on the metrics ``observe(iteration)`` returns after each round.

    Stops after ``patience`` rounds without a strictly better value; the best round is kept (ties
    keep the earlier, smaller model). ``observe`` also logs the round's metric line; its state
    (the calibrator it starts the next fit from) travels in checkpoints through
    ``state``/``restore``.
    """

    def __init__(self, observe: Callable[[int], dict], metric: str, patience: int,
                 state: Callable[[], dict], restore: Callable[[dict], None]):
        self._observe = observe
        self.metric = metric
        self.patience = patience
        self._state, self._restore = state, restore
        self.best_iteration = 0
        self.best_value = math.inf

    def observe(self, iteration: int) -> bool:
        """Metrics of round ``iteration``; True: stop early."""
        value = self._observe(iteration)[self.metric]
        if metric_log.directions().get(self.metric) == "Maximize":
            value = -value
        if value < self.best_value:  # strictly better; ties keep the earlier, smaller model
            self.best_value, self.best_iteration = value, iteration
        return bool(self.patience) and iteration - self.best_iteration >= self.patience

    def state(self) -> dict:
        return {"best_iteration": self.best_iteration,
                "best_value": None if math.isinf(self.best_value) else self.best_value,
                "observer": self._state()}

    def restore(self, state: dict) -> None:
        self.best_iteration = int(state["best_iteration"])
        best = state["best_value"]
        self.best_value = math.inf if best is None else float(best)
        self._restore(state["observer"])


def check_fingerprint(saved: dict, current: dict, path: str, num_round: int, rounds: int) -> None:
    settings = saved.get("settings", {})
    changed = sorted(k for k in set(settings) | set(current["settings"])
                     if settings.get(k) != current["settings"].get(k))
    what = []
    if changed:
        what.append("hyperparameters " + ", ".join(changed[:8]) + (", ..." if len(changed) > 8 else ""))
    data = saved.get("data", {})
    what += [f"{name} data" for name in sorted(set(data) | set(current["data"]))
             if data.get(name) != current["data"].get(name)]
    if what:
        raise InputError(
            f"checkpoint {path} was written by a training job with other {' and '.join(what)}; "
            "resume with the same settings and data, or use an empty checkpoint location to start "
            "afresh")
    if rounds > num_round:
        raise HyperparameterError(
            f"hyperparameter 'num_round': {num_round}, but checkpoint {path} already has {rounds} "
            "rounds")


def settings_fingerprint(settings) -> dict:
    """The settings a checkpoint must have been written with (all but :data:`RESUMABLE`)."""
    return json.loads(json.dumps({k: v for k, v in settings.items() if k not in RESUMABLE}))


def run_rounds(settings, boosting: Boosting, monitor: RoundMonitor,
               checkpoints: CheckpointStore | None, stop: StopRequest,
               fingerprint: Callable[[], dict], log: Callable[[str], None],
               cluster: Cluster = SOLO) -> int:
    """Boosting rounds until ``num_round`` or early stopping; returns the rounds trained."""
    saved = 0  # rounds in the newest checkpoint
    early = False
    frequency = settings.checkpoint_frequency
    if checkpoints is not None:
        fingerprint = functools.lru_cache(maxsize=None)(fingerprint)
        found = checkpoints.latest()
        if found is None:
            log(f"checkpoints: none yet in {checkpoints.directory}; saving one "
                + (f"every {frequency} rounds and " if frequency else "") + "on SIGTERM")
        else:
            check_fingerprint(found.state.get("fingerprint", {}), fingerprint(), found.path,
                              settings.num_round, found.rounds)
            if len(found.models) != len(boosting.members):
                raise InputError(f"checkpoint {found.path} holds {len(found.models)} models, this "
                                 f"job grows {len(boosting.members)}; use an empty checkpoint "
                                 "location to start afresh")
            try:
                monitor.restore(found.state["monitor"])
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"checkpoint {found.path}: incomplete loop state ({exc!r}); use "
                                 "an empty checkpoint location to start afresh") from None
            boosting.resume(found.models)
            saved = found.rounds
            early = bool(found.state.get("early_stopped"))
            log(f"resuming from checkpoint {found.path}: {found.rounds} rounds done")
            versions = found.state.get("versions", {})
            if versions.get("xgboost") != xgb.__version__:
                log(f"warning: the checkpoint was written with XGBoost {versions.get('xgboost')}, "
                    f"this is {xgb.__version__}: the model may differ slightly from an "
                    "uninterrupted run's")

    def save(reason: str) -> str | None:
        """Save a checkpoint; a failure to write one is logged, not fatal to training."""
        nonlocal saved
        state = {"reason": reason, "early_stopped": early, "monitor": monitor.state(),
                 "num_round": settings.num_round, "fingerprint": fingerprint(),
                 "versions": {"xgboost": xgb.__version__, "costaware": __version__}}
        try:
            path = checkpoints.save(boosting.rounds, boosting.checkpoint(), state,
                                    boosting.model_format)
        except OSError as exc:
            log(f"warning: could not save a checkpoint in {checkpoints.directory}: {exc}")
            return None
        saved = boosting.rounds
        return path

    def interrupted() -> TrainingInterrupted:
        rounds = boosting.rounds
        if checkpoints is None:
            where = ("no checkpoint saved (checkpointing is off: no checkpoint directory)"
                     if cluster.size == 1 else
                     f"no checkpoint saved (checkpoints are off on {cluster.size} hosts)")
        elif rounds == 0:
            where = "no checkpoint saved (no round finished)"
        else:
            path = checkpoints.state_path(rounds) if rounds == saved else save("SIGTERM")
            where = (f"checkpoint {path} saved; a rerun with the same checkpoint location resumes "
                     "from it" if path else "the checkpoint could not be saved (see the log)")
        return TrainingInterrupted(f"training interrupted by SIGTERM after {rounds} of "
                                   f"{settings.num_round} rounds: {where}")

    while not early and boosting.rounds < settings.num_round:
        if cluster.any([bool(stop)])[0]:
            raise interrupted()
        iteration = boosting.rounds
        boosting.round()
        early = bool(cluster.any([monitor.observe(iteration)])[0])
        if checkpoints is not None and frequency and boosting.rounds % frequency == 0:
            save(f"every {frequency} rounds")
    return boosting.rounds
