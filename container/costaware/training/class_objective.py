"""More than two classes: the cost-weighted loss, as XGBoost's custom objective.

Notation as in :mod:`costaware.decisions.multiclass` (``K`` classes, ``C[k][j]`` the cost of deciding ``j``
when the true class is ``k``). A class's *regret* is the mean extra cost of a
wrong decision on one of its rows, ``r_k = mean_{j != k} (C[k][j] - C[k][k])`` (for K = 2 this is
the binary ``C_FN - C_TP`` and ``C_FP - C_TN``); its weight, as in the binary loss,
``w_k = clip(r_k / s, 1/CAP, CAP) ** alpha`` with ``s`` the mean regret of the training rows,
then scaled to mean 1 over the rows. A row ``i`` of class ``y`` has the weighted softmax
cross-entropy with offsets ``o_k = log w_k``:

    L_i = -w_y log q_{i,y},   q_i = softmax(f_i + o),

whose gradient and Hessian diagonal in the margins ``f_i`` are

    g_{i,k} = w_y (q_{i,k} - [k = y]),   h_{i,k} = w_y q_{i,k} (1 - q_{i,k}).

The weights make costly classes' rows count more in every split; the offsets undo their effect
on the margins: where the weighted loss is minimised, ``q_k`` is proportional to ``w_k pi_k``
(``pi_k`` the class-``k`` probability) so ``softmax(f)_k = pi_k`` - the margins stay log
probabilities (up to a constant per row) and the calibrator corrects what is left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cluster import SOLO, Reduce
from ..decisions.costs import CAP, row_blocks
from ..decisions.multiclass import class_regrets, row_regrets, softmax
from .loss_weights import LossWeights
from .objective import parity_gap


def row_loss_weights(label: np.ndarray, matrix: np.ndarray, exponent: float,
                     cells: dict | None = None, reduce: Reduce = SOLO.sum
                     ) -> tuple["ClassWeighting", np.ndarray]:
    """The loss weight of each row (module docstring) at its own matrix: with per-row ``cells``,
    ``w_i = clip(r_i / s, 1/CAP, CAP) ** alpha`` (:func:`row_regrets`, ``s`` their mean), scaled
    to mean 1, and each class's weight (the offsets' ``w_k``) the mean weight of its rows;
    without, :meth:`ClassWeighting.fit`'s ``w_{y_i}``. Every mean is over all hosts' rows
    (``reduce`` adds the sums up). Returns ``(weighting, w)``."""
    y = np.asarray(label, dtype=np.int64)
    k = len(matrix)
    if not cells:
        weighting = ClassWeighting.fit(y, matrix, exponent, reduce)
        return weighting, np.asarray(weighting.weights)[y]
    regrets = row_regrets(y, matrix, cells)
    total, rows = reduce(np.array([regrets.sum(), len(y)], dtype=np.float64))
    scale = float(total / rows)
    if exponent == 0 or scale <= 0:
        return ClassWeighting(float(exponent), scale, (1.0,) * k), np.ones(len(y))
    weight = np.clip(regrets / scale, 1.0 / CAP, CAP) ** exponent
    weight = weight / (reduce(np.array([weight.sum()]))[0] / rows)
    sums = reduce(np.concatenate([np.bincount(y, weight, minlength=k),
                                  np.bincount(y, minlength=k).astype(np.float64)]))
    per_class = np.where(sums[k:] > 0, sums[:k] / np.maximum(sums[k:], 1), 1.0)
    return ClassWeighting(float(exponent), scale, tuple(float(w) for w in per_class)), weight


@dataclass(frozen=True)
class ClassWeighting:
    """The loss weight of each class (module docstring): ``w_k``, scaled to mean 1 over the
    training rows, and the offsets ``o_k = log w_k``."""

    exponent: float
    scale: float  # s: the training rows' mean regret
    weights: tuple[float, ...]  # w_k, mean 1 over the training rows

    @classmethod
    def fit(cls, label: np.ndarray, matrix: np.ndarray, exponent: float,
            reduce: Reduce = SOLO.sum) -> "ClassWeighting":
        """``w_k`` from the training rows' class counts (summed over hosts by ``reduce``)."""
        k = len(matrix)
        counts = reduce(np.bincount(np.asarray(label, dtype=np.int64), minlength=k
                                    ).astype(np.float64))
        regrets = class_regrets(matrix)
        scale = float((counts * regrets).sum() / counts.sum())
        if exponent == 0 or scale <= 0:
            return cls(float(exponent), scale, (1.0,) * k)
        relative = np.clip(regrets / scale, 1.0 / CAP, CAP) ** exponent
        mean = (counts * relative).sum() / counts.sum()
        return cls(float(exponent), scale, tuple(float(w) for w in relative / mean))

    @property
    def offsets(self) -> np.ndarray:
        return np.log(np.asarray(self.weights))

    def to_dict(self) -> dict:
        return {"exponent": self.exponent, "scale": self.scale, "class_weights": list(self.weights)}


def loss_gradients(margins: np.ndarray, label: np.ndarray, row_weight: np.ndarray,
                   offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(g, h)`` of the module docstring, ``(n, K)`` each; ``row_weight`` is ``w_{y_i}`` (0 for a
    row a fold model must not see: gradient and Hessian 0)."""
    q = softmax(margins + offsets)
    onehot = np.zeros_like(q)
    onehot[np.arange(len(q)), np.asarray(label, dtype=np.int64)] = 1.0
    w = np.asarray(row_weight, dtype=np.float64)[:, None]
    grad = w * (q - onehot)
    # XGBoost needs a positive Hessian where a row counts; 1e-16 keeps a saturated row's tiny
    hess = np.maximum(w * q * (1.0 - q), np.where(w > 0, 1e-16, 0.0))
    return grad, hess


def weighted_loss(margins: np.ndarray, label: np.ndarray, row_weight: np.ndarray,
                  offsets: np.ndarray) -> float:
    """``sum_i L_i``: what :func:`loss_gradients` differentiates (tests check it numerically)."""
    q = softmax(margins + offsets)
    return float(-(row_weight * np.log(q[np.arange(len(q)), np.asarray(label, np.int64)])).sum())


def favourable_parity_penalty(margins: np.ndarray, sensitive: np.ndarray,
                              favourable: tuple[int, ...], strength: float) -> float:
    """The demographic-parity penalty on the favourable classes' probability,
    ``P = lambda * n * D^2``, ``D = mean_{i in a} F_i - mean_{i in d} F_i``,
    ``F_i = sum_{k favourable} softmax(f_i)_k`` (the margins without the offsets: log
    probabilities); for two classes with class 1 favourable it is the binary
    :func:`costaware.training.objective.parity_penalty`."""
    fav = np.isin(np.arange(margins.shape[1]), favourable)
    share = softmax(margins)[:, fav].sum(axis=1)
    s = np.asarray(sensitive, dtype=bool)
    gap = share[~s].mean() - share[s].mean()
    return float(strength * len(share) * gap * gap)


def favourable_parity_grad_hess(margins: np.ndarray, sensitive: np.ndarray,
                                favourable: tuple[int, ...], strength: float,
                                reduce: Reduce | None = None, member: np.ndarray | None = None
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and diagonal Hessian ``(n, K)`` of :func:`favourable_parity_penalty` in the
    margins, over the rows in ``member`` (others get 0). Through the softmax, with ``u_k = [k
    favourable]``, ``dF_i/df_ik = q_ik (u_k - F_i)`` and ``d2F_i/df_ik2 = q_ik (u_k - F_i)(1 - 2
    q_ik)``; with ``c_i = dD/dF_i`` (:func:`costaware.training.objective.parity_gap`, over every host)

        g_ik = 2 lambda n D c_i dF_i/df_ik
        h_ik = 2 lambda n [ (c_i dF_i/df_ik)^2 + D c_i d2F_i/df_ik2 ]

    the exact diagonal (the objective clips ``h`` at 0, as the binary one)."""
    q = softmax(margins)
    fav = np.isin(np.arange(q.shape[1]), favourable).astype(np.float64)
    share = q @ fav
    gap, c, n = parity_gap(share, sensitive, member, reduce)
    first = q * (fav[None, :] - share[:, None])  # dF_i / df_ik
    scale = 2 * strength * n
    grad = scale * gap * c[:, None] * first
    hess = scale * ((c[:, None] * first) ** 2 + gap * c[:, None] * first * (1 - 2 * q))
    return grad, hess


def class_objective(label: np.ndarray, row_weight: np.ndarray, offsets: np.ndarray,
                    sensitive: np.ndarray | None = None, favourable: tuple[int, ...] = (),
                    penalty: float = 0.0, reduce: Reduce | None = None):
    """An XGBoost custom objective ``obj(margins, dtrain) -> (g, h)`` (``(n, K)`` float32 each,
    the precision XGBoost keeps them in) for fixed rows: :func:`loss_gradients`, plus
    :func:`favourable_parity_grad_hess` when ``penalty > 0`` (rows of weight 0, held out of a fold
    model, have no say in either). Without the penalty, a block of
    :data:`~costaware.decisions.costs.ROW_BLOCK` rows at a time: the float64 softmax, one-hot and
    products exist for one block, not for ``n x K`` values at once (the penalty's gap needs every
    row's probabilities first). Each value is rounded to float32 once, as XGBoost rounds a
    float64 gradient: the same gradients either way."""
    label = np.asarray(label)
    # (the weights that follow the class as K values: :mod:`costaware.training.loss_weights`)
    row_weight = LossWeights.of(row_weight, label, len(offsets))
    member = row_weight.positive(label) if penalty > 0 else None
    if penalty > 0 and sensitive is None:
        raise ValueError("the parity penalty needs the sensitive-group mask")

    def objective(margins: np.ndarray, _dtrain) -> tuple[np.ndarray, np.ndarray]:
        f = np.asarray(margins).reshape(len(label), -1)
        if penalty > 0:
            f = np.asarray(f, dtype=np.float64)
            grad, hess = loss_gradients(f, label, row_weight.block(label, slice(None)), offsets)
            g, h = favourable_parity_grad_hess(f, sensitive, favourable, penalty, reduce, member)
            return ((grad + g).astype(np.float32), (hess + np.maximum(h, 0.0)).astype(np.float32))
        grad = np.empty(f.shape, dtype=np.float32)
        hess = np.empty(f.shape, dtype=np.float32)
        for rows in row_blocks(len(f)):
            grad[rows], hess[rows] = loss_gradients(np.asarray(f[rows], dtype=np.float64),
                                                    label[rows], row_weight.block(label, rows),
                                                    offsets)
        return grad, hess

    return objective
