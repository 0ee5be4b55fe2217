"""The decision policy saved with a model: margin -> probability -> decision and expected costs.

One owner for everything training, the artifact, the report and serving need to decide a row:

* the calibrator (:mod:`costaware.decisions.calibration`), margin -> ``P(y = 1)``;
* the decision rule (:mod:`costaware.decisions.rules`);
* the class costs, which decide every row that does not carry its own;
* the cost columns: the cells whose per-row costs the model was trained with, and the names under
  which a request may carry them (in keyed JSON under these names; in CSV and ``instances``
  arrays as extra values after the features, in :data:`costaware.decisions.costs.CELLS` order);
* the facet, when a rule decides each facet at its own shift (requests then carry it).

A per-request cost override (:meth:`Policy.with_costs`) replaces the class costs, nothing else:
the calibrated probability and the rule stay. An ``empirical`` rule's shift is a correction of the
calibrated log-odds at the boundary that the model applies at every row's own costs, so it applies
at a request's costs too: a row is decided the same at the same costs, whether they come from its
cost columns or from the request, and a row with its own costs is decided exactly as without the
override. A rule fitted under a fairness bound is tied to the costs it was fitted at: such a model
refuses overrides (:class:`OverrideRefused`) rather than silently leave the bound.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from .calibration import Calibrator
from .calibrator_choice import calibrator_from_dict
from .costs import CELLS, CostMatrix, RowCosts
from .rules import DecisionRule


class OverrideRefused(ValueError):
    """The model's rule was fitted under a constraint that other costs would break."""


@dataclass(frozen=True)
class Policy:
    calibrator: Calibrator
    rule: DecisionRule
    costs: CostMatrix
    cost_columns: tuple[tuple[str, str], ...] = ()  # (cell, the column's name in requests)
    facet: dict | None = None  # {"column", "values_or_threshold", "is_feature"}

    k = 2  # the number of classes (the common interface with MulticlassPolicy)

    def probability(self, margin: np.ndarray) -> np.ndarray:
        return self.calibrator.probability(margin)

    @property
    def rule_kind(self) -> str:
        return self.rule.kind

    def summary(self, source: str) -> dict:
        """The ``"policy"`` member of a JSON answer decided by this policy."""
        return {"costs": self.costs.as_dict(), "costs_source": source, "rule": self.rule.to_dict(),
                "cost_columns": [name for _, name in self.cost_columns]}

    def cost_attributes(self, number) -> list[str]:
        """The class costs as custom attributes (``number`` formats a cost)."""
        return [f"{key}={number(value)}" for key, value in self.costs.as_dict().items()]

    def decide(self, p: np.ndarray, costs: RowCosts, sensitive: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(decision, E[cost | 1], E[cost | 0])`` of each row at its costs."""
        return self.rule.decide(p, costs, sensitive)

    @property
    def needs_facet(self) -> bool:
        return self.rule.per_facet

    @cached_property
    def class_thresholds(self) -> tuple[float, float]:
        """The rule's probability threshold at the class costs, for facets a and d (computed once:
        every row without its own costs has it)."""
        one = RowCosts.constant(self.costs, 2)
        t_a, t_d = np.broadcast_to(self.rule.thresholds(one, np.array([False, True])), (2,))
        return float(t_a), float(t_d)

    def thresholds(self, costs: RowCosts, own: np.ndarray | None,
                   sensitive: np.ndarray | None) -> np.ndarray:
        """Each row's threshold; rows without their own costs (``own`` False or None) take the
        class costs' (:attr:`class_thresholds`)."""
        n = len(costs)
        if own is None or not own.any():
            t_a, t_d = self.class_thresholds
            if t_a == t_d or sensitive is None:
                return np.full(n, t_a)
            return np.where(sensitive, t_d, t_a)
        return np.broadcast_to(self.rule.thresholds(costs, sensitive), (n,))

    def with_costs(self, costs: CostMatrix) -> "Policy":
        """The policy at a request's class costs, with the same rule (module docstring)."""
        if costs == self.costs:
            return self
        if self.rule.kind == "constrained":
            raise OverrideRefused(
                f"this model's decision rule was fitted under |DPPL| <= {self.rule.max_abs_dppl:g} "
                "at its training costs; other costs would decide outside that bound. Send the "
                "request without cost_* attributes, or train a model at these costs")
        return replace(self, costs=costs)

    def to_dict(self) -> dict:
        out = {"calibrator": self.calibrator.to_dict(), "rule": self.rule.to_dict(),
               "costs": self.costs.as_dict(),
               "cost_columns": {cell: name for cell, name in self.cost_columns}}
        if self.facet is not None:
            out["facet"] = self.facet
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Policy":
        columns = d.get("cost_columns", {})
        if not isinstance(columns, dict) or not set(columns) <= set(CELLS):
            raise ValueError(f"cost_columns must map some of {', '.join(CELLS)} to names")
        for part in ("calibrator", "rule", "costs"):
            if not isinstance(d.get(part), dict):
                raise ValueError(f"{part} must be a JSON object")
        policy = cls(calibrator_from_dict(d["calibrator"]), DecisionRule.from_dict(d["rule"]),
                     CostMatrix.from_dict(d["costs"]),
                     tuple((cell, str(columns[cell])) for cell in CELLS if cell in columns),
                     d.get("facet"))
        facet = policy.facet
        if facet is not None and not (isinstance(facet, dict) and isinstance(facet.get("column"), str)
                                      and "values_or_threshold" in facet):
            raise ValueError("facet must be an object with 'column' and 'values_or_threshold'")
        problem = policy.costs.problem()
        if problem:
            raise ValueError(problem)
        if policy.needs_facet and facet is None:
            raise ValueError("the rule decides each facet at its own shift but no facet is given")
        return policy
