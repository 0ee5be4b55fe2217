"""Score rows and decide: the one function the server, the batch tools and the benchmarks share.

A request row holds the model's ``request_columns`` (:func:`costaware.artifact.request_columns`):
the features; the facet, when the model's rule decides each facet at its own shift and the facet is
not a feature; then, optionally, the row's own costs for the model's cost columns. A row with its
costs is decided at them; a row without, at the class costs (the model's, or a request's
override). Every row gets its calibrated probability, the decision, both expected costs at its
costs, its probability threshold, which costs decided it and which rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from . import reasons
from .artifact import Model
from .costs import CELLS, RowCosts, check_row_costs
from .fairness import sensitive_facet_index
from .multiclass_policy import MulticlassPolicy
from .policy import Policy

OUTPUT_FIELDS = ("score", "decision", "expected_cost_if_1", "expected_cost_if_0", "threshold",
                 "costs", "rule")
# More than two classes: per class (keyed by class name) the probability and the expected cost of
# deciding it
MULTICLASS_FIELDS = ("decision", "probabilities", "expected_costs", "costs", "rule")
PER_CLASS_FIELDS = ("probabilities", "expected_costs")
# With a request's reasons=K: per row its reasons (a JSON list, null for a row not explained) and
# its Bayes log-odds (the distance from its own decision boundary; null where a decision dominates)
REASON_FIELDS = ("reasons", "boundary_log_odds")
# More than two classes: reasons for the chosen class against the cheapest other decision
# (runner_up, a class label like decision), and how much more that one would cost (cost_gap)
CLASS_REASON_FIELDS = ("reasons", "runner_up", "cost_gap")
RAW_JSON_FIELDS = REASON_FIELDS  # already JSON text per row (a list, or null)
ALL_FIELDS = OUTPUT_FIELDS + PER_CLASS_FIELDS + REASON_FIELDS + CLASS_REASON_FIELDS[1:]
TEXT_FIELDS = ("costs", "rule")  # the others are numbers or class labels (text or integers)
COSTS_OF_ROW = "row"  # the `costs` field of a row decided at its own costs


class RowError(ValueError):
    """A row the model cannot decide (a missing facet, bad cost cells); the message names it."""


@dataclass(frozen=True)
class Layout:
    """Where things are in a request row."""

    names: tuple[str, ...]  # every request column
    features: int  # the first this many are the features
    facet: int | None  # the facet's column, when the rule needs it
    cost_cells: tuple[str, ...]  # the cells of the trailing cost columns

    @property
    def required(self) -> int:
        """Columns every row has (features and facet); the cost columns may be left off."""
        return len(self.names) - len(self.cost_cells)

    @classmethod
    def of(cls, model: Model) -> "Layout":
        names = tuple(model.metadata.get("request_columns") or model.feature_names)
        policy = model.policy
        facet = None
        if policy.needs_facet and policy.facet is not None:
            facet = names.index(policy.facet["column"])
        return cls(names, len(model.feature_names), facet,
                   tuple(cell for cell, _ in policy.cost_columns))


def output_fields(model: Model, reasons: bool = False) -> tuple[str, ...]:
    """The fields a response may carry for this model (all of them by default); ``reasons``:
    with the fields of a request's ``reasons=K``."""
    if isinstance(model.policy, MulticlassPolicy):
        return MULTICLASS_FIELDS + (CLASS_REASON_FIELDS if reasons else ())
    return OUTPUT_FIELDS + (REASON_FIELDS if reasons else ())


def predict(model: Model, rows: np.ndarray, has_costs: np.ndarray | None = None,
            policy: Policy | None = None, costs_source: str = "model",
            where=lambda i: f"row {i + 1}") -> dict:
    """Per row: ``score`` (calibrated probability of class 1), ``decision``, the expected cost of
    deciding 1 and of deciding 0 at the row's costs, the probability ``threshold`` of its decision
    rule, ``costs`` ("row", or ``costs_source`` for the class costs) and ``rule``.

    ``rows``: float64 ``(n, len(layout.names))`` as :class:`Layout` says, NaN = missing; the cost
    columns are read only for rows with ``has_costs``. ``where(i)`` names row ``i`` in errors.
    """
    policy = policy or model.policy
    layout = Layout.of(model)
    sensitive = _sensitive(policy, layout, rows, where)
    if isinstance(policy, MulticlassPolicy):
        return predict_classes(model, rows, policy, costs_source, sensitive)
    n = len(rows)
    features = rows[:, :layout.features]
    own = has_costs if has_costs is not None and has_costs.any() else None
    costs = row_costs(policy, layout, rows, own, where, costs_source)
    p = policy.probability(model.margin(features))
    decision, cost_if_1, cost_if_0 = policy.decide(p, costs, sensitive)
    if own is None:
        source = np.full(n, costs_source, dtype=object)
    else:
        source = np.where(own, COSTS_OF_ROW, costs_source).astype(object)
    return {
        "score": p,
        "decision": decision,
        "expected_cost_if_1": cost_if_1,
        "expected_cost_if_0": cost_if_0,
        "threshold": policy.thresholds(costs, own, sensitive),
        "costs": source,
        "rule": np.full(n, policy.rule.kind, dtype=object),
    }


def _sensitive(policy, layout: Layout, rows: np.ndarray, where) -> np.ndarray | None:
    """Each row's facet-d mask, when the rule decides each facet its own way (else None)."""
    if layout.facet is None:
        return None
    values = rows[:, layout.facet]
    missing = np.isnan(values)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise RowError(f"{where(i)}: the facet '{policy.facet['column']}' is missing; this "
                       "model decides each facet at its own shift and needs it for every row")
    return sensitive_facet_index(values, policy.facet["values_or_threshold"])


def explain(model: Model, rows: np.ndarray, result: dict, k: int, which: str = "1") -> dict:
    """``result`` (:func:`predict`'s, binary) with the fields of :data:`REASON_FIELDS`: each
    chosen row's (``which``: decisions "1", "0" or "all") top ``k`` features by TreeSHAP
    contribution towards its decision (:mod:`costaware.reasons`), each ``{"feature", "value",
    "contribution"}``; the other rows get ``null``. Contributions are computed for the chosen
    rows only."""
    import xgboost as xgb

    if isinstance(model.policy, MulticlassPolicy):
        return _explain_classes(model, rows, result, k)
    n = len(rows)
    decision = result["decision"]
    chosen = np.ones(n, bool) if which == "all" else decision == int(which)
    reasons_text = np.full(n, "null", dtype=object)
    where = np.flatnonzero(chosen)
    features = rows[:, :len(model.feature_names)]
    if len(where):
        data = xgb.DMatrix(features[where], missing=np.nan, feature_names=model.feature_names)
        contributions = model.booster.predict(data, pred_contribs=True)
        signed = reasons.towards_decision(contributions, decision[where])
        for r, (i, top) in enumerate(zip(where.tolist(), reasons.top_reasons(signed, k))):
            reasons_text[i] = _reason_list(model, features[i], signed[r], top)
    policy = model.policy
    z = reasons.boundary_log_odds(policy.calibrator.log_odds(model.margin(features)),
                                  result["threshold"])
    boundary = np.array([repr(float(v)) if np.isfinite(v) else "null" for v in z.tolist()],
                        dtype=object)
    return {**result, "reasons": reasons_text, "boundary_log_odds": boundary}


def _reason_list(model: Model, values: np.ndarray, signed: np.ndarray, top: list[int]) -> str:
    """One row's reasons as JSON: ``{"feature", "value", "contribution"}`` (and the model's
    ``reason_texts`` entry) for each feature index in ``top``."""
    texts = model.metadata.get("reason_texts") or {}
    return json.dumps([{"feature": model.feature_names[j],
                        "value": None if np.isnan(values[j]) else float(values[j]),
                        "contribution": float(signed[j]),
                        **texts.get(model.feature_names[j], {})} for j in top],
                      separators=(",", ":"))


def _explain_classes(model: Model, rows: np.ndarray, result: dict, k: int) -> dict:
    """More than two classes, every row: its reasons for the chosen class ``j`` against the
    cheapest other decision ``r = argmin_{c != j} E[c]`` (``runner_up``), each feature's
    contribution to ``f_j - f_r`` (the log-odds between the two classes, which the calibrator
    scales by ``1 / T > 0``), and ``cost_gap = E[r] - E[j]``, the extra expected cost of deciding
    the runner-up. By the Bayes rule ``j`` is the cheapest, so ``cost_gap >= 0``; where a fairness
    bound moved the decision off the cheapest, ``r`` is the cheapest and ``cost_gap < 0``: what
    the bound costs the row in expectation."""
    import xgboost as xgb

    features = rows[:, :len(model.feature_names)]
    expected = result["expected_costs"]
    chosen = result["decision_index"]  # the served decision (a bounded rule's too)
    others = expected.copy()
    others[np.arange(len(rows)), chosen] = np.inf
    runner = others.argmin(axis=1)
    data = xgb.DMatrix(features, missing=np.nan, feature_names=model.feature_names)
    contributions = model.booster.predict(data, pred_contribs=True)  # (n, K, F + 1)
    at = np.arange(len(rows))
    signed = (contributions[at, chosen, :-1] - contributions[at, runner, :-1]).astype(np.float64)
    reasons_text = np.empty(len(rows), dtype=object)
    for i, top in enumerate(reasons.top_reasons(signed, k)):
        reasons_text[i] = _reason_list(model, features[i], signed[i], top)
    return {**result, "reasons": reasons_text, "runner_up": class_labels(model.policy, runner),
            "cost_gap": expected[at, runner] - expected[at, chosen]}


def class_labels(policy: MulticlassPolicy, index: np.ndarray) -> np.ndarray:
    """The labels of the classes at ``index``, each of its own type (integers, or text), as an
    answer shows a class everywhere (``decision``, ``runner_up``, the policy's ``classes``)."""
    labels = policy.classes
    if all(isinstance(c, int) for c in labels):
        return np.asarray(labels, dtype=np.int64)[index]
    return np.array(labels, dtype=object)[index]


def predict_classes(model: Model, rows: np.ndarray, policy: MulticlassPolicy,
                    costs_source: str = "model", sensitive: np.ndarray | None = None) -> dict:
    """More than two classes: per row the ``decision`` (the class's label, :func:`class_labels`;
    its class's index in ``decision_index``), ``probabilities`` and ``expected_costs`` (``(n, K)``,
    columns in class order; ``class_names`` says which), the ``costs`` it was decided at ("model"
    or "request") and the ``rule``. ``sensitive``: the facet-d mask, for a rule that shifts each
    facet its own way."""
    n = len(rows)
    p = policy.probability(model.margin(rows[:, :len(model.feature_names)]).reshape(n, policy.k))
    index, expected = policy.decide(p, sensitive)
    return {"decision": class_labels(policy, index), "probabilities": p,
            "expected_costs": expected, "costs": np.full(n, costs_source, dtype=object),
            "rule": np.full(n, policy.rule_kind, dtype=object), "class_names": policy.class_names,
            "decision_index": index}


def row_costs(policy: Policy, layout: Layout, rows: np.ndarray, has_costs: np.ndarray | None,
              where, costs_source: str = "model") -> RowCosts:
    """Each row's costs: its cost columns where it has them, the class costs elsewhere; a row's
    own costs are checked (:func:`costaware.costs.check_row_costs`, as in serving), a class cost
    named as the ``costs_source``'s ("model" or "request")."""
    n = len(rows)
    if has_costs is None or not layout.cost_cells:
        return RowCosts.constant(policy.costs, n)
    columns = {}
    for offset, cell in enumerate(layout.cost_cells):
        given = rows[:, layout.required + offset]
        columns[cell] = np.where(has_costs, given, getattr(policy.costs, cell))
    costs = RowCosts.from_columns(policy.costs, n, columns)
    own = np.flatnonzero(has_costs)
    names = {cell: f"cost_{cell} (the {costs_source}'s class cost)" for cell in CELLS}
    for offset, (cell, name) in enumerate(policy.cost_columns):
        names[cell] = f"column {layout.required + offset + 1} ({name})"
    try:
        check_row_costs(costs.subset(own), lambda i: where(int(own[i])), names, training=False)
    except ValueError as exc:  # DataError: one line naming the row and the column
        raise RowError(str(exc)) from None
    return costs
