"""The cost-weighted logistic loss, as gradients and Hessians for XGBoost: pure numpy.

For row ``i`` with margin ``m_i``, label ``y_i`` and probability ``p_i = sigmoid(m_i)``, the loss is

    L_i = -w_i * [ y_i log p_i + (1 - y_i) log(1 - p_i) ]

with the regret of a mistake on that row as its weight,

    w_i = C_FN,i - C_TP,i   if y_i = 1        w_i = C_FP,i - C_TN,i   if y_i = 0.

Its derivatives with respect to the margin are

    dL_i/dm_i   = g_i = w_i (p_i - y_i)
    d2L_i/dm_i2 = h_i = w_i p_i (1 - p_i)

(floored at 1e-16, like XGBoost's own ``binary:logistic``). With constant class costs this is exactly
``binary:logistic`` with sample weights ``w_i``; per-row costs make ``w_i`` example-dependent. The
plain symmetric loss is the special case ``w_i = 1``.

The minimiser of the weighted loss over a constant margin is ``log(sum_{y=1} w / sum_{y=0} w)``, and
at the optimum the margin is ``logit P(y=1|x) + log(w1/w0)``: the model's raw probability is tilted
towards the costlier class. :func:`score_offset` gives the tilt so that scores can be reported as
probabilities.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .costs import sigmoid

HESSIAN_FLOOR = 1e-16


def weighted_logistic_grad_hess(margin: np.ndarray, label: np.ndarray,
                                weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``g = w (p - y)``, ``h = max(w p (1 - p), 1e-16)`` with ``p = 1 / (1 + exp(-margin))``.

    Computed in place in the margin's precision (XGBoost hands over float32 margins and keeps
    gradients as float32): about 10x faster than a float64 expression with temporaries, which
    matters because it runs on every row every round. ``exp`` overflowing to inf gives ``p = 0``.
    """
    p = np.negative(margin, dtype=margin.dtype if margin.dtype.kind == "f" else np.float64)
    with np.errstate(over="ignore"):
        np.exp(p, out=p)
    p += 1
    np.reciprocal(p, out=p)
    grad = p - label
    grad *= weight
    hess = 1 - p
    hess *= p
    hess *= weight
    np.maximum(hess, HESSIAN_FLOOR, out=hess)
    return grad, hess


def weighted_logistic_loss(margin: np.ndarray, label: np.ndarray, weight: np.ndarray) -> float:
    """``sum_i w_i * log(1 + exp(-s_i m_i))`` with ``s_i = 2 y_i - 1`` (the loss above, stably)."""
    signed = np.where(label == 1, margin, -margin)
    return float(np.sum(weight * np.logaddexp(0.0, -signed)))


def class_weight_totals(label: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``[sum_{y=1} w, n_1, sum_{y=0} w, n_0]``: additive over shards of the rows, so the totals
    of a multi-host job are the element-wise sum of each host's."""
    positive = np.asarray(label) == 1
    weight = np.asarray(weight, dtype=np.float64)
    return np.array([weight[positive].sum(), positive.sum(), weight[~positive].sum(),
                     (~positive).sum()], dtype=np.float64)


def intercept(label: np.ndarray, weight: np.ndarray, totals: np.ndarray | None = None) -> float:
    """Constant margin minimising the weighted loss: ``log(sum_{y=1} w / sum_{y=0} w)``
    (from :func:`class_weight_totals` when given)."""
    w1, _, w0, _ = class_weight_totals(label, weight) if totals is None else totals
    return float(np.log(w1 / w0))


def score_offset(label: np.ndarray, weight: np.ndarray, totals: np.ndarray | None = None) -> float:
    """Tilt of the weighted model's margin, ``log(mean_{y=1} w / mean_{y=0} w)`` (from
    :func:`class_weight_totals` when given).

    With constant class costs this is ``log((C_FN - C_TP) / (C_FP - C_TN))`` exactly; with per-row
    costs it is the tilt of an average row (the learned threshold absorbs the rest).
    """
    w1, n1, w0, n0 = class_weight_totals(label, weight) if totals is None else totals
    return float(np.log((w1 / n1) / (w0 / n0)))


def parity_penalty(margin: np.ndarray, sensitive: np.ndarray, strength: float) -> float:
    """Demographic-parity penalty ``P = lambda * n * D^2`` with

        D = mean_{i in a} p_i - mean_{i in d} p_i,     p_i = sigmoid(m_i),

    facet ``d`` the sensitive rows, ``a`` the others, ``n`` all rows. ``D`` is a smooth stand-in for
    Clarify's DPPL (difference in positive proportions of predicted labels); the factor ``n`` puts
    ``lambda`` on the scale of the summed per-row loss.
    """
    p = sigmoid(margin)
    s = np.asarray(sensitive, dtype=bool)
    gap = p[~s].mean() - p[s].mean()
    return float(strength * len(p) * gap * gap)


def parity_penalty_grad_hess(margin: np.ndarray, sensitive: np.ndarray, strength: float,
                             reduce: Callable[[np.ndarray], np.ndarray] | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and diagonal Hessian of :func:`parity_penalty`.

    With ``c_i = 1/n_a`` for rows in ``a`` and ``c_i = -1/n_d`` for rows in ``d``,
    ``dD/dm_i = c_i p_i (1 - p_i)`` and ``d2D/dm_i2 = c_i p_i (1 - p_i)(1 - 2 p_i)``, so

        g_i = 2 lambda n D c_i p_i (1 - p_i)
        h_i = 2 lambda n [ (c_i p_i (1 - p_i))^2 + D c_i p_i (1 - p_i)(1 - 2 p_i) ]

    ``h_i`` is the exact diagonal (the full Hessian adds the rank-one coupling
    ``2 lambda n (dD/dm)(dD/dm)^T`` off the diagonal, which a tree booster cannot use). The second
    term can be negative; :func:`make_objective` clips the penalty's ``h_i`` at 0 so that Newton
    steps stay descent steps.

    ``D``, ``n``, ``n_a`` and ``n_d`` are over all rows of the model: with rows sharded over hosts,
    ``reduce`` sums ``[sum_a p, n_a, sum_d p, n_d]`` over the hosts; each host's gradients are
    then its rows' share of the single-host ones.
    """
    p = sigmoid(margin)
    s = np.asarray(sensitive, dtype=bool)
    totals = np.array([p[~s].sum(), (~s).sum(), p[s].sum(), s.sum()], dtype=np.float64)
    if reduce is not None:
        totals = reduce(totals)
    sum_a, n_a, sum_d, n_d = totals
    gap = sum_a / n_a - sum_d / n_d
    c = np.where(s, -1.0 / n_d, 1.0 / n_a)
    slope = p * (1 - p)
    first = c * slope
    scale = 2 * strength * (n_a + n_d)
    grad = scale * gap * first
    hess = scale * (first * first + gap * first * (1 - 2 * p))
    return grad, hess


def make_objective(label: np.ndarray, weight: np.ndarray, sensitive: np.ndarray | None = None,
                   penalty: float = 0.0,
                   reduce: Callable[[np.ndarray], np.ndarray] | None = None) -> Callable:
    """An XGBoost custom objective ``obj(margin, dtrain) -> (grad, hess)`` for fixed rows: the
    weighted logistic loss, plus the parity penalty when ``penalty > 0``.

    Labels and weights are bound here (as float32, the precision XGBoost keeps gradients in) rather
    than read back from the DMatrix each round. (Training uses it for the parity penalty and for
    sampled rounds; without either, the weighted loss is XGBoost's own ``binary:logistic`` with
    sample weights, whose gradients XGBoost computes natively: see ``training.Boosting``.)
    ``reduce`` sums the penalty's totals over hosts (see :func:`parity_penalty_grad_hess`).
    """
    label = np.asarray(label, dtype=np.float32)
    weight = np.asarray(weight, dtype=np.float32)
    if penalty > 0 and sensitive is None:
        raise ValueError("the parity penalty needs the sensitive-group mask")

    def objective(margin: np.ndarray, _dtrain) -> tuple[np.ndarray, np.ndarray]:
        grad, hess = weighted_logistic_grad_hess(np.asarray(margin, dtype=np.float32), label, weight)
        if penalty > 0:
            g, h = parity_penalty_grad_hess(np.asarray(margin, dtype=np.float64), sensitive,
                                            penalty, reduce)
            grad += g.astype(np.float32)
            hess += np.maximum(h, 0.0).astype(np.float32)
        return grad, hess

    return objective


def fitted_offset(margin: np.ndarray, label: np.ndarray, start: float = 0.0) -> float:
    """Offset ``a`` minimising the log loss of ``sigmoid(margin - a)`` (intercept recalibration).

    Newton's method on ``f(a) = sum_i logloss(y_i, sigmoid(m_i - a))``, which is convex with
    ``f'(a) = sum_i (y_i - p_i)`` and ``f''(a) = sum_i p_i (1 - p_i)``. Both classes must be present.
    """
    margin = np.asarray(margin, dtype=np.float64)
    y = (np.asarray(label) == 1).astype(np.float64)
    a = float(start)
    for _ in range(100):
        p = sigmoid(margin - a)
        grad = float(np.sum(y - p))
        hess = float(np.sum(p * (1 - p)))
        if hess < 1e-12:
            break
        step = float(np.clip(grad / hess, -5.0, 5.0))
        a -= step
        if abs(step) < 1e-10:
            break
    return a
