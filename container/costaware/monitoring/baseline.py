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
    """A data set's rows as requests hold them (:func:`request_columns` side by side, float64),
    and which rows carry their own costs."""
    columns = request_columns(spec, data)
    rows = np.empty((data.rows, len(columns)), dtype=np.float64)
    for j, values in enumerate(columns):
        rows[:, j] = values
    has_costs = np.ones(len(rows), dtype=bool) if spec.policy.cost_columns else None
    return rows, has_costs


def request_columns(spec: ModelSpec, data: Dataset) -> list[np.ndarray]:
    """A data set's columns as requests hold them (``spec.request_columns``): the features (views
    of ``data.features``, as they are stored), the facet when requests carry it and it is not a
    feature, each row's own costs. One column at a time, float64, is all the statistics need:
    the rows side by side in float64 took 320 MiB more for 2M rows of 20 features
    (``bench_training.py --memory``)."""
    columns = [data.features[:, j] for j in range(data.features.shape[1])]
    cost_names = {name: cell for cell, name in spec.policy.cost_columns}
    for name in spec.request_columns[spec.feature_count:]:
        if name in cost_names:
            cell = cost_names[name]
            values = (getattr(data.costs, cell) if spec.k == 2 else data.cell_costs[cell])
        else:  # the facet
            values = _numbers(data.facet, name)
        columns.append(np.asarray(values, dtype=np.float64).reshape(-1))
    return columns


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
    rows, has_costs = request_rows(spec, scored)
    decided = spec.decide(probabilities, rows, has_costs, scored.label, facet_of(spec, scored))
    del rows  # (freed before the train rows' statistics, which read one column at a time)
    statistics = baseline_statistics(spec, request_columns(spec, training), decided, source)
    return statistics, baseline_constraints(spec, statistics, significance)
