"""Decision rules: which decision a row gets from its calibrated probability and its costs.

Every rule decides on the row's distance from its Bayes boundary in log-odds,
``z_i = logit(p_i) - logit(p*_i)`` (:func:`costaware.decisions.costs.decision_margin`):

* ``bayes`` (the default): decide 1 exactly when ``E[cost | 1] <= E[cost | 0]`` at the row's costs,
  i.e. ``z >= 0``. Needs nothing fitted beyond the calibrator, and stays right for any costs (a
  row's own, or a request's override).
* ``empirical``: decide 1 iff ``z >= delta``, one shift ``delta`` chosen to minimise the realised cost
  on held-out rows; for probabilities that are still off near the boundary.
* ``constrained``: decide 1 iff ``z >= delta_f`` for the row's facet ``f`` (one shift for both facets,
  or one each with ``group_thresholds``), the cheapest on held-out rows among those with
  ``|DPPL| <= max_abs_dppl`` (DPPL: facet a's share decided 1 minus facet d's).

Fitted rules are chosen from fixed-size histograms of ``z`` (:class:`ShiftHistogram`), so several
hosts fit the same rule by adding their histograms, and one host's memory does not grow with the
rows. The candidate shifts are the bin edges, ``SHIFT_RANGE`` apart from 0 at most in steps of
``2 SHIFT_RANGE / SHIFT_BINS``; 0 (the Bayes rule) is one of them, and among equally cheap rules
the one nearest 0 wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .costs import RowCosts, bayes_decision, decision_margin, row_blocks, shifted_decision, sigmoid

KINDS = ("bayes", "empirical", "constrained")
SHIFT_RANGE = 10.0  # log-odds: a factor of 22,000 on the odds either way
SHIFT_BINS = 2000  # steps of 0.01
_TIE = 1e-12


class InfeasibleBound(ValueError):
    """No rule of the family meets the fairness bound on the held-out rows."""


@dataclass(frozen=True)
class DecisionRule:
    """A rule of the module docstring; ``shift_a``/``shift_d`` are ``delta`` for facets a and d."""

    kind: str = "bayes"
    shift_a: float = 0.0
    shift_d: float = 0.0
    max_abs_dppl: float | None = None  # the bound a constrained rule was fitted under
    held_out_dppl: float | None = None  # its DPPL on the held-out rows it was fitted on

    @property
    def per_facet(self) -> bool:
        return self.shift_a != self.shift_d

    def shifts(self, sensitive: np.ndarray | None) -> np.ndarray | float:
        if not self.per_facet:
            return self.shift_a
        if sensitive is None:
            raise ValueError("this rule decides each facet at its own shift: every row needs its "
                             "facet")
        return np.where(np.asarray(sensitive, dtype=bool), self.shift_d, self.shift_a)

    def decide(self, p: np.ndarray, costs: RowCosts, sensitive: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(decision, E[cost | 1], E[cost | 0])`` for each row."""
        decision, cost_if_1, cost_if_0 = bayes_decision(p, costs)
        if self.kind != "bayes" and (self.shift_a or self.shift_d):
            decision = shifted_decision(p, costs, self.shifts(sensitive))
        return decision, cost_if_1, cost_if_0

    def thresholds(self, costs: RowCosts, sensitive: np.ndarray | None = None) -> np.ndarray:
        """Each row's probability threshold: decide 1 iff ``p >= sigmoid(logit(p*) + delta)``. A
        row whose Bayes threshold is 0 or 1 (one decision dominates) keeps it: no finite shift
        moves a boundary at infinite log-odds."""
        p_star = costs.bayes_threshold()
        shift = self.shifts(sensitive) if self.kind != "bayes" else 0.0
        if np.ndim(shift) == 0 and shift == 0:
            return p_star
        inside = (p_star > 0) & (p_star < 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            shifted = sigmoid(np.log(p_star) - np.log1p(-p_star) + shift)
        return np.where(inside, shifted, p_star)

    def describe(self) -> str:
        """The rule in words, as the training log and the report name it."""
        if self.kind == "bayes":
            return "bayes"
        shifts = (f"shifts a {self.shift_a:+.4g}, d {self.shift_d:+.4g}" if self.per_facet
                  else f"shift {self.shift_a:+.4g}")
        bound = "" if self.max_abs_dppl is None else f"; |DPPL| <= {self.max_abs_dppl:g}"
        if self.held_out_dppl is not None:
            bound += f", DPPL {self.held_out_dppl:+.4f} on the held-out rows it was fitted on"
        return f"{self.kind} ({shifts}{bound})"

    def to_dict(self) -> dict:
        out: dict = {"kind": self.kind}
        if self.kind != "bayes":
            out["shift"] = {"a": self.shift_a, "d": self.shift_d} if self.per_facet else self.shift_a
        if self.max_abs_dppl is not None:
            out["max_abs_dppl"] = self.max_abs_dppl
        if self.held_out_dppl is not None:
            out["held_out_dppl"] = self.held_out_dppl
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "DecisionRule":
        kind = d.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown decision rule {kind!r}")
        shift = d.get("shift", 0.0)
        a, dd = (shift["a"], shift["d"]) if isinstance(shift, dict) else (shift, shift)
        bound = d.get("max_abs_dppl")
        held = d.get("held_out_dppl")
        rule = cls(kind, float(a), float(dd), None if bound is None else float(bound),
                   None if held is None else float(held))
        if not (math.isfinite(rule.shift_a) and math.isfinite(rule.shift_d)):
            raise ValueError("decision rule shifts must be finite")
        return rule


@dataclass
class ShiftHistogram:
    """Per facet (a, d), label (0, 1) and bin of ``z``: rows, and the sum of ``cost(1) - cost(0)``
    (what deciding 1 instead of 0 changes in the realised cost). Bin 0 holds ``z < -SHIFT_RANGE``,
    the last bin ``z >= SHIFT_RANGE``, bin ``j`` in between ``[edge_{j-1}, edge_j)``. Additive."""

    rows: np.ndarray  # (2, 2, SHIFT_BINS + 2)
    cost_change: np.ndarray  # (2, 2, SHIFT_BINS + 2)
    cost_if_0: np.ndarray  # (2,): per facet, the realised cost of deciding 0 for all its rows

    @staticmethod
    def edges() -> np.ndarray:
        return np.linspace(-SHIFT_RANGE, SHIFT_RANGE, SHIFT_BINS + 1)

    @classmethod
    def of(cls, p: np.ndarray, label: np.ndarray, costs: RowCosts,
           sensitive: np.ndarray | None = None) -> "ShiftHistogram":
        """The histogram of the rows (:func:`~costaware.decisions.costs.row_blocks` at a time
        beyond one block: the temporaries' memory stays bounded)."""
        blocks = row_blocks(len(p))
        if len(blocks) == 1:
            return cls._of(p, label, costs, sensitive)
        return cls.unpack(np.sum([cls._of(p[b], label[b], costs.subset(b),
                                          None if sensitive is None else sensitive[b]).pack()
                                  for b in blocks], axis=0))

    @classmethod
    def _of(cls, p: np.ndarray, label: np.ndarray, costs: RowCosts,
            sensitive: np.ndarray | None = None) -> "ShiftHistogram":
        z = decision_margin(p, costs)
        n = len(z)
        y = (np.asarray(label) == 1).astype(np.int64)
        ones, zeros = np.ones(n, dtype=np.int8), np.zeros(n, dtype=np.int8)
        if1, if0 = costs.realised(y, ones), costs.realised(y, zeros)
        bins = np.searchsorted(cls.edges(), z, side="right")  # 0 .. SHIFT_BINS + 1
        facet = np.zeros(n, dtype=np.int64) if sensitive is None else np.asarray(sensitive, int)
        width = SHIFT_BINS + 2
        index = (2 * facet + y) * width + bins
        rows = np.bincount(index, minlength=4 * width).astype(np.float64).reshape(2, 2, width)
        cost_change = np.bincount(index, weights=if1 - if0, minlength=4 * width).reshape(2, 2, width)
        return cls(rows, cost_change, np.bincount(facet, weights=if0, minlength=2).astype(np.float64))

    def pack(self) -> np.ndarray:
        return np.concatenate([self.rows.ravel(), self.cost_change.ravel(), self.cost_if_0])

    @classmethod
    def unpack(cls, packed: np.ndarray) -> "ShiftHistogram":
        k = 4 * (SHIFT_BINS + 2)
        return cls(packed[:k].reshape(2, 2, -1), packed[k:2 * k].reshape(2, 2, -1),
                   np.asarray(packed[2 * k:2 * k + 2], dtype=np.float64))

    def curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per facet and candidate shift (the edges): the total cost change and the rows decided
        1, and each facet's rows. Candidate ``k`` (edge k) decides 1 for the rows with
        ``z >= edge_k``: bins ``k + 1 ..``."""
        rows, cost_change = self.rows.sum(axis=1), self.cost_change.sum(axis=1)  # over the labels
        decided = np.cumsum(rows[:, ::-1], axis=1)[:, ::-1][:, 1:SHIFT_BINS + 2]
        change = np.cumsum(cost_change[:, ::-1], axis=1)[:, ::-1][:, 1:SHIFT_BINS + 2]
        return change, decided, rows.sum(axis=1)

    def facet_cost(self) -> np.ndarray:
        """(2, candidates): each facet's realised cost at each candidate shift."""
        change, _, _ = self.curves()
        return self.cost_if_0[:, None] + change

    def total_cost(self) -> np.ndarray:
        """The realised cost of each candidate shift over both facets."""
        return self.facet_cost().sum(axis=0)

    def empirical(self) -> DecisionRule:
        shift = float(self.edges()[_cheapest(self.total_cost())])
        return DecisionRule("empirical", shift, shift)

    def constrained(self, bound: float, per_facet: bool) -> tuple[DecisionRule, float]:
        """The cheapest rule with ``|DPPL| <= bound``, and its DPPL on these rows."""
        _, decided, n = self.curves()
        if min(n) == 0:
            raise InfeasibleBound("both facets need held-out rows to fit a constrained rule")
        share = decided / n[:, None]
        edges = self.edges()
        slack = bound + 1e-12
        if not per_facet:
            dppl = share[0] - share[1]
            k = _cheapest(np.where(np.abs(dppl) <= slack, self.total_cost(), np.inf))
            return (DecisionRule("constrained", float(edges[k]), float(edges[k]), bound,
                                 float(dppl[k])), float(dppl[k]))
        cost = self.facet_cost()
        total = cost[0][:, None] + cost[1][None, :]
        dppl = share[0][:, None] - share[1][None, :]
        masked = np.where(np.abs(dppl) <= slack, total, np.inf)
        best = masked.min()
        if not math.isfinite(best):
            raise InfeasibleBound(_INFEASIBLE)
        tied = np.abs(masked - best) <= _TIE * max(1.0, abs(best))
        distance = np.abs(edges)[:, None] + np.abs(edges)[None, :]
        i, j = np.unravel_index(np.argmin(np.where(tied, distance, np.inf)), masked.shape)
        return (DecisionRule("constrained", float(edges[i]), float(edges[j]), bound,
                             float(dppl[i, j])), float(dppl[i, j]))


_INFEASIBLE = ("no decision rule meets the bound on the held-out rows (rows whose costs make one "
               "decision never worse are decided so by every rule)")


def _cheapest(total: np.ndarray) -> int:
    """Index of the cheapest candidate; among ties (``total`` within 1e-12), the shift nearest 0."""
    best = np.min(total)
    if not math.isfinite(best):
        raise InfeasibleBound(_INFEASIBLE)
    tied = np.flatnonzero(np.abs(total - best) <= _TIE * max(1.0, abs(best)))
    distance = np.abs(ShiftHistogram.edges()[tied])
    return int(tied[np.argmin(distance)])
