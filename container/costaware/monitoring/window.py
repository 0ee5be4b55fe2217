"""The monitored figures of a set of decided rows, in Model Monitor's statistics schema plus
costaware's own section; one code path for the baseline and for a monitoring window.

A :class:`Window` takes batches of request rows (the model's ``request_columns``, NaN = missing),
which carry their own costs, and their :class:`~costaware.monitoring.decided_rows.DecidedRows`
(label -1 where no ground truth came); its memory is constant in the number of unlabelled rows
(sums and counts at the baseline's cut points); labelled rows are kept for the figures that need
them. :func:`baseline_statistics` builds the baseline's documents from all rows at once.
"""

from __future__ import annotations

import numpy as np

from .columns import ColumnWindow, column_statistics
from .decided_rows import DecidedRows, UnlabelledSums, labelled_figures
from .model_spec import ModelSpec

SCHEMA_VERSION = 0  # Model Monitor's statistics and constraints "version"
COSTAWARE_VERSION = 1
SIGNIFICANCE = 0.01  # per constraint: the false-alarm rate a check allows under no drift
MINIMUM_DISTANCE = 0.05  # a distribution distance never flagged (very large windows)


def score_columns(spec: ModelSpec, decided: DecidedRows) -> np.ndarray:
    """The monitored scores, ``(n, len(spec.score_names))``: P(1), or every class's P."""
    return decided.probabilities[:, 1:2] if spec.k == 2 else decided.probabilities


def cost_column_indices(spec: ModelSpec) -> list[int]:
    """The request columns that hold a row's own costs (the last ones)."""
    n = len(spec.request_columns)
    return list(range(n - len(spec.policy.cost_columns), n))


def baseline_statistics(spec: ModelSpec, training_columns: list[np.ndarray],
                        decided: DecidedRows, source: str) -> dict:
    """statistics.json of a baseline: every request column (features, facet, per-row costs) from
    ``training_columns`` (each column's values, in ``spec.request_columns`` order; Model
    Monitor's schema), and from the held-out ``decided`` rows the score distributions and
    costaware's figures (:mod:`costaware.monitoring.decided_rows`)."""
    features = [column_statistics(name, values)
                for name, values in zip(spec.request_columns, training_columns, strict=True)]
    scores = score_columns(spec, decided)
    sums = UnlabelledSums(spec.k, spec.favourable)
    sums.add(decided)
    labelled = None
    if decided.label is not None:  # (every row labelled, as after training: no copy of them)
        has_label = decided.label >= 0
        labelled = decided if has_label.all() else decided.take(has_label)
    return {
        "version": SCHEMA_VERSION,
        "dataset": {"item_count": int(len(training_columns[0]))},
        "features": features,
        "costaware": {
            "version": COSTAWARE_VERSION,
            "source": source,
            "scored_rows": len(decided),
            "scores": [column_statistics(name, scores[:, j])
                       for j, name in enumerate(spec.score_names)],
            "unlabelled": sums.figures(),
            "labelled": labelled_figures(labelled) if labelled is not None else {"rows": 0},
        },
    }


def baseline_constraints(spec: ModelSpec, statistics: dict, significance: float = SIGNIFICANCE,
                         minimum_distance: float = MINIMUM_DISTANCE) -> dict:
    """constraints.json of a baseline: Model Monitor's per-feature constraints and monitoring
    configuration, and costaware's (the model's spec, the significance of every check)."""
    features = []
    costs = set(cost_column_indices(spec))
    for j, entry in enumerate(statistics["features"]):
        common = entry["numerical_statistics"]["common"]
        n = common["num_present"] + common["num_missing"]
        low = entry["numerical_statistics"].get("min")
        features.append({
            "name": entry["name"], "inferred_type": entry["inferred_type"],
            "completeness": common["num_present"] / n if n else 0.0,
            "num_constraints": {"is_non_negative": low is not None and low >= 0},
            "costaware": {"role": "feature" if j < spec.feature_count
                          else "cost" if j in costs else "facet"},
        })
    return {
        "version": SCHEMA_VERSION,
        "features": features,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 0.1,
            "domain_content_threshold": 0.1,
            "distribution_constraints": {"perform_comparison": "Enabled",
                                         "comparison_threshold": minimum_distance,
                                         "comparison_method": "Robust"},
        },
        "costaware": {"version": COSTAWARE_VERSION, "significance": significance,
                      "model": spec.to_dict()},
    }


class Window:
    """A monitoring window's figures, accumulated batch by batch against a baseline."""

    def __init__(self, baseline: dict, spec: ModelSpec):
        self.spec = spec
        self.costs_at = set(cost_column_indices(spec))
        self.columns = [ColumnWindow(e) for e in baseline["features"]]
        self.scores = [ColumnWindow(e) for e in baseline["costaware"]["scores"]]
        self.sums = UnlabelledSums(spec.k, spec.favourable)
        self.labelled: list[DecidedRows] = []
        self.rows = 0
        self.rows_with_costs = 0

    def add(self, rows: np.ndarray, has_costs: np.ndarray | None, decided: DecidedRows) -> None:
        """A batch: request rows (``(n, len(request_columns))``), which carry their own costs
        (None: none), and their decided rows (``label`` -1 where unknown)."""
        self.rows += len(rows)
        own = np.zeros(len(rows), dtype=bool) if has_costs is None else has_costs
        self.rows_with_costs += int(own.sum())
        for j, column in enumerate(self.columns):
            column.add(rows[own, j] if j in self.costs_at else rows[:, j])
        scores = score_columns(self.spec, decided)
        for j, column in enumerate(self.scores):
            column.add(scores[:, j])
        self.sums.add(decided)
        if decided.label is not None:
            known = decided.label >= 0
            if known.any():
                self.labelled.append(decided.take(known))

    def statistics(self, counts: dict) -> dict:
        """statistics.json of the window; ``counts``: what the reader counted (records, bad
        lines, labels matched ...), reported as they are."""
        labelled = DecidedRows.concat(self.labelled, self.spec.k, self.spec.favourable)
        return {
            "version": SCHEMA_VERSION,
            "dataset": {"item_count": self.rows},
            "features": [c.statistics() for c in self.columns],
            "costaware": {
                "version": COSTAWARE_VERSION,
                "counts": {**counts, "rows": self.rows, "rows_with_own_costs": self.rows_with_costs},
                "scores": [c.statistics() for c in self.scores],
                "unlabelled": self.sums.figures(),
                "labelled": labelled_figures(labelled),
            },
        }
