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
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

from .. import hyperparameters as hp
from .. import metric_log
from ..machine import cpu_count
from . import config as cfg
from . import runner

STUDY_NAME = "costaware"
DB_FILE = "study.db"
CSV_FILE = "trials.csv"
PNG_FILE = "pareto.png"
BEST_FILE = "best.json"
BASELINE_DIR = "baseline"
TRIALS_DIR = "trials"
COMBINED = "validation:combined_objective"


def _optuna():
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

    def trial_dir(self, number: int) -> str:
        return os.path.join(self.work, TRIALS_DIR, f"{number:04d}")


def _suggest(trial, rng: cfg.Range):
    if rng.kind == "Categorical":
        return trial.suggest_categorical(rng.name, list(rng.values))
    if rng.kind == "Integer":
        return trial.suggest_int(rng.name, int(rng.low), int(rng.high), log=rng.log)
    return trial.suggest_float(rng.name, rng.low, rng.high, log=rng.log)


def _sampler(optuna, kind: str, goal: cfg.Objective, trials: int, seed: int):
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
           "params": _baseline_params(setup), "metrics": run.metrics,
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
        trial.set_user_attr("metrics", run.metrics)
        trial.set_user_attr("decided_1", run.decided_1_shares())
        if not run.ok:
            reason = run.failure()
            trial.set_user_attr("failure", reason)
            raise runner.TrialFailed(f"trial {trial.number}: {reason}")
        missing = [m for m in setup.goal.metrics if m not in run.metrics]
        if missing:
            reason = (f"{', '.join(missing)} not in the log (undefined, e.g. no row of a facet "
                      "predicted positive)")
            trial.set_user_attr("failure", reason)
            raise runner.TrialFailed(f"trial {trial.number}: {reason}")
        values = [run.metrics[m] for m in setup.goal.metrics]
        return values if setup.goal.multi else values[0]

    return objective


def choose(study, setup: Setup):
    """The trial to recommend: the best one, or in a multi-objective study the Pareto member with
    the highest combined objective (without a facet: the lowest expected cost), leaving out models
    that decide the same for every validation row."""
    optuna = _optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    if not setup.goal.multi:
        return study.best_trial
    front = study.best_trials
    # a model that decides the same for everyone sits on the front (|DPPL| 0) but classifies
    # nothing: recommend it only if nothing else is there
    deciding = [t for t in front if t.user_attrs.get("decided_1", {}).get("validation") not in (0, 1)]
    front = deciding or front
    if setup.has_facet:
        return max(front, key=lambda t: t.user_attrs["metrics"].get(COMBINED, -math.inf))
    return min(front, key=lambda t: (t.user_attrs["metrics"].get("validation:expected_cost",
                                                                  math.inf),
                                     -t.user_attrs["metrics"].get("validation:auc", 0.0)))


def pareto_mask(points: list[tuple[float, float]]) -> list[bool]:
    """Non-dominated points for (x down, y up): no other point has x' <= x and y' >= y with one
    strict."""
    out = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y)
                        for j, (x2, y2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def _metric_columns(records: list[dict]) -> list[str]:
    present = set()
    for record in records:
        present.update(record.get("metrics", {}))
    order = [f"{c}:{m}" for c in ("validation", "test", "train") for m in metric_log.directions()]
    return [name for name in order if name in present]


def _x_metrics(setup: Setup) -> list[str]:
    return (["validation:dppl"] if setup.has_facet else []) + ["validation:expected_cost"]


def collect(study, setup: Setup, baseline: dict | None) -> list[dict]:
    """Baseline and trials as flat records (the CSV rows), with the front and the choice marked."""
    optuna = _optuna()
    chosen = choose(study, setup)
    optuna_front = ({t.number for t in study.best_trials} if setup.goal.multi and chosen else set())
    records = []
    if baseline:
        records.append({**baseline, "chosen": False, "values": {}})
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:
            continue
        record = {
            "trial": t.number, "state": t.state.name, "seconds": t.user_attrs.get("seconds"),
            "dir": t.user_attrs.get("dir", ""), "params": dict(t.params),
            "metrics": dict(t.user_attrs.get("metrics", {})),
            "decided_1": dict(t.user_attrs.get("decided_1", {})),
            "chosen": chosen is not None and t.number == chosen.number,
            "failure": t.user_attrs.get("failure", ""),
        }
        if setup.goal.multi:
            record["optuna_pareto"] = t.number in optuna_front
        records.append(record)
    complete = [r for r in records if r["trial"] != "baseline" and r["state"] == "COMPLETE"
                and not constant_scores(r)]
    for x_metric in _x_metrics(setup):
        usable = [r for r in complete if x_metric in r["metrics"] and "validation:auc" in r["metrics"]]
        mask = pareto_mask([(r["metrics"][x_metric], r["metrics"]["validation:auc"]) for r in usable])
        short = x_metric.split(":")[1]
        for r, on_front in zip(usable, mask):
            r[f"front_auc_{short}"] = on_front
    return records


def constant_scores(record: dict) -> bool:
    """A model that scores everyone alike (AUC exactly 0.5, e.g. no split passed gamma or
    min_child_weight): it decides the same for everyone, so it is trivially at parity. Such trials
    stay in the table but are left off the fronts and the chart."""
    return abs(record["metrics"].get("validation:auc", 0.0) - 0.5) < 1e-12


def write_csv(records: list[dict], setup: Setup, path: str) -> None:
    names = [r.name for r in setup.ranges]
    metrics = _metric_columns(records)
    fronts = [f"front_auc_{m.split(':')[1]}" for m in _x_metrics(setup)]
    extra = ["optuna_pareto"] if setup.goal.multi else []
    shares = [f"{c}_decided_1" for c in ("validation", "test")
              if any(c in r.get("decided_1", {}) for r in records)]
    header = ["trial", "state", "chosen", *fronts, *extra, *names, *metrics, *shares, "seconds",
              "dir", "failure"]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for r in records:
            row = [r["trial"], r["state"], r.get("chosen", False)]
            row += [r.get(f, "") for f in fronts] + [r.get(e, "") for e in extra]
            row += [r["params"].get(n, "") for n in names]
            row += [r["metrics"].get(m, "") for m in metrics]
            row += [_share(r.get("decided_1", {}).get(c.split("_")[0])) for c in shares]
            row += [r.get("seconds", ""), r.get("dir", ""), r.get("failure", "")]
            writer.writerow(row)
    os.replace(tmp, path)


def _share(value) -> str:
    return "" if value is None else f"{value:.6g}"


AXIS_LABELS = {
    "validation:dppl": "validation |DPPL| (0 = demographic parity)",
    "validation:expected_cost": "validation expected cost per decision",
    "validation:auc": "validation AUC",
}


def plot_pareto(records: list[dict], setup: Setup, path: str, title: str | None = None) -> str:
    """AUC against |DPPL| (with a facet) and against expected cost: every trial coloured by its
    number, the non-dominated front, the baseline (x) and the chosen trial (star)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _x_metrics(setup)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 5.0), squeeze=False)
    finished = [r for r in records if r["trial"] != "baseline" and r["state"] == "COMPLETE"]
    trials = [r for r in finished if not constant_scores(r)]
    baseline = next((r for r in records if r["trial"] == "baseline"), None)
    chosen = next((r for r in trials if r.get("chosen")), None)
    scatter = None
    for ax, x_metric in zip(axes[0], panels):
        usable = [r for r in trials if x_metric in r["metrics"] and "validation:auc" in r["metrics"]]
        xs = [r["metrics"][x_metric] for r in usable]
        ys = [r["metrics"]["validation:auc"] for r in usable]
        if usable:
            scatter = ax.scatter(xs, ys, c=[r["trial"] for r in usable], cmap="viridis", s=28,
                                 alpha=0.8, zorder=2, label="trial")
            key = f"front_auc_{x_metric.split(':')[1]}"
            front = sorted((r["metrics"][x_metric], r["metrics"]["validation:auc"])
                           for r in usable if r.get(key))
            if front:
                fx, fy = zip(*front)
                ax.step(fx, fy, where="post", color="tab:red", lw=1.5, zorder=3,
                        label="non-dominated front")
                ax.scatter(fx, fy, facecolors="none", edgecolors="tab:red", s=70, zorder=3)
        if baseline and x_metric in baseline["metrics"]:
            bx, by = baseline["metrics"][x_metric], baseline["metrics"]["validation:auc"]
            ax.scatter([bx], [by], marker="X", s=140, color="black", zorder=4,
                       label="baseline (untuned)")
        if chosen and x_metric in chosen["metrics"]:
            cx, cy = chosen["metrics"][x_metric], chosen["metrics"]["validation:auc"]
            ax.scatter([cx], [cy], marker="*", s=320, color="gold", edgecolors="black", zorder=5,
                       label=f"chosen (trial {chosen['trial']})")
        for label, x, y in setup.references:
            if x_metric == "validation:dppl":
                ax.scatter([x], [y], marker="s", s=80, facecolors="none", edgecolors="tab:blue",
                           lw=1.8, zorder=4, label=label)
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=7,
                            color="tab:blue")
        if chosen and x_metric == "validation:dppl" and COMBINED in chosen["metrics"]:
            _iso_combined(ax, chosen["metrics"][COMBINED], setup.weights)
        ax.set_xlabel(AXIS_LABELS.get(x_metric, x_metric))
        ax.set_ylabel(AXIS_LABELS["validation:auc"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes[0].tolist(), label="trial number", shrink=0.85)
    constant = len(finished) - len(trials)
    note = (f"; {constant} with constant scores (AUC 0.5) not shown" if constant else "")
    fig.suptitle(title or f"costaware tune: {setup.goal.label} ({', '.join(setup.goal.metrics)}), "
                 f"{len(finished)} trials{note}")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _iso_combined(ax, value: float, weights: tuple) -> None:
    """The line of equal combined objective through the chosen trial:
    ``AUC = (c (w_a + w_f) - w_f (1 - d)) / w_a``."""
    w_auc, w_fair = weights
    if w_auc <= 0:
        return
    (x_lo, x_hi), (y_lo, y_hi) = ax.get_xlim(), ax.get_ylim()
    xs = [max(0.0, x_lo), min(1.0, x_hi)]
    ys = [(value * (w_auc + w_fair) - w_fair * (1 - d)) / w_auc for d in xs]
    ax.plot(xs, ys, ls=":", color="gray", lw=1.2, zorder=1,
            label=f"equal combined objective ({value:.3f})")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)


def read_trials(path: str) -> list[dict]:
    """A trials.csv back as rows of numbers (empty cells dropped)."""
    out = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            parsed = {}
            for key, value in row.items():
                if value == "":
                    continue
                try:
                    parsed[key] = float(value)
                except ValueError:
                    parsed[key] = value
            out.append(parsed)
    return out


def compare_studies(works: list[str], labels: list[str], path: str, references=(),
                    x_metric: str = "validation:dppl", title: str | None = None) -> str:
    """Several studies' trials on one AUC-|DPPL| chart (each with its chosen trial), the baseline
    of the first, and published points: e.g. AUC-only against combined tuning."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 5.2))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    baseline = None
    for i, (work, label) in enumerate(zip(works, labels)):
        rows = read_trials(os.path.join(work, CSV_FILE))
        color = colors[i % len(colors)]
        trials = [r for r in rows if r["trial"] != "baseline" and r["state"] == "COMPLETE"
                  and x_metric in r and abs(r.get("validation:auc", 0.5) - 0.5) > 1e-12]
        ax.scatter([r[x_metric] for r in trials], [r["validation:auc"] for r in trials], s=24,
                   color=color, alpha=0.55, label=f"{label}: {len(trials)} trials")
        chosen = next((r for r in trials if r.get("chosen") == "True"), None)
        if chosen:
            ax.scatter([chosen[x_metric]], [chosen["validation:auc"]], marker="*", s=340,
                       color=color, edgecolors="black", zorder=5, label=f"{label}: chosen")
        baseline = baseline or next((r for r in rows if r["trial"] == "baseline"), None)
    if baseline and x_metric in baseline:
        ax.scatter([baseline[x_metric]], [baseline["validation:auc"]], marker="X", s=140,
                   color="black", zorder=5, label="baseline (untuned)")
    for label, x, y in references:
        ax.scatter([x], [y], marker="s", s=90, facecolors="none", edgecolors="tab:red", lw=1.8,
                   zorder=4)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(7, -3), fontsize=8,
                    color="tab:red")
    ax.set_xlabel(AXIS_LABELS.get(x_metric, x_metric))
    ax.set_ylabel(AXIS_LABELS["validation:auc"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    ax.set_title(title or "AUC against demographic parity", fontsize=11)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


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
    names = ["validation:auc", "validation:dppl", "validation:expected_cost", COMBINED]
    return [n for n in names if setup.has_facet or n in ("validation:auc",
                                                         "validation:expected_cost")]


@dataclass
class Result:
    study: object
    records: list
    chosen: dict | None
    baseline: dict | None
    files: dict


def tune(tree_dir: str, work: str, trials: int, objective: str = "combined", jobs: int | None = None,
         resume: bool = False, ranges: tuple = (), statics: dict | None = None,
         sampler: str = "auto", seed: int = 0, timeout: float | None = 1800,
         baseline: bool = True, references: tuple = (), progress: bool = True) -> Result:
    optuna = _optuna()
    tree = runner.read_tree(tree_dir)
    extra = dict(statics or {})
    merged = runner.merge(tree.hyperparameters, extra)
    try:
        settings = hp.parse(merged)
    except hp.HyperparameterError as exc:
        raise cfg.ConfigError(f"the tree's hyperparameters: {exc}") from None
    has_facet = bool(settings.facet_column)
    goal = cfg.objective(objective, has_facet)
    space = cfg.resolve_ranges(extra, ranges, has_facet=has_facet)
    cfg.check_statics(merged, space)
    if trials < 1:
        raise cfg.ConfigError("--trials must be at least 1")
    jobs = max(1, min(jobs or cpu_count(), trials))
    own_nthread = "nthread" in merged
    if not own_nthread:  # split the cores between parallel trials
        merged["nthread"] = str(max(1, cpu_count() // jobs))
    work = os.path.abspath(work)
    os.makedirs(work, exist_ok=True)
    db = os.path.join(work, DB_FILE)
    if os.path.exists(db) and not resume:
        raise cfg.ConfigError(f"{work} already holds a study ({DB_FILE}): pass --resume to continue "
                              "it, or choose another --work")
    setup = Setup(tree, work, goal, space, merged, has_facet, jobs, trials, timeout,
                  (settings.objective_auc_weight, settings.objective_fairness_weight),
                  list(references))
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}",
                                         engine_kwargs={"connect_args": {"timeout": 60}})
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, load_if_exists=True,
                                directions=[d.lower() for d in goal.directions],
                                sampler=_sampler(optuna, sampler, goal, trials, seed))
    identity = {"metrics": list(goal.metrics), "ranges": [r.describe() for r in space],
                "tree": tree.path}
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", identity)
        study.set_user_attr("statics", merged)
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

    base = run_baseline(setup) if baseline else None
    complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    remaining = max(0, trials - complete)
    files = {"csv": os.path.join(work, CSV_FILE), "png": os.path.join(work, PNG_FILE),
             "best": os.path.join(work, BEST_FILE), "db": db}
    bar = Progress(trials, complete, progress)
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
            if not setup.goal.multi:
                best = study_.best_trial
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
            study.optimize(make_objective(setup), n_trials=remaining, n_jobs=jobs,
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
    verdict = against_baseline(chosen, base, goal)
    if chosen:
        best = {"trial": chosen["trial"], "objective": list(goal.metrics),
                **({"warning": f"the chosen trial is {verdict}; keep the tree's own "
                               "hyperparameters"} if verdict else {}),
                "tuned": chosen["params"],
                "hyperparameters": runner.as_strings(runner.merge(
                    {k: v for k, v in merged.items() if k != "nthread" or own_nthread},
                    chosen["params"])),
                "metrics": chosen["metrics"],
                "model_dir": os.path.join(work, chosen["dir"], "model")}
        with open(files["best"], "w", encoding="utf-8") as handle:
            json.dump(best, handle, indent=2)
            handle.write("\n")
    ran = bar.done - complete
    _summary(setup, study, records, base, chosen, files, elapsed, ran, failures, verdict)
    if interrupted:
        raise KeyboardInterrupt
    if remaining and len(failures) >= remaining:
        raise cfg.ConfigError(f"every trial of this run failed; the first: {failures[0]}")
    return Result(study, records, chosen, base, files)


def _summary(setup, study, records, base, chosen, files, elapsed, ran, failures,
             verdict: str | None = None) -> None:
    names = _show_names(setup)
    complete = sum(1 for r in records if r["trial"] != "baseline" and r["state"] == "COMPLETE")
    failed = sum(1 for r in records if r["trial"] != "baseline" and r["state"] == "FAIL")
    directions = ", ".join(f"{m} ({d.lower()})" for m, d in zip(setup.goal.metrics,
                                                                 setup.goal.directions))
    print(f"study {files['db']}: {complete} complete, {failed} failed; objective {directions}")
    if ran:
        print(f"this run: {ran} trials in {elapsed:.0f} s with {setup.jobs} in parallel")
    if failures:
        print(f"failures this run: {len(failures)}; first: {failures[0]}")
    if base:
        print(f"baseline (the tree's hyperparameters): {_fmt_metrics(base['metrics'], names)}")
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


def parse_reference(text: str) -> tuple[str, float, float]:
    """``LABEL=AUC,DPPL``: a published point to draw on the AUC-|DPPL| panel."""
    try:
        label, numbers = text.rsplit("=", 1)
        auc, dppl = (float(v) for v in numbers.split(","))
    except ValueError:
        raise cfg.ConfigError(f"--reference {text!r}: expected LABEL=AUC,DPPL") from None
    return label.strip(), dppl, auc


def main(args) -> int:
    try:
        tune(args.tree, args.work, args.trials, args.objective, args.jobs, args.resume,
             tuple(args.range or ()), cfg.parse_statics(args.static or ()), args.sampler,
             args.seed, args.timeout or None, not args.no_baseline,
             tuple(parse_reference(r) for r in args.reference or ()), not args.quiet)
    except cfg.ConfigError as exc:
        print(f"costaware tune: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("costaware tune: interrupted; continue with --resume", file=sys.stderr)
        return 130
    return 0


def add_arguments(parser) -> None:
    parser.add_argument("--tree", required=True,
                        help="a prepared /opt/ml-shaped tree (its hyperparameters are the baseline)")
    parser.add_argument("--work", required=True,
                        help="directory for the study (study.db), trial trees and outputs")
    parser.add_argument("--trials", type=int, required=True,
                        help="complete trials the study should have (with --resume: in total)")
    parser.add_argument("--objective", default="combined",
                        help="combined | auc | cost | multi | a metric name (default combined)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="trials in parallel (default: the CPU count)")
    parser.add_argument("--resume", action="store_true", help="continue the study in --work")
    parser.add_argument("--range", action="append", metavar="NAME=LOW:HIGH[:SCALING]|a,b|off",
                        help="override a search range, add a categorical one, or turn one off")
    parser.add_argument("--static", action="append", metavar="KEY=VALUE",
                        help="fix a hyperparameter for every trial and the baseline (not searched)")
    parser.add_argument("--sampler", default="auto", choices=("auto", "tpe", "nsga2", "random"))
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per trial (0: none)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the untuned baseline run")
    parser.add_argument("--reference", action="append", metavar="LABEL=AUC,DPPL",
                        help="a published point to mark on the chart")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
