"""``costaware tune``: tune on this machine with optuna, each trial a real training run.

Every trial is ``costaware train`` (the image's ``train`` entry point) on a tree of its own under
``WORK/trials/NNNN`` (see :mod:`costaware.tuning.runner`); its objective is read from the log with the
published metric definitions, as SageMaker's tuner reads it. The search space is the one
``costaware tuner-config`` sends to SageMaker (:func:`costaware.tuning.config.resolve_ranges`).

* single objective (``combined``, ``auc``, ``cost`` or a metric name): optuna's TPE sampler
  (multivariate, with the constant liar for parallel trials);
* ``multi``: NSGA-II on (validation AUC up, validation |DPPL| down, validation expected cost down;
  without a facet AUC and cost). The chosen trial is the member of the Pareto set with the highest
  ``validation:combined_objective`` (without a facet: the lowest expected cost), leaving out models
  that decide the same for every validation row (their |DPPL| is 0 by construction).

Trials run in parallel threads (``--jobs``, default the CPU count), each waiting on its own
subprocess; XGBoost gets ``nthread = CPUs // jobs`` unless the tree sets it. The study lives in
``WORK/study.db`` (SQLite): ``--resume`` continues it until ``--trials`` trials have completed, after
an interruption or with a larger ``--trials``. Outputs: ``trials.csv`` (every trial and the baseline),
``pareto.png`` (validation AUC against |DPPL| and against expected cost: every trial, the
non-dominated front, the baseline and the chosen trial) and ``best.json`` (the chosen trial's
hyperparameters, metrics and model directory). The baseline is one run with the tree's own
hyperparameters, untuned, in ``WORK/baseline``.

Without a validation channel in the tree, the trials are tuned on the kept round's out-of-fold
metrics over the train rows, ``held_out:<name>`` in place of ``validation:<name>``
(:func:`costaware.tuning.runner.held_out_metrics`): training then holds out every train row by
cross-fitting, and its final ``train:`` line is in sample.

This module runs a study end to end (:func:`tune`) and prints its summary; the study's sampler,
baseline, objective and choice are in :mod:`costaware.tuning.study`, the records, ``trials.csv``
and the charts in :mod:`costaware.tuning.trials`, the command line in
:mod:`costaware.tuning.tune_cli`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from ..machine import cpu_count
from . import config as cfg
from . import runner
from .study import (DB_FILE, Setup, choose, import_optuna, make_objective, open_study,
                    run_baseline)
from .trials import CSV_FILE, collect, plot_pareto, write_csv

PNG_FILE = "pareto.png"
BEST_FILE = "best.json"


class Progress:
    """A tqdm bar on a terminal, one line per trial otherwise (logs, CI)."""

    def __init__(self, total: int, done: int, enabled: bool = True):
        self.lock = threading.Lock()
        self.bar = None
        self.enabled = enabled
        self.total, self.done = total, done
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="trial", desc="tune", file=sys.stderr,
                            dynamic_ncols=True)

    def update(self, text: str) -> None:
        with self.lock:
            self.done += 1
            if self.bar is not None:
                self.bar.set_postfix_str(text, refresh=False)
                self.bar.update(1)
            elif self.enabled:
                print(f"tune: {self.done}/{self.total} {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def against_baseline(chosen: dict | None, base: dict | None, goal) -> str | None:
    """Why the chosen trial is no better than the untuned baseline, or ``None``: worse on the one
    objective, or (several objectives) no better on any and worse on one."""
    if not chosen or not base or base.get("state") != "COMPLETE":
        return None
    worse, better = [], []
    for metric, direction in zip(goal.metrics, goal.directions):
        ours, theirs = chosen["metrics"].get(metric), base["metrics"].get(metric)
        if ours is None or theirs is None or ours == theirs:
            continue
        sign = 1 if direction == "Maximize" else -1
        (better if sign * (ours - theirs) > 0 else worse).append(
            f"{metric} {ours:.4g} against the baseline's {theirs:.4g}")
    if worse and not better:
        return "worse than the untuned baseline: " + "; ".join(worse)
    return None


def _fmt_metrics(metrics: dict, names) -> str:
    return " ".join(f"{n.split(':')[1]}={metrics[n]:.4g}" for n in names if n in metrics)


def _show_names(setup: Setup) -> list[str]:
    names = ["auc", "dppl", "expected_cost", "combined_objective"]
    return [setup.metric(n) for n in names if setup.has_facet or n in ("auc", "expected_cost")]


@dataclass
class Result:
    study: object
    records: list
    chosen: dict | None
    baseline: dict | None
    files: dict


@dataclass(frozen=True)
class TuneRequest:
    """What ``costaware tune`` was asked (its options; see :func:`tune_cli.add_arguments`)."""

    tree_dir: str
    work: str
    trials: int
    objective: str = "combined"
    jobs: int | None = None  # default: the CPU count
    resume: bool = False
    ranges: tuple = ()  # --range texts
    statics: dict = field(default_factory=dict)  # --static: fixed for every trial and the baseline
    sampler: str = "auto"
    seed: int = 0
    timeout: float | None = 1800  # seconds per trial
    baseline: bool = True
    references: tuple = ()  # (label, |DPPL|, AUC) points for the chart
    progress: bool = True


def tune(request: TuneRequest) -> Result:
    """Run (or resume) the study of ``request``; write trials.csv, pareto.png and best.json."""
    optuna = import_optuna()
    setup, own_nthread = _setup(request)
    storage, study = open_study(setup, request.sampler, request.seed)
    base = run_baseline(setup) if request.baseline else None
    complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    remaining = max(0, setup.trials - complete)
    files = {"csv": os.path.join(setup.work, CSV_FILE), "png": os.path.join(setup.work, PNG_FILE),
             "best": os.path.join(setup.work, BEST_FILE), "db": os.path.join(setup.work, DB_FILE)}
    bar = Progress(setup.trials, complete, request.progress)
    write_lock = threading.Lock()
    failures: list[str] = []

    def after_trial(study_, frozen) -> None:
        if frozen.state == optuna.trial.TrialState.FAIL:
            reason = frozen.user_attrs.get("failure", "failed")
            failures.append(reason)
            text = f"trial {frozen.number} failed: {reason[:120]}"
        else:
            text = (f"trial {frozen.number}: "
                    f"{_fmt_metrics(frozen.user_attrs['metrics'], setup.goal.metrics)}")
            best = None if setup.goal.multi else choose(study_, setup)
            if best is not None:
                text += f" | best {best.value:.4g} (trial {best.number})"
        bar.update(text)
        with write_lock:
            write_csv(collect(study_, setup, base), setup, files["csv"])

    previous = None
    if threading.current_thread() is threading.main_thread():
        def interrupt(signum, frame):
            runner.stop_all()
            raise KeyboardInterrupt
        previous = signal.signal(signal.SIGINT, interrupt)
    interrupted = False
    started = time.monotonic()
    try:
        if remaining:
            study.optimize(make_objective(setup), n_trials=remaining, n_jobs=setup.jobs,
                           catch=(runner.TrialFailed,), callbacks=[after_trial])
    except KeyboardInterrupt:
        interrupted = True
        runner.stop_all()
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    elapsed = time.monotonic() - started

    records = collect(study, setup, base)
    write_csv(records, setup, files["csv"])
    chosen = next((r for r in records if r.get("chosen")), None)
    if any(r["state"] == "COMPLETE" for r in records if r["trial"] != "baseline"):
        plot_pareto(records, setup, files["png"])
    verdict = against_baseline(chosen, base, setup.goal)
    if chosen:
        _write_best(files["best"], setup, chosen, verdict, own_nthread)
    ran = bar.done - complete
    _summary(setup, study, records, base, chosen, files, elapsed, ran, failures, verdict)
    if interrupted:
        raise KeyboardInterrupt
    if remaining and len(failures) >= remaining:
        raise cfg.ConfigError(f"every trial of this run failed; the first: {failures[0]}")
    left_out = [r for r in records if r.get("excluded")]
    if chosen is None and left_out:
        raise cfg.ConfigError(
            f"every trial decides the same for every {setup.held_out} row, so none can be chosen "
            f"on {setup.goal.metrics[0]} (its parity is by construction; first: trial "
            f"{left_out[0]['trial']} {left_out[0]['excluded']}): widen the search ranges, or "
            "tune with --objective multi or auc")
    return Result(study, records, chosen, base, files)


def _setup(request: TuneRequest) -> tuple[Setup, bool]:
    """The study's set-up from the request and the tree; whether the tree sets its own nthread."""
    tree = runner.read_tree(request.tree_dir)
    extra = dict(request.statics)
    merged = runner.merge(tree.hyperparameters, extra)
    settings = tree.settings(extra)
    has_facet = bool(settings.facet_column)
    goal = cfg.objective(request.objective, has_facet, multiclass=settings.multiclass)
    space = cfg.resolve_ranges(extra, request.ranges, has_facet=has_facet,
                               multiclass=settings.multiclass)
    cfg.check_statics(merged, space, goal)
    held_out = "validation" if tree.has_validation else runner.HELD_OUT
    if request.trials < 1:
        raise cfg.ConfigError("--trials must be at least 1")
    jobs = max(1, min(request.jobs or cpu_count(), request.trials))
    own_nthread = "nthread" in merged
    if not own_nthread:  # split the cores between parallel trials
        merged["nthread"] = str(max(1, cpu_count() // jobs))
    merged.setdefault("report", "false")  # a trial's charts: most of its time, read by nobody
    work = os.path.abspath(request.work)
    os.makedirs(work, exist_ok=True)
    if os.path.exists(os.path.join(work, DB_FILE)) and not request.resume:
        raise cfg.ConfigError(f"{work} already holds a study ({DB_FILE}): pass --resume to continue "
                              "it, or choose another --work")
    setup = Setup(tree, work, goal.read_from(held_out), space, merged, has_facet, jobs,
                  request.trials, request.timeout,
                  (settings.objective_auc_weight, settings.objective_fairness_weight),
                  list(request.references), held_out)
    return setup, own_nthread


def _write_best(path: str, setup: Setup, chosen: dict, verdict: str | None,
                own_nthread: bool) -> None:
    """best.json: the chosen trial's hyperparameters (the tree's, with the tuned values; nthread
    only when the tree set it), metrics and model directory."""
    best = {"trial": chosen["trial"], "objective": list(setup.goal.metrics),
            **({"warning": f"the chosen trial is {verdict}; keep the tree's own "
                           "hyperparameters"} if verdict else {}),
            "tuned": chosen["params"],
            "hyperparameters": runner.as_strings(runner.merge(
                {k: v for k, v in setup.statics.items()
                 if (k != "nthread" or own_nthread) and k != "report"},
                chosen["params"])),
            "metrics": chosen["metrics"],
            "model_dir": os.path.join(setup.work, chosen["dir"], "model")}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(best, handle, indent=2)
        handle.write("\n")


def _summary(setup, study, records, base, chosen, files, elapsed, ran, failures,
             verdict: str | None = None) -> None:
    names = _show_names(setup)
    complete = sum(1 for r in records if r["trial"] != "baseline" and r["state"] == "COMPLETE")
    failed = sum(1 for r in records if r["trial"] != "baseline" and r["state"] == "FAIL")
    directions = ", ".join(f"{m} ({d.lower()})" for m, d in zip(setup.goal.metrics,
                                                                 setup.goal.directions))
    print(f"study {files['db']}: {complete} complete, {failed} failed; objective {directions}")
    if setup.held_out == runner.HELD_OUT:
        print(f"the tree has no validation channel: tuned on {runner.HELD_OUT}:* in place of "
              "validation:*, the kept round's out-of-fold metrics over the train rows (at the "
              "Bayes rule)")
    if ran:
        print(f"this run: {ran} trials in {elapsed:.0f} s with {setup.jobs} in parallel")
    if failures:
        print(f"failures this run: {len(failures)}; first: {failures[0]}")
    if base:
        print(f"baseline (the tree's hyperparameters): {_fmt_metrics(base['metrics'], names)}")
    left_out = [r for r in records if r.get("excluded")]
    if left_out:
        print(f"excluded from the choice: trial{'s' if len(left_out) > 1 else ''} "
              f"{', '.join(str(r['trial']) for r in left_out)} ({left_out[0]['excluded']}, "
              f"which {setup.goal.metrics[0]} rewards; the column excluded of {CSV_FILE})")
    if chosen:
        tuned = ", ".join(f"{k}={_short(v)}" for k, v in chosen["params"].items())
        print(f"chosen: trial {chosen['trial']}: {_fmt_metrics(chosen['metrics'], names)}")
        print(f"  tuned: {tuned}")
        print(f"  model: {os.path.join(setup.work, chosen['dir'], 'model')}")
        if verdict:
            print(f"  warning: the best trial is {verdict}: no trial improved on the tree's own "
                  "hyperparameters; keep them (best.json says so too)")
        share = chosen.get("decided_1", {}).get("validation")
        if share in (0.0, 1.0):
            print(f"  note: it decides {int(share)} for every validation row, so its |DPPL| is 0 "
                  "by construction (AUC is measured on scores, not decisions); see "
                  "validation_decided_1 in the table, or tune with --objective multi")
    written = [files["csv"]] + [files[k] for k in ("png", "best") if os.path.exists(files[k])]
    print("wrote " + ", ".join(written))


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

