"""Bias measurement during training: the per-round fairness figures and the combined objective.

The metric definitions themselves are in :mod:`costaware.fairness` (Clarify's, checked against
smclarify); this module picks the ones a user asked for, turns them into log-friendly numbers and
builds the ``bias`` section of evaluation.json.
"""

from __future__ import annotations

import math

import numpy as np

from . import fairness

# name -> function of (y, yhat, sensitive, group), for the metrics cheap enough to log every round
PER_ROUND = {
    "DPPL": lambda y, yhat, s, g: fairness.dppl(yhat, s),
    "DI": lambda y, yhat, s, g: fairness.di(yhat, s),
    "DCA": lambda y, yhat, s, g: fairness.dca(y, yhat, s),
    "DCR": lambda y, yhat, s, g: fairness.dcr(y, yhat, s),
    "RD": lambda y, yhat, s, g: fairness.rd(y, yhat, s),
    "SD": lambda y, yhat, s, g: fairness.sd(y, yhat, s),
    "DAR": lambda y, yhat, s, g: fairness.dar(y, yhat, s),
    "DRR": lambda y, yhat, s, g: fairness.drr(y, yhat, s),
    "AD": lambda y, yhat, s, g: fairness.ad(y, yhat, s),
    "TE": lambda y, yhat, s, g: fairness.te(y, yhat, s),
    "CDDPL": lambda y, yhat, s, g: fairness.cddpl(yhat, s, g),
    "GE": lambda y, yhat, s, g: fairness.ge(y, yhat),
}
# ratios are at parity at 1, differences at 0
RATIO_METRICS = {"DI"}


def distance_from_parity(name: str, value: float) -> float:
    """``|value|`` for difference metrics, ``|1 - value|`` for ratios (DI); nan if undefined."""
    if value is None or math.isnan(value):
        return math.nan
    return abs(1.0 - value) if name in RATIO_METRICS else abs(value)


def per_round(names: list[str], y: np.ndarray, yhat: np.ndarray, sensitive: np.ndarray,
              group: np.ndarray | None) -> dict:
    """``{name.lower(): distance from parity}`` for each requested metric."""
    out = {}
    for name in names:
        try:
            value = float(PER_ROUND[name](y, yhat, sensitive, group))
        except fairness.UndefinedMetricError:
            value = math.nan
        out[name.lower()] = distance_from_parity(name, value)
    return out


def combined_objective(auc: float, distance: float, auc_weight: float, fairness_weight: float) -> float:
    """``(w_auc * AUC + w_fair * (1 - d)) / (w_auc + w_fair)``, ``d`` a distance from parity
    clipped to [0, 1]. The default weights 3 and 1 give the case study's ``(3 AUC + (1 - |DPPL|)) / 4``."""
    fair = 1.0 - min(max(distance, 0.0), 1.0)
    return (auc_weight * auc + fairness_weight * fair) / (auc_weight + fairness_weight)


def _json_number(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None  # undefined (Clarify's report shows an error)
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"  # JSON has no infinity
    return value


def bias_section(y: np.ndarray, yhat: np.ndarray, sensitive: np.ndarray,
                 group: np.ndarray | None) -> dict:
    """Clarify's pre- and post-training metrics keyed by its names, JSON-safe."""
    post = fairness.post_training_bias(y, yhat, sensitive, group, on_error="none")
    pre = fairness.pre_training_bias(y, sensitive, group, on_error="none")
    return {
        "facet_rows": {"a": int((~sensitive).sum()), "d": int(sensitive.sum())},
        "post_training": {k: _json_number(v) for k, v in post.items()},
        "pre_training": {k: _json_number(v) for k, v in pre.items()},
    }
