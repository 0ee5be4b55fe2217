"""``costaware sweep``: which FN:FP cost ratio pays, priced with one cost matrix.

For each ratio ``r`` the tree is trained (``costaware train``, the image's entry point, in
``WORK/ratio-R``) with the training costs ``cost_fp = 1``, ``cost_fn = r``, ``cost_tp = cost_tn = 0``
and everything else from the tree. The ratio moves both the loss weights and the Bayes rule the
model decides by (``decide 1 iff p >= 1 / (1 + r)``). Every model's decisions at its own ratio are
then priced on the test channel (and on validation) with the **tree's own** cost matrix, so all
ratios are compared in the same money:

``expected cost per decision = (1/n) sum_i C(y_i, decide_i)``, ``C`` the tree's ``cost_fp``,
``cost_fn``, ``cost_tp``, ``cost_tn``. A tree that gives them as a 2 x 2 ``cost_matrix``
``[[C_TN, C_FP], [C_FN, C_TP]]`` is trained in that form, ``cost_matrix = [[0, 1], [r, 0]]`` (the
same costs). Refused up front: a channel entry of ``inputdataconfig.json`` that training refuses
(its own check, ``config_files.check_channel_config``: Pipe mode, say), a tree with cost columns
(its rows carry their own costs, which a class ratio does not move), a tree with more than two
classes (a K x K matrix has no one FN:FP ratio; compare matrices by training each) and a
``--static`` cost (every run sets its own).

The tree's own regret ratio ``(C_FN - C_TP) / (C_FP - C_TN)`` is added to the ratios (it trains the
same model as the tree's costs: only the ratio of the regrets matters to the loss and the
rule). Outputs: ``sweep.csv`` and ``sweep.png`` (cost per decision against the ratio, with what
approving everyone, rejecting everyone and perfect decisions would cost on test).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import config_files
from ..config import hyperparameters as hp
from ..decisions.costs import CELLS
from ..errors import InputError
from . import config as cfg
from . import runner

CSV_FILE = "sweep.csv"
PNG_FILE = "sweep.png"


def parse_ratios(text: str) -> list[float]:
    try:
        ratios = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise cfg.ConfigError(f"--ratios {text!r}: expected numbers such as 1,2,5,10") from None
    if not ratios or any(not r > 0 for r in ratios):
        raise cfg.ConfigError("--ratios: every ratio must be a positive number")
    return sorted(set(ratios))


def _ratio_text(r: float) -> str:
    return f"{r:g}"


COSTS = tuple(f"cost_{cell}" for cell in CELLS) + ("cost_matrix",)  # what each run sets


def check_sweepable(tree: runner.Tree, settings, statics: dict) -> None:
    """Refuse, with why, what the sweep cannot vary: more than two classes, per-row costs, a
    ``--static`` cost."""
    where = tree.path
    if settings.multiclass:
        k = settings.n_classes
        raise cfg.ConfigError(f"{where}: the tree has {k} classes; the sweep varies the FN:FP "
                              f"ratio of two classes, which a {k} x {k} cost_matrix does not "
                              "have (compare matrices by training each)")
    columns = [f"cost_{cell}_column" for cell, _ in settings.cost_columns]
    if columns:
        raise cfg.ConfigError(f"{where}: the tree gives per-row costs ({', '.join(columns)}); "
                              "the sweep varies the class costs, which those rows do not use")
    for key in statics:
        if key in hp.BY_NAME and hp.BY_NAME[key].name in COSTS:
            raise cfg.ConfigError(f"--static {key}: the sweep sets the training costs of each run "
                                  "itself and prices every run with the tree's; change the tree's "
                                  "costs instead")


def training_costs(ratio: float, as_matrix: bool) -> dict:
    """The hyperparameters of ratio ``r``: ``cost_fp = 1``, ``cost_fn = r``, ``cost_tp = cost_tn
    = 0``, or the same as the 2 x 2 ``cost_matrix`` ``[[0, 1], [r, 0]]``."""
    if as_matrix:
        return {"cost_matrix": json.dumps([[0, 1], [float(f"{ratio:.10g}"), 0]])}
    return {"cost_fp": "1", "cost_fn": f"{ratio:.10g}", "cost_tp": "0", "cost_tn": "0"}


class Pricer:
    """Prices a trained model's decisions on a channel with the tree's own costs."""

    def __init__(self, tree: runner.Tree, settings):
        from ..data import channel_files as data  # pandas: only when a sweep runs
        from ..data.channel_batches import read_in_batches
        from ..data.external_features import BATCH_ROWS

        self.tree = tree
        self.settings = settings
        self.costs = settings.class_costs
        self.datasets = {}
        for name in ("validation", "test"):
            if name in tree.inputdataconfig:
                content_type = tree.inputdataconfig[name].get("ContentType", "text/csv")
                options = data.options_from_settings(settings, content_type)
                try:
                    # (a batch at a time and joined, as training reads a channel)
                    self.datasets[name] = read_in_batches(os.path.join(tree.data_dir, name),
                                                          content_type, options, BATCH_ROWS)
                except InputError as exc:
                    raise cfg.ConfigError(f"the {name} channel: {exc}") from None
        if "test" not in self.datasets:
            raise cfg.ConfigError(f"{tree.path}: the sweep prices models on a 'test' channel; the "
                                  "tree has none")

    def price(self, model_dir: str, name: str) -> dict:
        from ..model import artifact
        from ..decisions.costs import RowCosts
        from ..metrics.clarify import sensitive_facet_index

        dataset = self.datasets[name]
        model = artifact.load(model_dir)
        features = dataset.features
        if dataset.named_columns and list(dataset.feature_names) != model.feature_names:
            index = [dataset.feature_names.index(n) for n in model.feature_names]
            features = features[:, index]
        p = model.probability(features)
        sensitive = None
        if model.policy.needs_facet:
            sensitive = sensitive_facet_index(dataset.facet, model.policy.facet["values_or_threshold"])
        # decided at the model's own (training) costs, priced at the tree's
        decision, _, _ = model.policy.decide(p, RowCosts.constant(model.policy.costs, len(p)),
                                             sensitive)
        cost = dataset.costs.realised(dataset.label, decision)
        label = dataset.label
        return {
            "cost_per_decision": float(cost.mean()),
            "tp": int(((decision == 1) & (label == 1)).sum()),
            "fp": int(((decision == 1) & (label == 0)).sum()),
            "fn": int(((decision == 0) & (label == 1)).sum()),
            "tn": int(((decision == 0) & (label == 0)).sum()),
        }

    def references(self, name: str = "test") -> dict:
        """Cost per decision of deciding 1 for everyone, 0 for everyone, and every decision right."""
        label = self.datasets[name].label
        rc = self.datasets[name].costs
        n = len(label)
        return {
            "all 1": float(rc.realised(label, np.ones(n)).mean()),
            "all 0": float(rc.realised(label, np.zeros(n)).mean()),
            "perfect": float(rc.realised(label, label).mean()),
        }


def sweep(tree_dir: str, work: str, ratios: list[float], jobs: int | None = None,
          include_tree_ratio: bool = True, timeout: float | None = 1800,
          statics: dict | None = None) -> dict:
    tree = runner.read_tree(tree_dir)
    statics = statics or {}
    settings = tree.settings(statics)
    check_sweepable(tree, settings, statics)
    try:  # the Pricer reads channels itself: what training would refuse, refused first, alike
        config_files.check_channel_config(tree.inputdataconfig)
    except InputError as exc:
        raise cfg.ConfigError(f"{tree.path}: {exc}") from None
    pricer = Pricer(tree, settings)
    costs = pricer.costs
    tree_ratio = (costs.fn - costs.tp) / (costs.fp - costs.tn)
    all_ratios = sorted(set(ratios) | ({round(tree_ratio, 6)} if include_tree_ratio else set()))
    work = os.path.abspath(work)
    os.makedirs(work, exist_ok=True)
    from ..machine import cpu_count

    jobs = max(1, min(jobs or cpu_count(), len(all_ratios)))
    base = runner.merge(tree.hyperparameters, statics)
    as_matrix = bool(base.get("cost_matrix", "").strip())  # a 2 x 2: the tree's form
    if "nthread" not in base:
        base["nthread"] = str(max(1, cpu_count() // jobs))
    base.setdefault("report", "false")  # a ratio's charts: most of its time; sweep.png sums up

    def one(ratio: float) -> dict:
        directory = os.path.join(work, f"ratio-{_ratio_text(ratio)}")
        hyper = runner.merge(base, training_costs(ratio, as_matrix))
        runner.make_trial_dir(tree, directory, hyper)
        run = runner.run_training(directory, timeout)
        row = {"ratio": ratio, "tree_ratio": abs(ratio - tree_ratio) <= 1e-6 * tree_ratio,
               "seconds": round(run.seconds, 2), "dir": os.path.relpath(directory, work)}
        if not run.ok:
            return {**row, "failure": run.failure()}
        row["threshold"] = 1.0 / (1.0 + ratio)  # the Bayes threshold the model decides at
        row["test_auc"] = run.metrics.get("test:auc")
        for name in pricer.datasets:
            priced = pricer.price(os.path.join(directory, "model"), name)
            row[f"{name}_cost_per_decision"] = priced.pop("cost_per_decision")
            if name == "test":
                row.update({f"test_{k}": v for k, v in priced.items()})
        return row

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(one, all_ratios))
    failed = [r for r in rows if "failure" in r]
    if failed:
        raise cfg.ConfigError(f"training at ratio {failed[0]['ratio']:g} failed: "
                              f"{failed[0]['failure']} (log: {work}/{failed[0]['dir']}/train.log)")
    best = min(rows, key=lambda r: r["test_cost_per_decision"])
    for r in rows:
        r["best_on_test"] = r is best
    refs = pricer.references("test")
    files = {"csv": os.path.join(work, CSV_FILE), "png": os.path.join(work, PNG_FILE)}
    _write_csv(rows, files["csv"])
    _plot(rows, refs, tree_ratio, costs, files["png"])
    return {"rows": rows, "references": refs, "tree_ratio": tree_ratio, "files": files,
            "costs": costs}


COLUMNS = ["ratio", "tree_ratio", "best_on_test", "threshold", "test_auc", "test_tp", "test_fp",
           "test_fn", "test_tn", "test_cost_per_decision", "validation_cost_per_decision",
           "seconds", "dir"]


def _write_csv(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r.get(c, "") for c in COLUMNS])


def _money(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def _plot(rows, refs, tree_ratio, costs, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    xs = [r["ratio"] for r in rows]
    ax.plot(xs, [r["test_cost_per_decision"] for r in rows], "o-", color="tab:blue",
            label="test", zorder=3)
    if all("validation_cost_per_decision" in r for r in rows):
        ax.plot(xs, [r["validation_cost_per_decision"] for r in rows], "s--", color="tab:gray",
                alpha=0.7, label="validation", zorder=2)
    best = next(r for r in rows if r["best_on_test"])
    ax.scatter([best["ratio"]], [best["test_cost_per_decision"]], marker="*", s=300, color="gold",
               edgecolors="black", zorder=4,
               label=f"cheapest on test: {best['ratio']:.4g}:1 ({_money(best['test_cost_per_decision'])})")
    ax.axvline(tree_ratio, color="tab:red", ls=":", lw=1.2,
               label=f"the cost matrix's own regret ratio {tree_ratio:.4g}:1")
    styles = {"all 1": ("tab:orange", "-."), "all 0": ("tab:purple", "-."),
              "perfect": ("tab:green", ":")}
    names = {"all 1": "decide 1 for everyone", "all 0": "decide 0 for everyone",
             "perfect": "every decision right"}
    values = [r[k] for r in rows for k in ("test_cost_per_decision", "validation_cost_per_decision")
              if k in r]
    low, high = min(values + [refs["perfect"]]), max(values)
    span = max(high - low, 1e-9)
    off_scale = []
    shown = [low, high]
    for name, value in refs.items():
        if value > high + 2 * span:  # would flatten the curve: named, not drawn
            off_scale.append(f"{names[name]}: {_money(value)}")
            continue
        color, ls = styles[name]
        ax.axhline(value, color=color, ls=ls, lw=1, label=f"{names[name]} ({_money(value)})")
        shown.append(value)
    ax.set_ylim(min(shown) - 0.1 * span, max(shown) + 0.25 * span)
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:.4g}" for x in xs], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("training cost ratio FN:FP (cost_fn / cost_fp)"
                  + ("\n(off the chart: " + "; ".join(off_scale) + ")" if off_scale else ""))
    ax.set_ylabel("expected cost per decision (the tree's costs)")
    ax.set_title(f"Cost-ratio sweep, priced with FP={costs.fp:g}, FN={costs.fn:g}, "
                 f"TP={costs.tp:g}, TN={costs.tn:g}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(args) -> int:
    try:
        result = sweep(args.tree, args.work, parse_ratios(args.ratios), args.jobs,
                       not args.no_tree_ratio, args.timeout or None,
                       cfg.parse_statics(args.static or ()))
    except cfg.ConfigError as exc:
        print(f"costaware sweep: {exc}", file=sys.stderr)
        return 2
    print("ratio FN:FP  threshold  test TP/FP/FN/TN   test cost/decision  validation cost/decision")
    for r in result["rows"]:
        mark = " <- the cost matrix's ratio" if r["tree_ratio"] else ""
        mark += " (cheapest on test)" if r["best_on_test"] else ""
        counts = f"{r['test_tp']}/{r['test_fp']}/{r['test_fn']}/{r['test_tn']}"
        print(f"{r['ratio']:>11.4g}  {r['threshold']:>9.4g}  {counts:>16}  "
              f"{_money(r['test_cost_per_decision']):>18}  "
              f"{_money(r.get('validation_cost_per_decision', float('nan'))):>24}{mark}")
    refs = result["references"]
    print("test references: " + ", ".join(f"{k} {_money(v)}" for k, v in refs.items()))
    print(f"wrote {result['files']['csv']}, {result['files']['png']}")
    return 0


def add_arguments(parser) -> None:
    parser.add_argument("--tree", required=True, help="a prepared /opt/ml-shaped tree with a test "
                        "channel; its costs price every model")
    parser.add_argument("--work", required=True, help="directory for the runs and outputs")
    parser.add_argument("--ratios", default="1,2,5,10,20,50",
                        help="comma-separated FN:FP ratios to train with (default 1,2,5,10,20,50)")
    parser.add_argument("--jobs", type=int, default=None, help="runs in parallel (default: CPUs)")
    parser.add_argument("--no-tree-ratio", action="store_true",
                        help="do not add the tree's own regret ratio")
    parser.add_argument("--static", action="append", metavar="KEY=VALUE",
                        help="override a hyperparameter of the tree for every run")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run (0: none)")
