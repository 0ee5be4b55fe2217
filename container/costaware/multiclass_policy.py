"""The decision policy of a model with more than two classes: margins -> calibrated class
probabilities -> the decision with the least expected cost (:mod:`costaware.multiclass`).

Saved in ``metadata.json`` as ``{"kind": "multiclass", "classes": [...], "cost_matrix": [[...]],
"calibrator": {...}}``. A request may override the cost matrix (:meth:`with_matrix`): the
probabilities stay, the decisions follow the new costs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .multiclass import (CostMatrixError, FavourableShift, TemperatureCalibrator,
                         bayes_decisions, parse_cost_matrix)
from .policy import OverrideRefused

KIND = "multiclass"


@dataclass(frozen=True)
class MulticlassPolicy:
    classes: tuple  # each class's label, in order (strings or integers)
    matrix: tuple[tuple[float, ...], ...]  # C[true][decided]
    calibrator: TemperatureCalibrator
    rule: FavourableShift | None = None  # None: the Bayes rule; else fitted under a DPPL bound
    facet: dict | None = None  # {"column", "values_or_threshold", "is_feature"}, with a rule

    cost_columns: tuple = ()  # no per-row costs with more than two classes (Layout reads it)

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
    def class_names(self) -> tuple[str, ...]:
        """The classes as responses name them (a label's text)."""
        return tuple(str(c) for c in self.classes)

    def probability(self, margins: np.ndarray) -> np.ndarray:
        return self.calibrator.probability(margins)

    def decide(self, p: np.ndarray, sensitive: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(decision index, expected cost of each decision)`` per row."""
        index, expected = bayes_decisions(p, self.cost_matrix)
        if self.rule is not None:
            index = self.rule.decide(expected, sensitive)
        return index, expected

    def with_matrix(self, matrix: np.ndarray) -> "MulticlassPolicy":
        """The policy at a request's matrix (the Bayes rule there)."""
        if self.rule is not None:
            raise OverrideRefused(
                f"this model's decision rule was fitted under |DPPL| <= {self.rule.max_abs_dppl:g} "
                "at its training costs; another cost matrix would decide outside that bound. Send "
                "the request without cost_matrix, or train a model at these costs")
        return replace(self, matrix=tuple(tuple(float(c) for c in row) for row in matrix))

    def to_dict(self) -> dict:
        out = {"kind": KIND, "classes": list(self.classes),
               "cost_matrix": [list(row) for row in self.matrix],
               "calibrator": self.calibrator.to_dict()}
        if self.rule is not None:
            out["rule"] = self.rule.to_dict()
        if self.facet is not None:
            out["facet"] = self.facet
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
                     calibrator, rule, facet)
        if policy.needs_facet and facet is None:
            raise ValueError("the rule shifts each facet by its own amount but no facet is given")
        return policy
