"""The optuna study of ``costaware tune``: opened or resumed in ``WORK/study.db``, its sampler, the
baseline run, each trial's objective (a real training run, its metrics read from the log) and the
trial to recommend."""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field

from ..config import hyperparameters as hp
from ..metrics import registry as metric_registry
from . import config as cfg
from . import runner


STUDY_NAME = "costaware"
DB_FILE = "study.db"
BASELINE_DIR = "baseline"
TRIALS_DIR = "trials"


def import_optuna():
    try:
        import optuna
    except ImportError:  # pragma: no cover - depends on the installation
        raise SystemExit("costaware tune needs optuna: pip install 'costaware[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by us, one line
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


@dataclass
class Setup:
    tree: runner.Tree
    work: str
    goal: cfg.Objective
    ranges: list
    statics: dict  # the tree's hyperparameters, --static overrides and nthread: every trial's base
    has_facet: bool
    jobs: int
    trials: int
    timeout: float | None
    weights: tuple = (3.0, 1.0)  # combined objective's (AUC, fairness) weights
    references: list = field(default_factory=list)
    # whose metrics are tuned on: "validation", or without that channel runner.HELD_OUT (the
    # kept round's out-of-fold metrics over the train rows)
    held_out: str = "validation"

    def trial_dir(self, number: int) -> str:
        return os.path.join(self.work, TRIALS_DIR, f"{number:04d}")

    def metric(self, name: str) -> str:
        """The held-out metric ``name`` as the records key it: ``validation:auc``, or
        ``held_out:auc`` without a validation channel."""
        return f"{self.held_out}:{name}"

    def metrics_of(self, run: runner.Run) -> dict:
        """A run's metrics from its log, with the held-out ones without a validation channel."""
        if self.held_out == "validation":
            return run.metrics
        return {**run.metrics, **runner.held_out_metrics(run)}


def _suggest(trial, rng: cfg.Range):
    if rng.kind == "Categorical":
        return trial.suggest_categorical(rng.name, rng.choices())
    if rng.kind == "Integer":
        return trial.suggest_int(rng.name, int(rng.low), int(rng.high), log=rng.log)
    return trial.suggest_float(rng.name, rng.low, rng.high, log=rng.log)


def make_sampler(optuna, kind: str, goal: cfg.Objective, trials: int, seed: int):
    if kind == "auto":
        kind = "nsga2" if goal.multi else "tpe"
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsga2":
        # NSGA-II's default population of 50 would leave a small budget with one random generation
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 3)))
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=min(10, max(3, trials // 3)))
    raise cfg.ConfigError(f"--sampler must be auto, tpe, nsga2 or random (got {kind!r})")


def _baseline_params(setup: Setup) -> dict:
    """The tuned parameters' values in the baseline: the tree's, else the schema defaults."""
    given = {hp.BY_NAME[k].name: v for k, v in setup.statics.items() if k in hp.BY_NAME}
    return {r.name: given.get(r.name, hp.BY_NAME[r.name].default) for r in setup.ranges}


def run_baseline(setup: Setup) -> dict:
    """Train once with the tree's hyperparameters (reused on --resume)."""
    directory = os.path.join(setup.work, BASELINE_DIR)
    record = os.path.join(directory, "metrics.json")
    if os.path.exists(record):
        with open(record, encoding="utf-8") as handle:
            return json.load(handle)
    runner.make_trial_dir(setup.tree, directory, setup.statics)
    run = runner.run_training(directory, setup.timeout)
    out = {"trial": "baseline", "state": "COMPLETE" if run.ok else "FAIL",
           "seconds": round(run.seconds, 2), "dir": os.path.relpath(directory, setup.work),
           "params": _baseline_params(setup), "metrics": setup.metrics_of(run),
           "decided_1": run.decided_1_shares()}
    if not run.ok:
        out["failure"] = run.failure()
        raise cfg.ConfigError(f"the baseline run (the tree's own hyperparameters) failed: "
                              f"{out['failure']} (log: {directory}/{runner.LOG_FILE})")
    with open(record, "w", encoding="utf-8") as handle:
        json.dump(out, handle, indent=2)
    return out


def make_objective(setup: Setup):
    def objective(trial):
        params = {r.name: _suggest(trial, r) for r in setup.ranges}
        directory = runner.make_trial_dir(setup.tree, setup.trial_dir(trial.number),
                                          runner.merge(setup.statics, params))
        run = runner.run_training(directory, setup.timeout)
        trial.set_user_attr("dir", os.path.relpath(directory, setup.work))
        trial.set_user_attr("seconds", round(run.seconds, 2))
        metrics = setup.metrics_of(run)
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("decided_1", run.decided_1_shares())
        if not run.ok:
            reason = run.failure()
            trial.set_user_attr("failure", reason)
            raise runner.TrialFailed(f"trial {trial.number}: {reason}")
        missing = [m for m in setup.goal.metrics if m not in metrics]
        if missing:
            reason = (f"{', '.join(missing)} not in the log (undefined, e.g. no row of a facet "
                      "predicted positive)")
            trial.set_user_attr("failure", reason)
            raise runner.TrialFailed(f"trial {trial.number}: {reason}")
        values = [metrics[m] for m in setup.goal.metrics]
        return values if setup.goal.multi else values[0]

    return objective


def decides_alike(decided_1: dict, channel: str) -> str | None:
    """Why a run's kept model is no classifier on ``channel``'s rows (it decides the same for
    every one: its share of 1s, ``decided_1[channel]``, is 0 or 1), else ``None``. Its |DPPL| is
    then 0, and its |1 - DI| 0 or undefined, by construction, not by being fair."""
    share = decided_1.get(channel)
    if share not in (0, 1):
        return None
    return f"decides {int(share)} for every {channel} row: its |DPPL| is 0 by construction"


def excluded(decided_1: dict, setup: Setup) -> str | None:
    """Why a trial is left out of the choice of a single-objective study, else ``None``: on an
    objective that scores the decisions' parity between the facets (the combined objective,
    |DPPL|, |1 - DI|), a model that decides the same for every row would win by its parity alone
    (:func:`decides_alike`)."""
    if setup.goal.multi:
        return None
    metric = setup.goal.metrics[0].split(":", 1)[1]
    if not metric_registry.get(metric).needs_facet:
        return None
    return decides_alike(decided_1, setup.held_out)


def choose(study, setup: Setup):
    """The trial to recommend: the best one (leaving out the trials :func:`excluded` names), or
    in a multi-objective study the Pareto member with the highest combined objective (without a
    facet: the lowest expected cost), leaving out models that decide the same for every
    validation row unless nothing else is on the front."""
    optuna = import_optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    if not setup.goal.multi:
        kept = [t for t in complete if not excluded(t.user_attrs.get("decided_1", {}), setup)]
        if not kept:
            return None
        sign = 1 if setup.goal.directions[0] == "Maximize" else -1
        return max(kept, key=lambda t: (sign * t.value, -t.number))
    front = study.best_trials
    # a model that decides the same for everyone sits on the front (|DPPL| 0) but classifies
    # nothing: recommend it only if nothing else is there
    deciding = [t for t in front
                if not decides_alike(t.user_attrs.get("decided_1", {}), "validation")]
    front = deciding or front
    if setup.has_facet:
        return max(front, key=lambda t: t.user_attrs["metrics"].get(
            setup.metric("combined_objective"), -math.inf))
    return min(front, key=lambda t: (
        t.user_attrs["metrics"].get(setup.metric("expected_cost"), math.inf),
        -t.user_attrs["metrics"].get(setup.metric("auc"), 0.0)))


def open_study(setup: Setup, sampler: str, seed: int):
    """The study in ``WORK/study.db``, created or resumed; a resumed study must have been made with
    the same objective, ranges and tree; trials an interrupted run left running are marked
    failed."""
    optuna = import_optuna()
    db = os.path.join(setup.work, DB_FILE)
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}",
                                         engine_kwargs={"connect_args": {"timeout": 60}})
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, load_if_exists=True,
                                directions=[d.lower() for d in setup.goal.directions],
                                sampler=make_sampler(optuna, sampler, setup.goal, setup.trials,
                                                     seed))
    identity = {"metrics": list(setup.goal.metrics), "ranges": [r.describe() for r in setup.ranges],
                "tree": setup.tree.path}
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", identity)
        study.set_user_attr("statics", setup.statics)
    elif stored != identity:
        what = {"metrics": "objective", "ranges": "search ranges", "tree": "tree"}
        differ = [f"{what[k]} {stored[k]} (asked: {identity[k]})" if k != "ranges" else
                  "search ranges (--range, --static)" for k in what if stored.get(k) != identity[k]]
        raise cfg.ConfigError(f"{db} holds a study that differs in " + "; ".join(differ)
                              + ": use the same options to resume, or another --work")
    study_id = storage.get_study_id_from_name(STUDY_NAME)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # left running by an interrupted run: nothing is running it now
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    return storage, study
