"""The cost-weighted logistic loss, as gradients and Hessians for XGBoost: pure numpy.

For row ``i`` with margin ``m_i``, label ``y_i``, loss weight ``w_i`` and offset ``t_i`` (both from
:class:`CostWeighting`), with ``q_i = sigmoid(m_i + t_i)``, the loss is

    L_i = -w_i * [ y_i log q_i + (1 - y_i) log(1 - q_i) ]

and its derivatives with respect to the margin are

    dL_i/dm_i   = g_i = w_i (q_i - y_i)
    d2L_i/dm_i2 = h_i = w_i q_i (1 - q_i)

(floored at 1e-16 for rows with ``w_i > 0``, like XGBoost's own ``binary:logistic``; a row with
``w_i = 0``, such as a cross-fitting fold's held-out row, has ``g = h = 0`` and no say at all).

Why the offset: weighting a row's log loss by ``w_i`` moves the optimum of ``m + t`` to
``logit P(y=1|x) + log(w1/w0)``, tilted towards the costlier mistake. With ``t_i = log(w1_i/w0_i)``
(the tilt the row's own weights cause) the optimum of ``m`` itself stays ``logit P(y=1|x)``: the
weights decide which splits the trees look for (the costly rows' mistakes count more), while the
margin remains a log-odds that the calibrator only fine-tunes. So a row's probability does not depend
on its costs (unless they are features), and serving needs no tilt. With constant class costs and
no offset this is exactly ``binary:logistic`` with sample weights ``w_i``; ``w_i = 1`` is the plain
symmetric loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..cluster import SOLO, Reduce
from ..decisions.costs import CAP, RowCosts, row_blocks, sigmoid
from .loss_weights import LossWeights

HESSIAN_FLOOR = 1e-16


def weighted_logistic_grad_hess(margin: np.ndarray, label: np.ndarray,
                                weight: np.ndarray | LossWeights,
                                offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``g = w (q - y)``, ``h = max(w q (1 - q), 1e-16)`` (0 where ``w = 0``) with
    ``q = 1 / (1 + exp(-(margin + offset)))``.

    Computed in place in the margin's precision (XGBoost hands over float32 margins and keeps
    gradients as float32): about 10x faster than a float64 expression with temporaries, which
    matters because it runs on every row every round. ``exp`` overflowing to inf gives ``q = 0``.
    A block of :data:`~costaware.decisions.costs.ROW_BLOCK` rows at a time, written into the two
    arrays returned: ``q`` and the mask of weighing rows exist for one block only, so a round
    needs the gradient and Hessian and no more per row (every value is elementwise: the same
    bits as one block). ``weight`` is one a row, or :class:`LossWeights` (one a class);
    ``offset`` is per row, one value, or None.
    """
    dtype = margin.dtype if margin.dtype.kind == "f" else np.float64
    grad = np.empty(len(margin), dtype=dtype)
    hess = np.empty(len(margin), dtype=dtype)
    per_row_offset = isinstance(offset, np.ndarray) and offset.ndim == 1
    if not isinstance(weight, LossWeights):
        weight = LossWeights(per_row=np.asarray(weight))
    for rows in row_blocks(len(margin)):
        _grad_hess_into(margin[rows], label[rows], weight.block(label, rows),
                        offset[rows] if per_row_offset else offset, grad[rows], hess[rows])
    return grad, hess


def _grad_hess_into(margin, label, weight, offset, grad, hess) -> None:
    """:func:`weighted_logistic_grad_hess` of one block, into ``grad`` and ``hess``."""
    q = np.negative(margin, dtype=grad.dtype)
    if offset is not None:
        q -= offset
    with np.errstate(over="ignore"):
        np.exp(q, out=q)
    q += 1
    np.reciprocal(q, out=q)
    np.subtract(q, label, out=grad)
    grad *= weight
    np.subtract(1, q, out=hess)
    hess *= q
    hess *= weight
    # (in place where the row weighs: a row of weight 0 keeps its 0, and no array of floors is
    # made per round)
    np.maximum(hess, hess.dtype.type(HESSIAN_FLOOR), out=hess, where=weight > 0)


def weighted_logistic_loss(margin: np.ndarray, label: np.ndarray, weight: np.ndarray,
                           offset: np.ndarray | float = 0.0) -> float:
    """``sum_i w_i * log(1 + exp(-s_i (m_i + t_i)))`` with ``s_i = 2 y_i - 1`` (the loss above,
    stably)."""
    shifted = np.asarray(margin, dtype=np.float64) + offset
    signed = np.where(label == 1, shifted, -shifted)
    return float(np.sum(weight * np.logaddexp(0.0, -signed)))


@dataclass(frozen=True)
class CostWeighting:
    """How strongly each row's costs weight the loss, and the offset that keeps margins log-odds.

    A row's regret is the cost of a mistake on it, ``r_i = r1_i = C_FN,i - C_TP,i`` for a positive
    and ``r0_i = C_FP,i - C_TN,i`` for a negative. Its loss weight is

        w_i = clip(r_i / s, 1/CAP, CAP) ** alpha,     then scaled to mean 1 over the training rows,

    with ``s`` the mean regret of the training rows: ``alpha = 0`` is the symmetric loss, ``alpha = 1``
    the fully cost-weighted one, capped so that no row weighs more than ``CAP**(2 alpha)`` times
    another (a rare huge cost, or a zero one, would otherwise leave the trees a handful of rows to
    learn from). The offset is the log ratio of the weights the row would have as a positive and as a
    negative (the scaling to mean 1 cancels):

        t_i = log(w1_i / w0_i) = alpha [log clip(r1_i / s) - log clip(r0_i / s)].
    """

    exponent: float  # alpha, in [0, 1]
    scale: float  # s, in the units of the costs
    cap: float = CAP

    @classmethod
    def fit(cls, label: np.ndarray, costs: RowCosts, exponent: float,
            reduce: Reduce | None = None) -> "CostWeighting":
        """``s`` from the training rows (summed over hosts by ``reduce``)."""
        total, rows = (reduce or SOLO.sum)(np.array([_regret_of_label(label, costs).sum(), len(label)],
                                                dtype=np.float64))
        return cls(float(exponent), float(total / rows) if rows else 0.0)

    def _relative(self, regret: np.ndarray) -> np.ndarray:
        return np.clip(regret / self.scale, 1.0 / self.cap, self.cap)

    def weights(self, label: np.ndarray, costs: RowCosts) -> np.ndarray:
        """``clip(r_i / s) ** alpha`` (not yet scaled to mean 1)."""
        if self.exponent == 0:
            return np.ones(len(label))
        return self._relative(_regret_of_label(label, costs)) ** self.exponent

    def offset(self, costs: RowCosts) -> np.ndarray:
        """``t_i = log(w1_i / w0_i)``."""
        if self.exponent == 0:
            return np.zeros(len(costs))
        r1, r0 = costs.regrets()
        return self.exponent * (np.log(self._relative(r1)) - np.log(self._relative(r0)))

    def to_dict(self) -> dict:
        return {"exponent": self.exponent, "scale": self.scale, "cap": self.cap}

    @classmethod
    def from_dict(cls, d: dict) -> "CostWeighting":
        return cls(float(d["exponent"]), float(d["scale"]), float(d.get("cap", CAP)))


def _regret_of_label(label: np.ndarray, costs: RowCosts) -> np.ndarray:
    r1, r0 = costs.regrets()
    return np.where(np.asarray(label) == 1, r1, r0)


def base_log_odds(label: np.ndarray, member: np.ndarray | None = None,
                  reduce: Reduce | None = None) -> float:
    """``log(n1 / n0)`` over the rows in ``member`` (all by default; counts summed over hosts):
    the constant margin the boosting starts from (the optimum of a constant ``m`` with offsets that
    are constant, and close to it otherwise)."""
    y = np.asarray(label) == 1
    if member is not None:
        y = y[member]
    n1, n = (reduce or SOLO.sum)(np.array([y.sum(), y.size], dtype=np.float64))
    return float(np.log(n1 / (n - n1)))


def parity_penalty(margin: np.ndarray, sensitive: np.ndarray, strength: float) -> float:
    """Demographic-parity penalty ``P = lambda * n * D^2`` with

        D = mean_{i in a} p_i - mean_{i in d} p_i,     p_i = sigmoid(m_i),

    facet ``d`` the sensitive rows, ``a`` the others, ``n`` all rows. ``D`` is a smooth stand-in for
    Clarify's DPPL (difference in positive proportions of predicted labels); the factor ``n`` puts
    ``lambda`` on the scale of the summed per-row loss. (``m`` is the margin without the offset:
    the log-odds of class 1.)
    """
    p = sigmoid(margin)
    s = np.asarray(sensitive, dtype=bool)
    gap = p[~s].mean() - p[s].mean()
    return float(strength * len(p) * gap * gap)


def parity_penalty_grad_hess(margin: np.ndarray, sensitive: np.ndarray, strength: float,
                             reduce: Reduce | None = None, member: np.ndarray | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and diagonal Hessian of :func:`parity_penalty` over the rows in ``member`` (all
    by default; a cross-fitting fold's held-out rows are not members and get 0).

    With ``c_i = 1/n_a`` for rows in ``a`` and ``c_i = -1/n_d`` for rows in ``d``,
    ``dD/dm_i = c_i p_i (1 - p_i)`` and ``d2D/dm_i2 = c_i p_i (1 - p_i)(1 - 2 p_i)``, so

        g_i = 2 lambda n D c_i p_i (1 - p_i)
        h_i = 2 lambda n [ (c_i p_i (1 - p_i))^2 + D c_i p_i (1 - p_i)(1 - 2 p_i) ]

    ``h_i`` is the exact diagonal (the full Hessian adds the rank-one coupling
    ``2 lambda n (dD/dm)(dD/dm)^T`` off the diagonal, which a tree booster cannot use). The second
    term can be negative; :func:`make_objective` clips the penalty's ``h_i`` at 0 so that Newton
    steps stay descent steps.

    ``D``, ``n``, ``n_a`` and ``n_d`` are over all member rows of the model: with rows sharded over
    hosts, ``reduce`` sums ``[sum_a p, n_a, sum_d p, n_d]`` over the hosts; each host's gradients
    are then its rows' share of the single-host ones.
    """
    p = sigmoid(margin)
    gap, c, n = parity_gap(p, sensitive, member, reduce)
    slope = p * (1 - p)
    first = c * slope
    scale = 2 * strength * n
    grad = scale * gap * first
    hess = scale * (first * first + gap * first * (1 - 2 * p))
    return grad, hess


def parity_gap(p: np.ndarray, sensitive: np.ndarray, member: np.ndarray | None = None,
               reduce: Reduce | None = None) -> tuple[float, np.ndarray, float]:
    """``(D, c, n)`` of the parity penalty on probabilities ``p`` over the rows in ``member``:
    ``D = mean_a p - mean_d p``, ``c_i = dD/dp_i`` (``1/n_a`` in facet a, ``-1/n_d`` in facet d, 0
    for a row not a member) and ``n = n_a + n_d``, the means and counts over every host
    (``reduce`` sums ``[sum_a p, n_a, sum_d p, n_d]``)."""
    s = np.asarray(sensitive, dtype=bool)
    m = np.ones(len(p), dtype=bool) if member is None else np.asarray(member, dtype=bool)
    a, d = m & ~s, m & s
    totals = np.array([p[a].sum(), a.sum(), p[d].sum(), d.sum()], dtype=np.float64)
    if reduce is not None:
        totals = reduce(totals)
    sum_a, n_a, sum_d, n_d = totals
    gap = sum_a / n_a - sum_d / n_d
    c = np.where(d, -1.0 / n_d, np.where(a, 1.0 / n_a, 0.0))
    return gap, c, n_a + n_d


def make_objective(label: np.ndarray, weight: np.ndarray, offset: np.ndarray | None = None,
                   sensitive: np.ndarray | None = None, penalty: float = 0.0,
                   reduce: Reduce | None = None) -> Callable:
    """An XGBoost custom objective ``obj(margin, dtrain) -> (grad, hess)`` for fixed rows: the
    weighted logistic loss with its offset, plus the parity penalty when ``penalty > 0``.

    Labels (int8), weights and offsets (float32, the precision XGBoost keeps gradients in) are
    bound here rather than read back from the DMatrix each round (weights that follow the label
    as two values, :class:`~costaware.training.loss_weights.LossWeights`); rows with weight 0
    (held out) have no say, in the loss or in the penalty. ``reduce`` sums the penalty's totals
    over hosts (see :func:`parity_penalty_grad_hess`).
    """
    # (the 0/1 label as int8, the dataset's own array: q - y is the same float32 either way)
    label = np.asarray(label, dtype=np.int8)
    weight = LossWeights.of(np.asarray(weight, dtype=np.float32), label, 2)
    offset = None if offset is None or not np.any(offset) else np.asarray(offset, dtype=np.float32)
    if offset is not None and offset.ndim == 1 and len(offset) and np.all(offset == offset[0]):
        offset = offset[0]  # one offset for every row (class costs): a scalar, not 4 bytes a row
    member = weight.positive(label) if penalty > 0 else None  # (only the penalty reads it)
    if penalty > 0 and sensitive is None:
        raise ValueError("the parity penalty needs the sensitive-group mask")

    def objective(margin: np.ndarray, _dtrain) -> tuple[np.ndarray, np.ndarray]:
        grad, hess = weighted_logistic_grad_hess(np.asarray(margin, dtype=np.float32), label, weight,
                                                 offset)
        if penalty > 0:
            g, h = parity_penalty_grad_hess(np.asarray(margin, dtype=np.float64), sensitive,
                                            penalty, reduce, member)
            grad += g.astype(np.float32)
            hess += np.maximum(h, 0.0).astype(np.float32)
        return grad, hess

    return objective
