"""A model's monitoring baseline: Model Monitor's statistics.json and constraints.json, with
costaware's own sections, from a data set's rows (no files read or written here).

Every request column's statistics come from the training rows; the scores, costs, calibration,
savings and bias come from rows the model did not fit on (the rows a user supplies to
``suggest-baseline``; after training, the test channel when it has rows, else the held-out rows
with their out-of-fold or validation probabilities).
"""

from __future__ import annotations

import numpy as np

from ..data.channel_files import Dataset
from ..model.artifact import CONSTRAINTS_FILE, STATISTICS_FILE  # noqa: F401 (the layout's owner)
from ..metrics.clarify import sensitive_facet_index
from .model_spec import ModelSpec
from .window import SIGNIFICANCE, baseline_constraints, baseline_statistics


def request_rows(spec: ModelSpec, data: Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """A data set's rows as requests hold them (``spec.request_columns``): the features, the
    facet when requests carry it and it is not a feature, each row's own costs."""
    columns = [np.asarray(data.features, dtype=np.float64)]
    extra = spec.request_columns[spec.feature_count:]
    cost_names = {name: cell for cell, name in spec.policy.cost_columns}
    for name in extra:
        if name in cost_names:
            cell = cost_names[name]
            values = (getattr(data.costs, cell) if spec.k == 2 else data.cell_costs[cell])
        else:  # the facet
            values = _numbers(data.facet, name)
        columns.append(np.asarray(values, dtype=np.float64).reshape(-1, 1))
    rows = np.hstack(columns) if len(columns) > 1 else columns[0]
    has_costs = np.ones(len(rows), dtype=bool) if cost_names else None
    return rows, has_costs


def _numbers(values, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"the facet column '{name}' holds text; requests carry it as a "
                         "number") from None


def facet_of(spec: ModelSpec, data: Dataset) -> np.ndarray | None:
    """Each row's facet-d mask from the data set's own facet column (also when requests do not
    carry it)."""
    if not spec.facet_column or data.facet is None:
        return None
    return np.asarray(sensitive_facet_index(data.facet, spec.facet_values), dtype=bool)


def documents(spec: ModelSpec, training: Dataset, scored: Dataset, probabilities: np.ndarray,
              source: str, significance: float = SIGNIFICANCE) -> tuple[dict, dict]:
    """``(statistics.json, constraints.json)`` of a baseline: ``training``'s request columns, and
    ``scored``'s rows decided at ``probabilities`` (calibrated: ``P(1)``, or ``(n, K)``)."""
    training_rows, _ = request_rows(spec, training)
    rows, has_costs = request_rows(spec, scored)
    decided = spec.decide(probabilities, rows, has_costs, scored.label, facet_of(spec, scored))
    statistics = baseline_statistics(spec, training_rows, decided, source)
    return statistics, baseline_constraints(spec, statistics, significance)
