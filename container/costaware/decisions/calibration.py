"""Probabilities you can price: the calibrator that turns a model's margin into ``P(y = 1)``.

Bayesian Platt scaling. For a row with margin ``m`` (the booster's output, a log-odds: see
:mod:`costaware.training.objective` for why the cost weights do not tilt it) the model is

    y ~ Bernoulli(sigmoid(a m + c)),    (a, c) ~ Normal((1, 0), I / lambda),

fitted on held-out rows (out-of-fold margins, or the validation channel's). ``(1, 0)`` is "no
correction". The fit is Newton's method on the log posterior; every step needs only the sums

    g = sum_i x_i (p_i - y_i) + lambda (theta - theta0),   H = sum_i p_i (1 - p_i) x_i x_i^T + lambda I

over ``x_i = (m_i, 1)``, so several hosts fit the same calibrator by adding up theirs (``reduce``).
The probability served is the posterior predictive, by MacKay's probit approximation of
``E[sigmoid(a m + c)]``:

    p = sigmoid(f(m)),   f(m) = mu / sqrt(1 + pi v / 8),   mu = a m + c,   v = x^T H^-1 x.

Where the held-out rows say little (few of them, or a margin beyond those they had) ``v`` is large
and ``p`` moves towards 1/2 in log-odds: a rule deciding on ``p`` then does not stake a costly
decision on an extrapolated certainty. With many rows ``v`` vanishes and ``p`` is Platt scaling.

``f`` can turn back far out (``v`` grows like ``m^2``, ``mu`` like ``m``): its derivative has the
sign of ``A + B m`` with ``A = a (1 + k V_cc) - k c V_ac`` and ``B = k (a V_ac - c V_aa)``,
``k = pi / 8``. Past the turning point ``m = -A/B`` the served log-odds stay at ``f(-A/B)``, so the
probability is a non-decreasing function of the margin everywhere (reasons derived from the margin
keep their direction, and a higher margin never gets a lower probability).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..cluster import SOLO, Reduce
from .costs import ROW_BLOCK, row_blocks, sigmoid

PRIOR_PRECISION = 1e-2  # a standard deviation of 10 around "no correction": it only keeps a
# separable held-out set (a perfect model on a small channel) from a diverging slope
NO_CORRECTION = (1.0, 0.0)
MAX_STEPS = 100
_K = math.pi / 8.0


def sigmoid_by_blocks(log_odds: Callable[[np.ndarray], np.ndarray], margin) -> np.ndarray:
    """``sigmoid(log_odds(margin))`` of a calibrator's elementwise ``log_odds``, a block of
    :data:`~costaware.decisions.costs.ROW_BLOCK` margins at a time beyond one block: the float64
    temporaries (Platt's, five a row) exist for one block, not for a whole channel at once; every
    value is the one of the whole array at once. ``margin`` of any float type (read as float64)."""
    margin = np.asarray(margin)
    if margin.ndim != 1 or len(margin) <= ROW_BLOCK:
        return sigmoid(log_odds(margin))
    out = np.empty(len(margin), dtype=np.float64)
    for rows in row_blocks(len(margin)):
        out[rows] = sigmoid(log_odds(margin[rows]))
    return out


@dataclass(frozen=True)
class Calibrator:
    """``p = sigmoid(f(clip(m, low, high)))`` with ``f`` of the module docstring."""

    slope: float  # a
    intercept: float  # c
    covariance: tuple[tuple[float, float], tuple[float, float]]  # of (a, c)
    rows: int  # held-out rows it was fitted on
    low: float = -math.inf  # the margins beyond which f would turn back
    high: float = math.inf

    def log_odds(self, margin: np.ndarray) -> np.ndarray:
        m = np.clip(np.asarray(margin, dtype=np.float64), self.low, self.high)
        (v_aa, v_ac), (_, v_cc) = self.covariance
        mu = self.slope * m + self.intercept
        v = v_aa * m * m + 2.0 * v_ac * m + v_cc
        return mu / np.sqrt(1.0 + _K * np.maximum(v, 0.0))

    def probability(self, margin: np.ndarray) -> np.ndarray:
        return sigmoid_by_blocks(self.log_odds, margin)

    def to_dict(self) -> dict:
        return {"method": "platt", "slope": self.slope, "intercept": self.intercept,
                "covariance": [list(row) for row in self.covariance], "rows": self.rows,
                "margin_range": [_json_bound(self.low), _json_bound(self.high)]}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibrator":
        if d.get("method") != "platt":
            raise ValueError(f"unknown calibrator {d.get('method')!r}")
        (v_aa, v_ac), (v_ca, v_cc) = d["covariance"]
        low, high = d["margin_range"]
        low = -math.inf if low is None else float(low)
        high = math.inf if high is None else float(high)
        values = [float(d["slope"]), float(d["intercept"]), float(v_aa), float(v_ac), float(v_cc)]
        if not all(math.isfinite(x) for x in values) or v_ac != v_ca:
            raise ValueError("calibrator: slope, intercept and covariance must be finite numbers, "
                             "the covariance symmetric")
        return cls(values[0], values[1], ((values[2], values[3]), (values[3], values[4])),
                   int(d.get("rows", 0)), low, high)


def _json_bound(x: float):
    return None if math.isinf(x) else x


def fit_platt(margin: np.ndarray, label: np.ndarray, reduce: Reduce = SOLO.sum,
              start: Calibrator | None = None) -> Calibrator:
    """The calibrator of the module docstring, fitted on held-out ``(margin, label)``.

    ``reduce`` sums arrays over hosts (the identity on one host): every host gets the same
    calibrator. ``start`` (the previous round's calibrator) only saves Newton steps.
    """
    m = np.asarray(margin, dtype=np.float64)
    y = (np.asarray(label) == 1).astype(np.float64)
    theta0 = np.array(NO_CORRECTION)
    theta = np.array([start.slope, start.intercept]) if start is not None else theta0.copy()

    def totals(at: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float]:
        z = at[0] * m + at[1]
        # one exp for both (each round fits this on up to 50,000 rows): sigmoid(z) and
        # logaddexp(0, +-z) = max(0, +-z) + log1p(exp(-|z|)), as numpy computes them, bit for bit
        e = np.exp(-np.abs(z))
        p = np.where(z >= 0, 1.0, e) / (1.0 + e)
        w = p * (1.0 - p)
        r = p - y
        loss = float(np.sum(np.maximum(np.where(y == 1, -z, z), 0.0) + np.log1p(e)))
        packed = reduce(np.array([loss, m.size, r @ m, r.sum(), w @ (m * m), w @ m, w.sum()]))
        d = at - theta0
        grad = np.array([packed[2], packed[3]]) + PRIOR_PRECISION * d
        hess = np.array([[packed[4], packed[5]], [packed[5], packed[6]]]) + PRIOR_PRECISION * np.eye(2)
        return packed[0] + 0.5 * PRIOR_PRECISION * float(d @ d), grad, hess, float(packed[1])

    loss, grad, hess, rows = totals(theta)
    for _ in range(MAX_STEPS):
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while True:  # damped Newton: the log posterior is concave, a shorter step always helps
            candidate = theta - scale * step
            new = totals(candidate)
            if new[0] <= loss + 1e-12 * abs(loss) or scale < 1e-6:
                break
            scale /= 2
        theta = candidate
        loss, grad, hess, _ = new
        if np.max(np.abs(scale * step)) < 1e-10:
            break
    cov = np.linalg.inv(hess)
    v_aa, v_ac, v_cc = float(cov[0, 0]), float((cov[0, 1] + cov[1, 0]) / 2), float(cov[1, 1])
    a, c = float(theta[0]), float(theta[1])
    low, high = _monotone_range(a, c, v_aa, v_ac, v_cc)
    return Calibrator(a, c, ((v_aa, v_ac), (v_ac, v_cc)), int(rows), low, high)


def _monotone_range(a: float, c: float, v_aa: float, v_ac: float, v_cc: float
                    ) -> tuple[float, float]:
    """The margins on which ``f`` rises: ``f'`` has the sign of ``A + B m`` (module docstring)."""
    big_a = a * (1.0 + _K * v_cc) - _K * c * v_ac
    big_b = _K * (a * v_ac - c * v_aa)
    if big_b == 0.0:  # rising everywhere, or (a model worse than chance) nowhere: constant
        return (-math.inf, math.inf) if big_a >= 0 else (0.0, 0.0)
    turn = -big_a / big_b
    return (turn, math.inf) if big_b > 0 else (-math.inf, turn)
