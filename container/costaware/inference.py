"""Score rows and decide: the one function training's tools and the server share."""

from __future__ import annotations

import numpy as np

from .artifact import Model
from .costs import DecisionPolicy
from .fairness import sensitive_facet_index

OUTPUT_FIELDS = ("score", "decision", "expected_cost_if_1", "expected_cost_if_0", "threshold")


def predict(model: Model, features: np.ndarray, policy: DecisionPolicy | None = None,
            sensitive: np.ndarray | None = None) -> dict:
    """Per row: ``score`` (probability of class 1), ``decision`` (``score >= threshold``), the
    expected cost of deciding 1 and of deciding 0 (the decision is the cheaper one: see
    :meth:`DecisionPolicy.decision_probability`), and the threshold used. ``sensitive`` (facet d
    membership) is needed only by a policy with group-specific thresholds."""
    policy = policy or model.policy
    score = policy.score(model.margin(features))
    threshold = policy.thresholds_for(sensitive, len(score))
    cost_if_1, cost_if_0 = policy.expected_costs(score, threshold)
    return {
        "score": score,
        "decision": (score >= threshold).astype(np.int8),
        "expected_cost_if_1": cost_if_1,
        "expected_cost_if_0": cost_if_0,
        "threshold": threshold,
    }


def facet_input(model: Model) -> tuple[list[str], int | None, bool]:
    """What a request must carry: ``(column names, facet column index or None, facet is extra)``.

    A model with group-specific thresholds decides each row by its facet. If the facet was a feature
    it is already among the columns; otherwise requests carry it as one more column, last.
    """
    facet = model.policy.facet
    if model.policy.group_thresholds is None or facet is None:
        return list(model.feature_names), None, False
    if facet["column"] in model.feature_names:
        return list(model.feature_names), model.feature_names.index(facet["column"]), False
    return [*model.feature_names, facet["column"]], len(model.feature_names), True


def split_facet(model: Model, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(features, sensitive mask or None)`` from rows laid out as :func:`facet_input` says."""
    _, index, extra = facet_input(model)
    if index is None:
        return rows, None
    values = rows[:, index]
    if np.isnan(values).any():
        row = int(np.flatnonzero(np.isnan(values))[0]) + 1
        raise ValueError(f"row {row}: the facet '{model.policy.facet['column']}' is missing; this "
                         "model uses group-specific thresholds and needs it for every row")
    sensitive = sensitive_facet_index(values, model.policy.facet["values_or_threshold"])
    return (rows[:, :index] if extra else rows), sensitive
