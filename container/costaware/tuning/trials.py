"""``costaware tune``'s trials as records: the non-dominated fronts, ``trials.csv`` and the charts
(``pareto.png``, and several studies on one chart)."""

from __future__ import annotations

import csv
import os

from ..metrics import log_lines as metric_log
from .runner import HELD_OUT
from .study import Setup, choose, excluded, import_optuna


CSV_FILE = "trials.csv"
AXIS_LABELS = {"dppl": "|DPPL| (0 = demographic parity)",
               "expected_cost": "expected cost per decision", "auc": "AUC"}
CHANNEL_WORDS = {HELD_OUT: "held-out (out-of-fold)"}


def axis_label(metric: str) -> str:
    """``validation:auc`` -> "validation AUC"."""
    channel, name = metric.split(":", 1)
    return f"{CHANNEL_WORDS.get(channel, channel)} {AXIS_LABELS.get(name, name)}"


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
    order = [f"{c}:{m}" for c in (HELD_OUT, "validation", "test", "train")
             for m in metric_log.directions()]
    return [name for name in order if name in present]


def x_metrics(setup: Setup) -> list[str]:
    return ([setup.metric("dppl")] if setup.has_facet else []) + [setup.metric("expected_cost")]


def collect(study, setup: Setup, baseline: dict | None) -> list[dict]:
    """Baseline and trials as flat records (the CSV rows), with the front, the choice and the
    trials excluded from it (and why) marked."""
    optuna = import_optuna()
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
        if t.state == optuna.trial.TrialState.COMPLETE:
            record["excluded"] = excluded(record["decided_1"], setup) or ""
        if setup.goal.multi:
            record["optuna_pareto"] = t.number in optuna_front
        records.append(record)
    auc = setup.metric("auc")
    complete = [r for r in records if r["trial"] != "baseline" and r["state"] == "COMPLETE"
                and not constant_scores(r, auc)]
    for x_metric in x_metrics(setup):
        usable = [r for r in complete if x_metric in r["metrics"] and auc in r["metrics"]]
        mask = pareto_mask([(r["metrics"][x_metric], r["metrics"][auc]) for r in usable])
        short = x_metric.split(":")[1]
        for r, on_front in zip(usable, mask):
            r[f"front_auc_{short}"] = on_front
    return records


def constant_scores(record: dict, auc: str) -> bool:
    """A model that scores everyone alike (``auc`` exactly 0.5, e.g. no split passed gamma or
    min_child_weight): it decides the same for everyone, so it is trivially at parity. Such trials
    stay in the table but are left off the fronts and the chart."""
    return abs(record["metrics"].get(auc, 0.0) - 0.5) < 1e-12


def write_csv(records: list[dict], setup: Setup, path: str) -> None:
    names = [r.name for r in setup.ranges]
    metrics = _metric_columns(records)
    fronts = [f"front_auc_{m.split(':')[1]}" for m in x_metrics(setup)]
    extra = ["optuna_pareto"] if setup.goal.multi else []
    shares = [f"{c}_decided_1" for c in ("validation", "test")
              if any(c in r.get("decided_1", {}) for r in records)]
    header = ["trial", "state", "chosen", "excluded", *fronts, *extra, *names, *metrics, *shares,
              "seconds", "dir", "failure"]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for r in records:
            row = [r["trial"], r["state"], r.get("chosen", False), r.get("excluded", "")]
            row += [r.get(f, "") for f in fronts] + [r.get(e, "") for e in extra]
            row += [r["params"].get(n, "") for n in names]
            row += [r["metrics"].get(m, "") for m in metrics]
            row += [_share(r.get("decided_1", {}).get(c.split("_")[0])) for c in shares]
            row += [r.get("seconds", ""), r.get("dir", ""), r.get("failure", "")]
            writer.writerow(row)
    os.replace(tmp, path)


def _share(value) -> str:
    return "" if value is None else f"{value:.6g}"


def plot_pareto(records: list[dict], setup: Setup, path: str, title: str | None = None) -> str:
    """AUC against |DPPL| (with a facet) and against expected cost: every trial coloured by its
    number, the non-dominated front, the baseline (x) and the chosen trial (star)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = x_metrics(setup)
    auc, dppl, combined = (setup.metric(m) for m in ("auc", "dppl", "combined_objective"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 5.0), squeeze=False)
    finished = [r for r in records if r["trial"] != "baseline" and r["state"] == "COMPLETE"]
    trials = [r for r in finished if not constant_scores(r, auc)]
    baseline = next((r for r in records if r["trial"] == "baseline"), None)
    chosen = next((r for r in trials if r.get("chosen")), None)
    scatter = None
    for ax, x_metric in zip(axes[0], panels):
        usable = [r for r in trials if x_metric in r["metrics"] and auc in r["metrics"]]
        xs = [r["metrics"][x_metric] for r in usable]
        ys = [r["metrics"][auc] for r in usable]
        if usable:
            scatter = ax.scatter(xs, ys, c=[r["trial"] for r in usable], cmap="viridis", s=28,
                                 alpha=0.8, zorder=2, label="trial")
            key = f"front_auc_{x_metric.split(':')[1]}"
            front = sorted((r["metrics"][x_metric], r["metrics"][auc])
                           for r in usable if r.get(key))
            if front:
                fx, fy = zip(*front)
                ax.step(fx, fy, where="post", color="tab:red", lw=1.5, zorder=3,
                        label="non-dominated front")
                ax.scatter(fx, fy, facecolors="none", edgecolors="tab:red", s=70, zorder=3)
        if baseline and x_metric in baseline["metrics"]:
            bx, by = baseline["metrics"][x_metric], baseline["metrics"][auc]
            ax.scatter([bx], [by], marker="X", s=140, color="black", zorder=4,
                       label="baseline (untuned)")
        if chosen and x_metric in chosen["metrics"]:
            cx, cy = chosen["metrics"][x_metric], chosen["metrics"][auc]
            ax.scatter([cx], [cy], marker="*", s=320, color="gold", edgecolors="black", zorder=5,
                       label=f"chosen (trial {chosen['trial']})")
        for label, x, y in setup.references:
            if x_metric == dppl:
                ax.scatter([x], [y], marker="s", s=80, facecolors="none", edgecolors="tab:blue",
                           lw=1.8, zorder=4, label=label)
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=7,
                            color="tab:blue")
        if chosen and x_metric == dppl and combined in chosen["metrics"]:
            _iso_combined(ax, chosen["metrics"][combined], setup.weights)
        ax.set_xlabel(axis_label(x_metric))
        ax.set_ylabel(axis_label(auc))
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
    ax.set_xlabel(axis_label(x_metric))
    ax.set_ylabel(axis_label("validation:auc"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    ax.set_title(title or "AUC against demographic parity", fontsize=11)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
