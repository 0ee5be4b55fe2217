"""The decision policy of a model with more than two classes: margins -> calibrated class
probabilities -> the decision with the least expected cost (:mod:`costaware.decisions.multiclass`).

Saved in ``metadata.json`` as ``{"kind": "multiclass", "classes": [...], "cost_matrix": [[...]],
"calibrator": {...}}``. A request may override the cost matrix (:meth:`with_costs`): the
probabilities stay, the decisions follow the new costs. The interface serving uses is
:class:`costaware.decisions.policy.Policy`'s (``k``, ``costs``, ``with_costs``, ``rule_kind``, ``summary``,
``cost_attributes``), so no caller asks how many classes a model has.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .costs import row_blocks
from .multiclass import (CostMatrixError, FavourableShift, TemperatureCalibrator,
                         bayes_decisions, cells_of, parse_cost_matrix)
from .policy import OverrideRefused

KIND = "multiclass"


@dataclass(frozen=True)
class MulticlassPolicy:
    classes: tuple  # each class's label, in order (strings or integers)
    matrix: tuple[tuple[float, ...], ...]  # C[true][decided]
    calibrator: TemperatureCalibrator
    rule: FavourableShift | None = None  # None: the Bayes rule; else fitted under a DPPL bound
    facet: dict | None = None  # {"column", "values_or_threshold", "is_feature"}, with a rule

    # ((true, decided), the column's name in requests) per cell of the matrix read per row; in
    # requests after the features (and the facet), in this order
    cost_columns: tuple = ()

    @property
    def needs_facet(self) -> bool:
        """Requests carry the facet: the rule shifts each facet by its own amount."""
        return self.rule is not None and self.rule.delta_a != self.rule.delta_d

    @property
    def rule_kind(self) -> str:
        return "bayes" if self.rule is None else "constrained"

    @property
    def k(self) -> int:
        return len(self.classes)

    @property
    def cost_matrix(self) -> np.ndarray:
        return np.array(self.matrix, dtype=np.float64)

    @property
    def costs(self) -> np.ndarray:
        """The class costs: the K x K matrix (``C[true][decided]``)."""
        return self.cost_matrix

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes as responses name them (a label's text)."""
        return tuple(str(c) for c in self.classes)

    def probability(self, margins: np.ndarray) -> np.ndarray:
        """``(n, K)`` class probabilities from the booster's margins (``n * K`` values)."""
        return self.calibrator.probability(np.reshape(margins, (-1, self.k)))

    def decide(self, p: np.ndarray, sensitive: np.ndarray | None = None, cells: dict | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(decision index, expected cost of each decision)`` per row, each at its own matrix:
        the class costs with ``cells`` (``(true, decided)`` -> each row's cost) replaced
        (:func:`costaware.decisions.multiclass.expected_costs`)."""
        index, expected = bayes_decisions(p, self.cost_matrix, cells)
        if self.rule is not None:
            index = self.rule.decide(expected, sensitive)
        return index, expected

    def decisions(self, p: np.ndarray, sensitive: np.ndarray | None = None,
                  cells: dict | None = None) -> np.ndarray:
        """:meth:`decide`'s decision index of every row alone, a block of rows
        (:func:`~costaware.decisions.costs.row_blocks`) at a time: the ``(n, K)`` expected costs
        (and the rule's shifted copy) of a whole channel are not held."""
        out = np.empty(len(p), dtype=np.int64)
        for rows in row_blocks(len(p)):
            out[rows] = self.decide(p[rows], None if sensitive is None else sensitive[rows],
                                    cells_of(cells, rows))[0]
        return out

    def with_costs(self, matrix: np.ndarray) -> "MulticlassPolicy":
        """The policy at a request's matrix (the Bayes rule there)."""
        if self.rule is not None:
            raise OverrideRefused(
                f"this model's decision rule was fitted under |DPPL| <= {self.rule.max_abs_dppl:g} "
                "at its training costs; another cost matrix would decide outside that bound. Send "
                "the request without cost_matrix, or train a model at these costs")
        return replace(self, matrix=tuple(tuple(float(c) for c in row) for row in matrix))

    def summary(self, source: str) -> dict:
        """The ``"policy"`` member of a JSON answer decided by this policy."""
        out = {"classes": list(self.classes), "cost_matrix": [list(row) for row in self.matrix],
               "costs_source": source,
               "rule": {"kind": "bayes"} if self.rule is None else self.rule.to_dict()}
        if self.cost_columns:
            out["cost_columns"] = [name for _, name in self.cost_columns]
        return out

    def cost_attributes(self, number) -> list[str]:
        """The class costs as a custom attribute (``number`` formats a cost)."""
        return ["cost_matrix=[" + ",".join("[" + ",".join(number(c) for c in row) + "]"
                                           for row in self.matrix) + "]"]

    def to_dict(self) -> dict:
        out = {"kind": KIND, "classes": list(self.classes),
               "cost_matrix": [list(row) for row in self.matrix],
               "calibrator": self.calibrator.to_dict()}
        if self.rule is not None:
            out["rule"] = self.rule.to_dict()
        if self.facet is not None:
            out["facet"] = self.facet
        if self.cost_columns:
            out["cost_columns"] = [[i, j, name] for (i, j), name in self.cost_columns]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "MulticlassPolicy":
        classes = d.get("classes")
        if not isinstance(classes, list) or len(classes) < 3 or not all(
                isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes):
            raise ValueError("classes must be a list of three or more labels")
        if len(set(map(str, classes))) < len(classes):
            raise ValueError("classes names a class twice")
        try:
            matrix = parse_cost_matrix(d.get("cost_matrix"), len(classes))
        except CostMatrixError as exc:
            raise ValueError(f"cost_matrix: {exc}") from None
        if not isinstance(d.get("calibrator"), dict):
            raise ValueError("calibrator must be a JSON object")
        calibrator = TemperatureCalibrator.from_dict(d["calibrator"])
        if calibrator.bias and len(calibrator.bias) != len(classes):
            raise ValueError(f"the calibrator has {len(calibrator.bias)} biases for "
                             f"{len(classes)} classes")
        rule = (None if d.get("rule") is None
                else FavourableShift.from_dict(d["rule"], len(classes)))
        facet = d.get("facet")
        if facet is not None and not (isinstance(facet, dict)
                                      and isinstance(facet.get("column"), str)
                                      and "values_or_threshold" in facet):
            raise ValueError("facet must be an object with 'column' and 'values_or_threshold'")
        policy = cls(tuple(classes), tuple(tuple(float(c) for c in row) for row in matrix),
                     calibrator, rule, facet,
                     _cost_columns(d.get("cost_columns", []), len(classes)))
        if policy.needs_facet and facet is None:
            raise ValueError("the rule shifts each facet by its own amount but no facet is given")
        return policy


def _cost_columns(value, k: int) -> tuple:
    """``metadata.json``'s ``cost_columns``: ``[[true, decided, name], ...]``, each cell once."""
    if not isinstance(value, list) or not all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(i, int) and 0 <= i < k
                                                        for i in c[:2])
            and isinstance(c[2], str) for c in value):
        raise ValueError("cost_columns must be a list of [true class, decided class, column name]")
    columns = tuple(((i, j), name) for i, j, name in value)
    if len({cell for cell, _ in columns}) < len(columns):
        raise ValueError("cost_columns names a cell twice")
    return columns
