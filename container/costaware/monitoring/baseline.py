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
from ..decisions.costs import row_blocks
from ..metrics.clarify import sensitive_facet_index
from .decided_rows import DecidedRows
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
    decided = decided_rows(spec, scored, probabilities)
    statistics = baseline_statistics(spec, request_columns(spec, training), decided, source)
    return statistics, baseline_constraints(spec, statistics, significance)


def decided_rows(spec: ModelSpec, scored: Dataset, probabilities: np.ndarray) -> DecidedRows:
    """``scored``'s rows decided at ``probabilities`` as the served model decides requests,
    :func:`~costaware.decisions.costs.row_blocks` at a time, into arrays of every row: the request
    rows side by side in float64 are 8 bytes a value (352 MiB for 2.2M held-out rows of 20
    features, the peak of a job's memory, ``bench_training.py --memory``), a block of them
    42 MiB; and the blocks' results are not held twice (as a list and joined)."""
    whole = None
    for block in row_blocks(scored.rows):
        part = scored.take(block)
        rows, has_costs = request_rows(spec, part)
        decided = spec.decide(probabilities[block], rows, has_costs, part.label,
                              facet_of(spec, part))
        if whole is None:
            if block.stop >= scored.rows:
                return decided
            whole = DecidedRows(*(None if values is None else
                                  np.empty((scored.rows,) + values.shape[1:], values.dtype)
                                  for values in (decided.probabilities, decided.decision,
                                                 decided.costs, decided.label,
                                                 decided.sensitive)),
                                decided.favourable)
        for name in ("probabilities", "decision", "costs", "label", "sensitive"):
            if getattr(whole, name) is not None:
                getattr(whole, name)[block] = getattr(decided, name)
    return whole
