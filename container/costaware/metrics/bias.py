"""Bias measurement during training: the per-round fairness figures and the combined objective.

The metric definitions themselves are in :mod:`costaware.metrics.clarify` (Clarify's, checked against
smclarify); this module picks the ones a user asked for, turns them into log-friendly numbers and
builds the ``bias`` section of evaluation.json.
"""

from __future__ import annotations

import math

import numpy as np

from . import clarify as fairness
from ..decisions.costs import row_blocks

# the Clarify post-training metrics cheap enough to log every round (all come from counts)
PER_ROUND = ("DPPL", "DI", "DCA", "DCR", "RD", "SD", "DAR", "DRR", "AD", "TE", "CDDPL", "GE")
# ratios are at parity at 1, differences at 0
RATIO_METRICS = {"DI"}


def distance_from_parity(name: str, value: float) -> float:
    """``|value|`` for difference metrics, ``|1 - value|`` for ratios (DI); nan if undefined."""
    if value is None or math.isnan(value):
        return math.nan
    return abs(1.0 - value) if name in RATIO_METRICS else abs(value)


def per_round(names: list[str], facets: np.ndarray, groups: np.ndarray | None) -> dict:
    """``{name.lower(): distance from parity}`` for each requested metric, from the count tables
    of a :class:`costaware.metrics.classification.Summary`."""
    values = fairness.post_training_bias_of(facets, groups, on_error="nan")
    return {name.lower(): distance_from_parity(name, values.get(name, math.nan)) for name in names}


def combined_objective(auc: float, distance: float, auc_weight: float, fairness_weight: float) -> float:
    """``(w_auc * AUC + w_fair * (1 - d)) / (w_auc + w_fair)``, ``d`` a distance from parity
    clipped to [0, 1] (nan if undefined). The default weights 3 and 1 give the case study's
    ``(3 AUC + (1 - |DPPL|)) / 4``."""
    if math.isnan(distance):
        return math.nan
    fair = 1.0 - min(max(distance, 0.0), 1.0)
    return (auc_weight * auc + fairness_weight * fair) / (auc_weight + fairness_weight)


def per_round_with_objective(names: list[str], facets: np.ndarray, groups: np.ndarray | None,
                             auc: float, auc_weight: float, fairness_weight: float) -> dict:
    """:func:`per_round`'s distances and ``combined_objective``, always on ``d = |DPPL|``: its
    meaning does not depend on which metrics ``fairness_metrics`` lists, nor on their order."""
    distances = per_round(names, facets, groups)
    dppl = distances["dppl"] if "dppl" in distances else per_round(["DPPL"], facets, None)["dppl"]
    return {**distances,
            "combined_objective": combined_objective(auc, dppl, auc_weight, fairness_weight)}


def _json_number(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None  # undefined (Clarify's report shows an error)
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"  # JSON has no infinity
    return value


def bias_section(facets: np.ndarray, groups: np.ndarray | None) -> dict:
    """Clarify's pre- and post-training metrics keyed by its names, JSON-safe, from the count
    tables of a :class:`costaware.metrics.classification.Summary`."""
    post = fairness.post_training_bias_of(facets, groups, on_error="none")
    pre = fairness.pre_training_bias_of(facets, groups, on_error="none")
    rows = np.asarray(facets).reshape(2, -1).sum(axis=1)
    section = {
        "facet_rows": {"a": int(round(rows[0])), "d": int(round(rows[1]))},
        "post_training": {k: _json_number(v) for k, v in post.items()},
        "pre_training": {k: _json_number(v) for k, v in pre.items()},
    }
    empty = [f for f, n in zip("ad", rows) if n == 0]
    if empty:
        section["undefined"] = (f"facet {' and '.join(empty)} has no row on this channel: the "
                                "metrics that compare the facets are undefined (null)")
    return section


def collapsed_tables(label: np.ndarray, decision: np.ndarray, sensitive: np.ndarray,
                     favourable: tuple[int, ...], groups: np.ndarray | None = None,
                     n_groups: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """More than two classes, as Clarify reads them: observed and decided classes collapsed to
    favourable (in ``favourable``, the class indices of ``label_values_or_threshold``) or not;
    the count tables of :func:`per_round` and :func:`bias_section` by (facet, label, decision),
    and by (group, facet, label, decision) for rows with a group (code >= 0). Counted a block of
    rows (:func:`~costaware.decisions.costs.row_blocks`) at a time: the per-row temporaries stay
    bounded."""
    label, decision, sensitive = np.asarray(label), np.asarray(decision), np.asarray(sensitive)
    groups = None if groups is None else np.asarray(groups)
    parts = [_collapsed_tables(label[b], decision[b], sensitive[b], favourable,
                               None if groups is None else groups[b], n_groups)
             for b in row_blocks(len(label))]
    facets = np.sum([part[0] for part in parts], axis=0)
    return facets, None if parts[0][1] is None else np.sum([part[1] for part in parts], axis=0)


def _collapsed_tables(label, decision, sensitive, favourable, groups, n_groups):
    y = np.isin(np.asarray(label, dtype=np.int64), favourable).astype(np.int64)
    d = np.isin(np.asarray(decision, dtype=np.int64), favourable).astype(np.int64)
    s = np.asarray(sensitive, dtype=bool).astype(np.int64)
    cell = s * 4 + y * 2 + d
    facets = np.bincount(cell, minlength=8).reshape(2, 2, 2).astype(np.float64)
    table = None
    if groups is not None and n_groups:
        g = np.asarray(groups, dtype=np.int64)
        keep = g >= 0
        table = np.bincount(g[keep] * 8 + cell[keep], minlength=8 * n_groups
                            ).reshape(n_groups, 2, 2, 2).astype(np.float64)
    return facets, table


def per_class_parity(decision: np.ndarray, sensitive: np.ndarray, classes: int,
                     reduce=None) -> list[dict]:
    """For each class ``k``, one-vs-rest: ``DPPL_k = P(decided k | a) - P(decided k | d)`` and
    ``DI_k = P(decided k | d) / P(decided k | a)`` (None where undefined): which class moves,
    which a single collapsed number hides. ``reduce`` sums the count tables over hosts."""
    d = np.asarray(decision, dtype=np.int64)
    s = np.asarray(sensitive, dtype=bool)
    # the rows of each facet decided each class, (2, K), counted a block of rows at a time
    decided = np.sum([np.bincount(s[b].astype(np.int64) * classes + d[b], minlength=2 * classes)
                      for b in row_blocks(len(d))], axis=0).reshape(2, classes)
    facet_rows = decided.sum(axis=1)
    out = []
    for k in range(classes):
        # by (facet, decided k, decided k): DPPL and DI read the decisions alone, so the label
        # cell just copies the decision
        table = np.zeros((2, 2, 2), dtype=np.int64)
        table[:, 1, 1] = decided[:, k]
        table[:, 0, 0] = facet_rows - decided[:, k]
        if reduce is not None:
            table = reduce(table.astype(np.float64).ravel()).reshape(2, 2, 2)
        values = fairness.post_training_bias_of(table, on_error="none")
        out.append({"DPPL": _json_number(values["DPPL"]), "DI": _json_number(values["DI"])})
    return out
