"""What one host computes for a saved model on all the rows, with costaware's public functions.

The multi-host tests (processes here, containers in the image test) compare a distributed job's
evaluation with this: the learned threshold, the score offset and every reported metric must be
equal, not close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from costaware import artifact, bias, fairness
from costaware.costs import CostMatrix, RowCosts, empirical_threshold, sigmoid
from costaware.metrics import evaluate
from costaware.objective import fitted_offset, score_offset

# the metrics a job reports per channel that must equal the recomputation
COMPARED = ("auc", "logloss", "expected_cost", "expected_cost_total", "precision", "recall", "f1",
            "accuracy", "confusion_matrix", "rows")
FAIRNESS = ("dppl", "di", "combined_objective")


@dataclass
class Rows:
    """One channel's rows: features, 0/1 labels, optional cost multiplier and facet-d mask."""

    features: np.ndarray
    label: np.ndarray
    multiplier: np.ndarray | None = None
    sensitive: np.ndarray | None = None


def recompute(model_dir, channels: dict[str, Rows], costs: CostMatrix,
              scaled: tuple[str, ...] = ("fn",)) -> dict:
    """``{"score_offset", "threshold", channel: metrics}`` for a cost-weighted model with a
    validation channel (the threshold learned there, the offset recalibrated there)."""
    model = artifact.load(str(model_dir))

    def row_costs(rows: Rows) -> RowCosts:
        return RowCosts.build(costs, len(rows.label), rows.multiplier, scaled)

    train = channels["train"]
    weight = row_costs(train).sample_weights(train.label)
    # recalibration starts where one host starts it: the cost weights of all train rows
    start = score_offset(train.label, weight / weight.mean())
    margins = {name: model.margin(rows.features.astype(np.float32)) for name, rows in channels.items()}
    offset = fitted_offset(margins["validation"], channels["validation"].label, start)
    scores = {name: sigmoid(m - offset) for name, m in margins.items()}
    validation = channels["validation"]
    threshold = empirical_threshold(scores["validation"], validation.label, row_costs(validation),
                                    prefer=costs.bayes_threshold())[0]
    out = {"score_offset": offset, "threshold": threshold, "scores": scores}
    for name, rows in channels.items():
        metrics = evaluate(rows.label, scores[name], threshold, row_costs(rows))
        if rows.sensitive is not None:
            decision = (scores[name] >= threshold).astype(np.int8)
            metrics["dppl"] = abs(fairness.dppl(decision, rows.sensitive))
            metrics["di"] = abs(1 - fairness.di(decision, rows.sensitive))
            metrics["combined_objective"] = bias.combined_objective(metrics["auc"], metrics["dppl"],
                                                                    3.0, 1.0)
        out[name] = metrics
    return out


def differences(evaluation: dict, expected: dict) -> list[str]:
    """Every reported number that is not exactly the recomputed one (empty: all equal)."""
    found = []
    if evaluation["thresholds"]["chosen"] != expected["threshold"]:
        found.append(f"threshold {evaluation['thresholds']['chosen']!r} != {expected['threshold']!r}")
    for name, reported in evaluation["channels"].items():
        reported = reported["chosen_threshold"]
        keys = COMPARED + (FAIRNESS if "dppl" in expected[name] else ())
        found += [f"{name} {key}: {reported.get(key)!r} != {expected[name][key]!r}"
                  for key in keys if reported.get(key) != expected[name][key]]
    return found
