"""What one host computes for a saved model on all the rows, with costaware's public functions.

The multi-host tests (processes here, containers in the image test) compare a distributed job's
evaluation with this. Counts (confusion cells, rows) must be equal; every float (calibrator,
costs, log loss, AUC, savings, ...) equal to ``RTOL`` relative: the hosts add partial sums where
one host adds all rows at once, so sums may differ in their last bits, and the calibrator's Newton
steps stop within 1e-10 of the optimum. (The AUC is exact, from every host's scores gathered;
the decision rule's shift comes from the same histograms either way.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from costaware.model import artifact
from costaware.metrics import bias
from costaware.decisions.calibrator_choice import ISOTONIC_MIN_ROWS, TWO_CLASS_CANDIDATES, choose
from costaware.decisions.costs import CostMatrix, RowCosts, bayes_decision
from costaware.decisions.rules import ShiftHistogram
from costaware.metrics.classification import channel_metrics, exact_auc, summarize
from costaware.training.channels import folds_of
from costaware.training.pipeline import CALIBRATOR_FOLDS

RTOL = 1e-8
# A fold average's train metrics are read from the fold models' own margins (their mean, in
# float64; pipeline.fit_margins) where the saved model sums the same leaves / k in float32: the
# two agree to about 1e-7 of a margin, so its train channel is compared at this tolerance
FOLD_MEAN_RTOL = 1e-6
COUNTS = ("confusion_matrix", "rows", "positives")
FLOATS = ("auc", "logloss", "brier", "ece", "expected_cost", "expected_cost_total", "savings",
          "precision", "recall", "f1", "accuracy")
FAIRNESS = ("dppl", "di", "combined_objective")


@dataclass
class Rows:
    """One channel's rows: features, 0/1 labels, per-row costs, optional facet-d mask."""

    features: np.ndarray
    label: np.ndarray
    costs: RowCosts
    sensitive: np.ndarray | None = None


def row_costs(costs: CostMatrix, n: int, columns: dict | None = None) -> RowCosts:
    return RowCosts.from_columns(costs, n, columns or {})


def recompute(model_dir, channels: dict[str, Rows], calibrate_on: str | None = "validation"
              ) -> dict:
    """``{"calibrator", "rule", channel: metrics}``. ``calibrate_on``: the channel whose margins
    calibrated the model (calibration_data 'validation'); None to use the saved calibrator (the
    cross-fitted one, whose fold models are not saved)."""
    model = artifact.load(str(model_dir))
    margins = {name: model.margin(rows.features.astype(np.float32)) for name, rows in channels.items()}
    calibrator = model.policy.calibrator
    if calibrate_on is not None:  # the calibrator's choice, as one host makes it on every row
        label = channels[calibrate_on].label
        seed = int(model.metadata["hyperparameters"].get("seed", 0))
        candidates = [c for c in TWO_CLASS_CANDIDATES
                      if c.name != "isotonic" or len(label) >= ISOTONIC_MIN_ROWS]
        costs = channels[calibrate_on].costs

        def row_cost(p, rows):  # the Bayes decision's realised cost at each row's costs
            return costs.subset(rows).realised(label[rows], bayes_decision(p, costs.subset(rows))[0])

        calibrator = choose(candidates, margins[calibrate_on], label,
                            folds_of(label, CALIBRATOR_FOLDS, seed), CALIBRATOR_FOLDS,
                            row_cost, float(max(r.max() for r in costs.regrets()))).calibrator
    p = {name: calibrator.probability(m) for name, m in margins.items()}
    rule = model.policy.rule
    if calibrate_on is not None and rule.kind == "empirical":
        held = channels[calibrate_on]
        rule = ShiftHistogram.of(p[calibrate_on], held.label, held.costs).empirical()
    out = {"calibrator": calibrator, "rule": rule}
    for name, rows in channels.items():
        decision, _, _ = rule.decide(p[name], rows.costs, rows.sensitive)
        summary = summarize(rows.label, p[name], decision, rows.costs, rows.sensitive)
        metrics = channel_metrics(summary, exact_auc(rows.label, p[name]))
        if rows.sensitive is not None:
            metrics.update(bias.per_round_with_objective(["DPPL", "DI"], summary.facets, None,
                                                         metrics["auc"], 3.0, 1.0))
        out[name] = metrics
    return out


def _close(a, b, rtol: float = RTOL) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12)


def differences(evaluation: dict, expected: dict, channels=None) -> list[str]:
    """Every reported number that is not the recomputed one (empty: all agree); a fold
    average's train channel to :data:`FOLD_MEAN_RTOL`."""
    found = []
    policy = evaluation["policy"]
    ours, theirs = policy["calibrator"], expected["calibrator"].to_dict()
    if ours["method"] != theirs["method"]:
        found.append(f"calibrator {ours['method']} != {theirs['method']}")
    keys = {"platt": ("slope", "intercept"), "isotonic": ("knot_margins", "knot_log_odds"),
            "identity": ()}[theirs["method"]]
    for key in keys if ours["method"] == theirs["method"] else ():
        mine, value = np.atleast_1d(ours[key]), np.atleast_1d(theirs[key])
        if len(mine) != len(value) or not all(_close(float(a), float(b))
                                              for a, b in zip(mine, value)):
            found.append(f"calibrator {key} {ours[key]!r} != {theirs[key]!r}")
    rule = expected["rule"].to_dict()
    if policy["rule"] != rule:
        found.append(f"rule {policy['rule']!r} != {rule!r}")
    for name, reported in evaluation["channels"].items():
        if channels is not None and name not in channels:
            continue
        served = reported["served"]
        for key in COUNTS:
            if served.get(key) != expected[name][key]:
                found.append(f"{name} {key}: {served.get(key)!r} != {expected[name][key]!r}")
        keys = FLOATS + (FAIRNESS if "dppl" in expected[name] else ())
        rtol = (FOLD_MEAN_RTOL if name == "train" and evaluation.get("served_model") ==
                "fold_average" else RTOL)
        found += [f"{name} {key}: {served.get(key)!r} != {expected[name][key]!r}"
                  for key in keys if not _close(served.get(key), expected[name][key], rtol)]
    return found
