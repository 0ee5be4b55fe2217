"""Score rows and decide: the one function the server, the batch tools and the benchmarks share.

A request row holds the model's ``request_columns`` (:func:`costaware.model.artifact.request_columns`):
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

from ..decisions import reasons
from .artifact import Model
from ..decisions.costs import CELLS, RowCosts, bad_cost, check_row_costs
from ..metrics.clarify import sensitive_facet_index
from ..decisions.multiclass_policy import MulticlassPolicy
from ..decisions.policy import Policy

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
    if model.policy.k == 2:
        return OUTPUT_FIELDS + (REASON_FIELDS if reasons else ())
    return MULTICLASS_FIELDS + (CLASS_REASON_FIELDS if reasons else ())


def predict(model: Model, rows: np.ndarray, has_costs: np.ndarray | None = None,
            policy=None, costs_source: str = "model", where=lambda i: f"row {i + 1}",
            margins: np.ndarray | None = None) -> dict:
    """Score and decide rows, for any number of classes: the calibrated probabilities, each row's
    decision with the least expected cost at its costs (under the policy's rule), those expected
    costs, the ``costs`` it was decided at ("row", or ``costs_source`` for the class costs) and
    the ``rule``. Two classes (:func:`_two_classes`): ``score``, ``decision``,
    ``expected_cost_if_1``, ``expected_cost_if_0``, ``threshold``; more (:func:`_classes`):
    ``decision`` (a class label), ``probabilities`` and ``expected_costs`` ``(n, K)``.

    ``rows``: float64 ``(n, len(layout.names))`` as :class:`Layout` says, NaN = missing; the cost
    columns are read only for rows with ``has_costs``. ``policy``: the model's, or a request's
    override (:meth:`~costaware.decisions.policy.Policy.with_costs`). ``where(i)`` names row ``i`` in errors.
    ``margins``: the rows' :meth:`~costaware.model.artifact.Model.margin`, when the caller has
    them already (a server predicting several requests' rows in one call: serving/invocation.py).
    """
    policy = policy or model.policy
    layout = Layout.of(model)
    sensitive = _sensitive(policy, layout, rows, where)
    own = has_costs if has_costs is not None and has_costs.any() else None
    costs = row_costs(policy, layout, rows, own, where, costs_source)
    if margins is None:
        margins = model.margin(rows[:, :layout.features])
    p = policy.probability(margins)
    n = len(rows)
    if own is None:
        source = word_column(n, costs_source)
    else:
        source = np.where(own, COSTS_OF_ROW, costs_source).astype(object)
    decided = _two_classes if policy.k == 2 else _classes
    return {**decided(policy, p, costs, own, sensitive), "costs": source,
            "rule": word_column(n, policy.rule_kind)}


def word_column(n: int, word: str) -> np.ndarray:
    """An object array of ``n`` times ``word`` (the same ``str`` object in every slot):
    ``np.full(n, word, dtype=object)`` would make a new ``str`` per slot, 1.2 ms for 30k rows."""
    column = np.empty(n, dtype=object)
    column.fill(word)
    return column


def _two_classes(policy: Policy, p: np.ndarray, costs: RowCosts, own: np.ndarray | None,
                 sensitive: np.ndarray | None) -> dict:
    """Two classes: ``score`` (``P(y = 1)``), the decision, the expected cost of deciding 1 and
    of deciding 0, and the probability ``threshold`` of the row's rule."""
    decision, cost_if_1, cost_if_0 = policy.decide(p, costs, sensitive)
    return {"score": p, "decision": decision, "expected_cost_if_1": cost_if_1,
            "expected_cost_if_0": cost_if_0,
            "threshold": policy.thresholds(costs, own, sensitive)}


def _classes(policy: MulticlassPolicy, p: np.ndarray, costs, own: np.ndarray | None,
             sensitive: np.ndarray | None) -> dict:
    """More than two classes: the ``decision`` (the class's label, :func:`class_labels`; its
    index in ``decision_index``), ``probabilities`` and ``expected_costs`` (``(n, K)``, columns in
    class order; ``class_names`` says which)."""
    index, expected = policy.decide(p, sensitive, costs)
    return {"decision": class_labels(policy, index), "probabilities": p,
            "expected_costs": expected, "class_names": policy.class_names,
            "decision_index": index}


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
    """``result`` (:func:`predict`'s) with each explained row's top ``k`` features by TreeSHAP
    contribution (:mod:`costaware.decisions.reasons`), each ``{"feature", "value", "contribution"}``, for
    any number of classes: a feature's contribution to ``f_j - f_r``, the margin of the row's
    decision ``j`` over the runner-up decision ``r`` (the log-odds between the two classes). Two
    classes are the K-class case with the margin ``f_1`` and ``f_0 = 0`` (scikit-learn's reshape):
    the runner-up is the other decision, so a contribution counts towards 1 for a decision 1 and
    towards 0 for a decision 0. Two classes explain the rows whose decision ``which`` names ("1",
    "0" or "all"; the others get ``null``) and add ``boundary_log_odds``
    (:func:`_boundary`); more explain every row and add ``runner_up`` and ``cost_gap``
    (:func:`_runner_up`). Contributions are computed for the explained rows only."""
    policy = model.policy
    n = len(rows)
    features = rows[:, :len(model.feature_names)]
    if policy.k == 2:
        chosen = result["decision"].astype(np.int64)
        runner = 1 - chosen
        explained = np.ones(n, bool) if which == "all" else chosen == int(which)
        extra = _boundary(model, features, result)
    else:
        chosen = result["decision_index"]  # the served decision (a bounded rule's too)
        runner, extra = _runner_up(policy, result)
        explained = np.ones(n, bool)
    reasons_text = word_column(n, "null")
    where = np.flatnonzero(explained)
    if len(where):
        signed = reasons.towards_decision(_class_contributions(model, features[where], policy.k),
                                          chosen[where], runner[where])
        for r, (i, top) in enumerate(zip(where.tolist(), reasons.top_reasons(signed, k))):
            reasons_text[i] = _reason_list(model, features[i], signed[r], top)
    return {**result, "reasons": reasons_text, **extra}


def _class_contributions(model: Model, features: np.ndarray, k: int) -> np.ndarray:
    """TreeSHAP contributions ``(n, K, F + 1)`` (bias last) to each class's margin; two classes
    as ``f_0 = 0`` (zeros) and ``f_1`` the booster's one margin."""
    import xgboost as xgb

    # the DMatrix on the model's threads too (a serving worker's: one): built on all of them,
    # XGBoost's default, their OpenMP threads spin after the build on the cores the prediction
    # and the other workers need (benchmarks/bench_reasons.py: a single row with reasons took
    # 10.8x a plain one, 1.84x with OMP_NUM_THREADS=1)
    data = xgb.DMatrix(features, missing=np.nan, feature_names=model.feature_names,
                       nthread=model.nthread)
    contributions = model.booster.predict(data, pred_contribs=True)
    if k == 2:
        return np.stack([np.zeros_like(contributions), contributions], axis=1)
    return contributions


def _boundary(model: Model, features: np.ndarray, result: dict) -> dict:
    """Two classes: each row's Bayes log-odds from its own threshold (JSON text, ``null`` where a
    decision dominates)."""
    z = reasons.boundary_log_odds(model.policy.calibrator.log_odds(model.margin(features)),
                                  result["threshold"])
    return {"boundary_log_odds": np.array([repr(float(v)) if np.isfinite(v) else "null"
                                           for v in z.tolist()], dtype=object)}


def _runner_up(policy: MulticlassPolicy, result: dict) -> tuple[np.ndarray, dict]:
    """More than two classes: the cheapest other decision ``r = argmin_{c != j} E[c]`` of each
    row decided ``j`` and ``cost_gap = E[r] - E[j]``, the extra expected cost of deciding the
    runner-up. By the Bayes rule ``j`` is the cheapest, so ``cost_gap >= 0``; where a fairness
    bound moved the decision off the cheapest, ``r`` is the cheapest and ``cost_gap < 0``: what
    the bound costs the row in expectation."""
    expected = result["expected_costs"]
    chosen = result["decision_index"]
    at = np.arange(len(expected))
    others = expected.copy()
    others[at, chosen] = np.inf
    runner = others.argmin(axis=1)
    return runner, {"runner_up": class_labels(policy, runner),
                    "cost_gap": expected[at, runner] - expected[at, chosen]}


def _reason_list(model: Model, values: np.ndarray, signed: np.ndarray, top: list[int]) -> str:
    """One row's reasons as JSON: ``{"feature", "value", "contribution"}`` (and the model's
    ``reason_texts`` entry) for each feature index in ``top``."""
    texts = model.metadata.get("reason_texts") or {}
    return json.dumps([{"feature": model.feature_names[j],
                        "value": None if np.isnan(values[j]) else float(values[j]),
                        "contribution": float(signed[j]),
                        **texts.get(model.feature_names[j], {})} for j in top],
                      separators=(",", ":"))


def class_labels(policy: MulticlassPolicy, index: np.ndarray) -> np.ndarray:
    """The labels of the classes at ``index``, each of its own type (integers, or text), as an
    answer shows a class everywhere (``decision``, ``runner_up``, the policy's ``classes``)."""
    labels = policy.classes
    if all(isinstance(c, int) for c in labels):
        return np.asarray(labels, dtype=np.int64)[index]
    return np.array(labels, dtype=object)[index]


def row_costs(policy, layout: Layout, rows: np.ndarray, has_costs: np.ndarray | None,
              where, costs_source: str = "model"):
    """Each row's costs: its cost columns where it has them, the class costs elsewhere; a row's
    own costs are checked as training checks them, a class cost named as the ``costs_source``'s
    ("model" or "request"). Two classes: :class:`~costaware.decisions.costs.RowCosts`
    (:func:`costaware.decisions.costs.check_row_costs`); more: the per-row cells
    (``(true, decided)`` -> costs, each a number >= 0) that
    :meth:`~costaware.decisions.multiclass_policy.MulticlassPolicy.decide` takes, or ``None``."""
    n = len(rows)
    if has_costs is None or not layout.cost_cells:
        return RowCosts.constant(policy.costs, n) if policy.k == 2 else None
    columns = {}
    for offset, cell in enumerate(layout.cost_cells):
        given = rows[:, layout.required + offset]
        columns[cell] = np.where(has_costs, given, _class_cost(policy, cell))
    own = np.flatnonzero(has_costs)
    names = {cell: f"column {layout.required + offset + 1} ({name})"
             for offset, (cell, name) in enumerate(policy.cost_columns)}
    if policy.k > 2:
        _check_cells(columns, own, names, where)
        return columns
    costs = RowCosts.from_columns(policy.costs, n, columns)
    names.update({cell: f"cost_{cell} (the {costs_source}'s class cost)" for cell in CELLS
                  if cell not in names})
    try:
        check_row_costs(costs.subset(own), lambda i: where(int(own[i])), names, training=False)
    except ValueError as exc:  # DataError: one line naming the row and the column
        raise RowError(str(exc)) from None
    return costs


def _class_cost(policy, cell) -> float:
    """The class cost of a cell: ``"fp"`` ... for two classes, ``(true, decided)`` for more."""
    return getattr(policy.costs, cell) if policy.k == 2 else policy.costs[cell]


def _check_cells(columns: dict, own: np.ndarray, names: dict, where) -> None:
    """More than two classes: each of a row's own cost cells a finite number >= 0."""
    for cell, values in columns.items():
        bad = bad_cost(values[own])
        if bad is not None:
            raise RowError(f"{where(int(own[bad[0]]))}, {names[cell]}: {bad[1]}; costs must be "
                           "numbers >= 0")
