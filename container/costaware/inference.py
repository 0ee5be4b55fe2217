"""Score rows and decide: the one function training's tools and the server share."""

from __future__ import annotations

import numpy as np

from .artifact import Model
from .costs import DecisionPolicy

OUTPUT_FIELDS = ("score", "decision", "expected_cost_if_1", "expected_cost_if_0", "threshold")


def predict(model: Model, features: np.ndarray, policy: DecisionPolicy | None = None) -> dict:
    """Per row: ``score`` (probability of class 1), ``decision`` (``score >= threshold``), the
    expected cost of deciding 1 and of deciding 0, and the threshold used."""
    policy = policy or model.policy
    score = policy.score(model.margin(features))
    cost_if_1, cost_if_0 = policy.expected_costs(score)
    return {
        "score": score,
        "decision": policy.decide(score),
        "expected_cost_if_1": cost_if_1,
        "expected_cost_if_0": cost_if_0,
        "threshold": np.full(len(score), policy.threshold),
    }
