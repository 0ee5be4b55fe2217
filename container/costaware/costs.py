"""Costs and cost-optimal decisions: pure numpy, no I/O.

Notation: ``p`` is the probability that a row is of class 1, the costs are ``C_TP, C_FP, C_FN, C_TN``
(possibly per row). Deciding 1 costs in expectation ``p*C_TP + (1-p)*C_FP``; deciding 0 costs
``p*C_FN + (1-p)*C_TN``. Deciding 1 is cheaper exactly when ``p >= p*`` with the Bayes threshold

    p* = (C_FP - C_TN) / (C_FP - C_TN + C_FN - C_TP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class CostMatrix:
    """Class-level costs of the four outcomes."""

    fp: float
    fn: float
    tp: float = 0.0
    tn: float = 0.0

    def as_dict(self) -> dict:
        return {"cost_fp": self.fp, "cost_fn": self.fn, "cost_tp": self.tp, "cost_tn": self.tn}

    @classmethod
    def from_dict(cls, d: dict) -> "CostMatrix":
        return cls(fp=d["cost_fp"], fn=d["cost_fn"], tp=d.get("cost_tp", 0.0), tn=d.get("cost_tn", 0.0))

    @property
    def negative_weight(self) -> float:
        """Regret of a false positive, ``C_FP - C_TN``: what a negative row's mistake adds."""
        return self.fp - self.tn

    @property
    def positive_weight(self) -> float:
        """Regret of a false negative, ``C_FN - C_TP``."""
        return self.fn - self.tp

    def bayes_threshold(self) -> float:
        """``p* = (C_FP - C_TN) / (C_FP - C_TN + C_FN - C_TP)``, optimal for calibrated scores."""
        return self.negative_weight / (self.negative_weight + self.positive_weight)


@dataclass(frozen=True)
class RowCosts:
    """Per-row costs, arrays of equal length (class costs times an optional per-row multiplier)."""

    fp: np.ndarray
    fn: np.ndarray
    tp: np.ndarray
    tn: np.ndarray

    @classmethod
    def build(cls, costs: CostMatrix, n: int, multiplier: np.ndarray | None = None,
              scaled: tuple[str, ...] = ("fn",)) -> "RowCosts":
        """``C_k,i = C_k * m_i`` for the costs ``k`` in ``scaled``, ``C_k`` for the others."""
        arrays = {}
        for name in ("fp", "fn", "tp", "tn"):
            base = np.full(n, getattr(costs, name), dtype=np.float64)
            if multiplier is not None and name in scaled:
                base = base * np.asarray(multiplier, dtype=np.float64)
            arrays[name] = base
        return cls(**arrays)

    def subset(self, index) -> "RowCosts":
        return RowCosts(self.fp[index], self.fn[index], self.tp[index], self.tn[index])

    def sample_weights(self, label: np.ndarray) -> np.ndarray:
        """Weight of each row in the cost-weighted loss: ``C_FN,i - C_TP,i`` if y=1, else ``C_FP,i - C_TN,i``."""
        return np.where(label == 1, self.fn - self.tp, self.fp - self.tn)


def expected_costs_of_actions(p: np.ndarray, costs: CostMatrix) -> tuple[np.ndarray, np.ndarray]:
    """Expected cost of deciding 1 and of deciding 0 for each probability ``p``.

    ``E[cost | decide 1] = p*C_TP + (1-p)*C_FP``;  ``E[cost | decide 0] = p*C_FN + (1-p)*C_TN``.
    """
    p = np.asarray(p, dtype=np.float64)
    return p * costs.tp + (1 - p) * costs.fp, p * costs.fn + (1 - p) * costs.tn


def realised_costs(label: np.ndarray, decision: np.ndarray, costs: RowCosts) -> np.ndarray:
    """Cost of each row's decision given its true label (TP, FP, FN or TN cost)."""
    label = np.asarray(label)
    decision = np.asarray(decision)
    return np.where(
        decision == 1,
        np.where(label == 1, costs.tp, costs.fp),
        np.where(label == 1, costs.fn, costs.tn),
    )


def cost_curve(score: np.ndarray, label: np.ndarray, costs: RowCosts) -> tuple[np.ndarray, np.ndarray]:
    """Total realised cost of every distinct decision rule ``decide 1 iff score >= t``.

    Returns ``(thresholds, totals)``: sorting scores in decreasing order, rule ``k`` predicts 1 for
    the ``k`` highest scores (k = 0..n, only at boundaries between distinct scores), so

        total(k) = sum_{i<k} [y_i C_TP,i + (1-y_i) C_FP,i] + sum_{i>=k} [y_i C_FN,i + (1-y_i) C_TN,i]

    and its threshold is the midpoint between the k-th and (k+1)-th scores (above the maximum for
    k = 0, the minimum itself for k = n).
    """
    score = np.asarray(score, dtype=np.float64)
    label = np.asarray(label)
    order = np.argsort(-score, kind="stable")
    s = score[order]
    y = label[order] == 1
    cost_if_1 = np.where(y, costs.tp[order], costs.fp[order])
    cost_if_0 = np.where(y, costs.fn[order], costs.tn[order])
    # total(k) = sum(cost_if_0) + sum_{i<k} (cost_if_1 - cost_if_0)
    totals = cost_if_0.sum() + np.concatenate([[0.0], np.cumsum(cost_if_1 - cost_if_0)])
    n = len(s)
    cut = np.ones(n + 1, dtype=bool)
    cut[1:n] = s[:-1] > s[1:]  # only cut between distinct scores
    ks = np.flatnonzero(cut)
    thresholds = _cut_thresholds(s, ks)
    return thresholds, totals[ks]


def _cut_thresholds(s: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Thresholds t with ``s[:k] >= t > s[k:]`` for scores ``s`` sorted in decreasing order."""
    n = len(s)
    if n == 0:
        return np.full(len(ks), 0.5)
    above = s[np.maximum(ks - 1, 0)]  # lowest score decided 1
    below = s[np.minimum(ks, n - 1)]  # highest score decided 0
    t = (above + below) / 2
    t = np.where(t > below, t, np.nextafter(below, np.inf))  # midpoint of adjacent floats
    t = np.where(ks == 0, np.maximum((s[0] + 1.0) / 2, np.nextafter(s[0], np.inf)), t)
    return np.where(ks == n, s[-1], t)


def empirical_threshold(score: np.ndarray, label: np.ndarray, costs: RowCosts,
                        prefer: float = 0.5) -> tuple[float, float]:
    """Threshold minimising total realised cost on ``(score, label)``; returns ``(threshold, total)``.

    Among equally cheap rules, the one whose threshold is nearest ``prefer`` (the Bayes threshold) in
    log-odds wins, so flat stretches of the cost curve do not push the threshold to an extreme.
    """
    thresholds, totals = cost_curve(score, label, costs)
    pick = _cheapest(totals, thresholds, np.ones(len(totals), dtype=bool), prefer)
    return float(thresholds[pick]), float(totals[pick])


def _positive_share(score_sorted: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Share of scores ``>= t`` for each ``t``, from ascending ``score_sorted``."""
    n = len(score_sorted)
    if n == 0:
        return np.zeros(len(thresholds))
    return (n - np.searchsorted(score_sorted, thresholds, side="left")) / n


MAX_PAIRS = 4_000_000  # group-threshold search: exhaustive up to this many (t_a, t_d) pairs


def constrained_threshold(score: np.ndarray, label: np.ndarray, costs: RowCosts,
                          sensitive: np.ndarray, max_abs_dppl: float, group_specific: bool,
                          prefer: float = 0.5) -> dict:
    """Threshold(s) minimising total realised cost subject to ``|DPPL| <= max_abs_dppl``.

    ``DPPL = q_a - q_d`` with ``q_f`` the share of facet ``f`` decided 1 (``score >= t_f``). With
    one threshold, every cut point of :func:`cost_curve` is a candidate. With group-specific
    thresholds the cost separates, ``C(t_a, t_d) = C_a(t_a) + C_d(t_d)``, and every pair of the two
    facets' cut points is a candidate (thinned evenly past ``MAX_PAIRS`` pairs). Deciding 0 for
    everyone always satisfies the constraint, so a solution exists. Returns
    ``{"threshold_a", "threshold_d", "total", "dppl"}`` (equal thresholds when not group-specific).
    """
    score = np.asarray(score, dtype=np.float64)
    s = np.asarray(sensitive, dtype=bool)
    sorted_a, sorted_d = np.sort(score[~s]), np.sort(score[s])
    bound = max_abs_dppl + 1e-12
    if not group_specific:
        thresholds, totals = cost_curve(score, label, costs)
        gap = _positive_share(sorted_a, thresholds) - _positive_share(sorted_d, thresholds)
        ok = np.abs(gap) <= bound
        pick = _cheapest(totals, thresholds, ok, prefer)
        return {"threshold_a": float(thresholds[pick]), "threshold_d": float(thresholds[pick]),
                "total": float(totals[pick]), "dppl": float(gap[pick])}
    t_a, c_a = cost_curve(score[~s], label[~s], costs.subset(~s))
    t_d, c_d = cost_curve(score[s], label[s], costs.subset(s))
    keep = max(2, int(np.sqrt(MAX_PAIRS)))
    if len(t_a) * len(t_d) > MAX_PAIRS:
        t_a, c_a = _thin(t_a, c_a, keep)
        t_d, c_d = _thin(t_d, c_d, keep)
    q_a = _positive_share(sorted_a, t_a)
    q_d = _positive_share(sorted_d, t_d)
    totals = c_a[:, None] + c_d[None, :]
    ok = np.abs(q_a[:, None] - q_d[None, :]) <= bound
    closeness = np.abs(_logit(np.clip(t_a, 1e-12, 1 - 1e-12)) - _logit(prefer))[:, None] + \
        np.abs(_logit(np.clip(t_d, 1e-12, 1 - 1e-12)) - _logit(prefer))[None, :]
    masked = np.where(ok, totals, np.inf)
    best = masked.min()
    tied = np.isclose(masked, best, rtol=1e-12, atol=1e-12) & ok
    i, j = np.unravel_index(np.argmin(np.where(tied, closeness, np.inf)), masked.shape)
    return {"threshold_a": float(t_a[i]), "threshold_d": float(t_d[j]),
            "total": float(totals[i, j]), "dppl": float(q_a[i] - q_d[j])}


def _cheapest(totals: np.ndarray, thresholds: np.ndarray, ok: np.ndarray, prefer: float) -> int:
    masked = np.where(ok, totals, np.inf)
    tied = np.flatnonzero(np.isclose(masked, masked.min(), rtol=1e-12, atol=1e-12) & ok)
    distance = np.abs(_logit(np.clip(thresholds[tied], 1e-12, 1 - 1e-12)) - _logit(prefer))
    return int(tied[np.argmin(distance)])


def _thin(thresholds: np.ndarray, totals: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Evenly spaced cut points plus the unconstrained best one."""
    index = np.unique(np.concatenate([np.linspace(0, len(thresholds) - 1, keep).astype(int),
                                      [int(np.argmin(totals))]]))
    return thresholds[index], totals[index]


def _logit(p):
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function ``1 / (1 + exp(-x))``."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


@dataclass(frozen=True)
class DecisionPolicy:
    """Owns "margin -> score -> decision and expected costs"; saved with the model, used by serving.

    * ``score = sigmoid(margin - score_offset)``. The cost-weighted loss learns a margin tilted by
      ``log(w1/w0)`` (``w1 = C_FN - C_TP``, ``w0 = C_FP - C_TN``): its optimum is
      ``logit P(y=1|x) + log(w1/w0)``. Subtracting that offset gives back the probability of class 1,
      so one score scale serves both losses and any cost override.
    * ``decide 1 iff score >= threshold``.
    * With other costs (a per-request override) the threshold moves by the change of the Bayes
      threshold in log-odds: ``logit t' = logit t + logit p*' - logit p*``. An empirical threshold
      keeps the calibration correction it learned on validation; a Bayes threshold becomes ``p*'``.
    """

    costs: CostMatrix
    threshold: float
    score_offset: float = 0.0
    threshold_source: str = "bayes"
    # Group-specific thresholds (facet a, facet d) chosen under a fairness constraint: deciding then
    # needs each row's facet at inference. ``facet`` says which column and values make facet d.
    group_thresholds: tuple[float, float] | None = None
    facet: dict | None = None

    def score(self, margin: np.ndarray) -> np.ndarray:
        return sigmoid(np.asarray(margin, dtype=np.float64) - self.score_offset)

    def thresholds_for(self, sensitive: np.ndarray | None = None, n: int | None = None) -> np.ndarray:
        """Each row's threshold: ``t_d`` for facet d rows, ``t_a`` for the others."""
        if self.group_thresholds is None:
            return np.full(len(sensitive) if sensitive is not None else n, self.threshold)
        if sensitive is None:
            raise ValueError("this model decides with group-specific thresholds: every row needs "
                             f"its facet ({self.facet['column'] if self.facet else 'facet'})")
        t_a, t_d = self.group_thresholds
        return np.where(np.asarray(sensitive, dtype=bool), t_d, t_a)

    def decide(self, score: np.ndarray, sensitive: np.ndarray | None = None) -> np.ndarray:
        score = np.asarray(score)
        if self.group_thresholds is None:
            return (score >= self.threshold).astype(np.int8)
        return (score >= self.thresholds_for(sensitive)).astype(np.int8)

    def decision_probability(self, score: np.ndarray, threshold=None) -> np.ndarray:
        """The probability as the decision rule reads it:
        ``p' = sigmoid(logit(score) - (logit(t) - logit(p*)))``.

        A learned threshold ``t`` differs from the Bayes threshold ``p*`` because validation showed
        the scores to be off near the decision boundary; ``p'`` applies that correction, so that
        ``score >= t`` exactly when ``p' >= p*``, i.e. when deciding 1 has the lower expected cost.
        With ``t = p*`` it is the score itself.
        """
        t = self.thresholds_for(None, len(np.atleast_1d(score))) if threshold is None else threshold
        shift = _logit(np.clip(t, 1e-15, 1 - 1e-15)) - _logit(self.costs.bayes_threshold())
        clipped = np.clip(np.asarray(score, dtype=np.float64), 1e-15, 1 - 1e-15)
        return sigmoid(_logit(clipped) - shift)

    def expected_costs(self, score: np.ndarray, threshold=None) -> tuple[np.ndarray, np.ndarray]:
        """Expected cost of deciding 1 and of deciding 0, from :meth:`decision_probability`, so the
        decision is always the cheaper action. ``threshold``: each row's (group thresholds)."""
        return expected_costs_of_actions(self.decision_probability(score, threshold), self.costs)

    def with_costs(self, costs: CostMatrix) -> "DecisionPolicy":
        if costs == self.costs:
            return self
        shift = _logit(costs.bayes_threshold()) - _logit(self.costs.bayes_threshold())

        def move(t: float) -> float:
            return float(sigmoid(np.array([_logit(min(max(t, 1e-12), 1 - 1e-12)) + shift]))[0])

        groups = None if self.group_thresholds is None else tuple(map(move, self.group_thresholds))
        return replace(self, costs=costs, threshold=move(self.threshold), group_thresholds=groups)

    def to_dict(self) -> dict:
        out = {
            "costs": self.costs.as_dict(),
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "score_offset": self.score_offset,
            "bayes_threshold": self.costs.bayes_threshold(),
        }
        if self.group_thresholds is not None:
            out["group_thresholds"] = {"a": self.group_thresholds[0], "d": self.group_thresholds[1]}
        if self.facet is not None:
            out["facet"] = self.facet
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "DecisionPolicy":
        threshold = float(d["threshold"])
        if not (0.0 < threshold < 1.0 or math.isclose(threshold, 0) or math.isclose(threshold, 1)):
            raise ValueError(f"decision threshold {threshold} is outside [0, 1]")
        groups = d.get("group_thresholds")
        return cls(
            costs=CostMatrix.from_dict(d["costs"]),
            threshold=threshold,
            score_offset=float(d.get("score_offset", 0.0)),
            threshold_source=d.get("threshold_source", "bayes"),
            group_thresholds=None if groups is None else (float(groups["a"]), float(groups["d"])),
            facet=d.get("facet"),
        )
