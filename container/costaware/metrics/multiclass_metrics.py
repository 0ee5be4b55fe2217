"""More than two classes: a channel's metrics, from summaries that add up over hosts.

Each metric is as :mod:`costaware.metrics.registry` defines it; the one-vs-rest AUC is exact on the
gathered scores up to :data:`costaware.metrics.classification.EXACT_AUC_ROWS` rows, from summed histograms beyond.
"""

from __future__ import annotations

import math

import numpy as np

from ..cluster import SOLO, Cluster
from .classification import AUC_BINS, EXACT_AUC_ROWS, binned_auc, exact_auc, score_histogram
from ..decisions.costs import row_blocks
from ..decisions.multiclass import cells_of, true_class_costs


def one_vs_rest_auc(label: np.ndarray, p: np.ndarray) -> tuple[float, list[float]]:
    """Macro one-vs-rest AUC: the mean over classes of the AUC of ``p[:, k]`` separating class
    ``k`` from the rest (:func:`costaware.metrics.classification.exact_auc`: Mann-Whitney, ties counted half); a
    class absent from the rows, or the only one present, has no AUC (NaN) and is left out of the
    mean. At K = 2 both classes' AUCs are the AUC of ``p[:, 1]`` (``p[:, 0] = 1 - p[:, 1]``
    reverses its order), so the mean is the binary ``auc``."""
    y = np.asarray(label, dtype=np.int64)
    per_class = [exact_auc((y == k).astype(np.int8), p[:, k]) for k in range(p.shape[1])]
    defined = [a for a in per_class if not math.isnan(a)]
    return (float(np.mean(defined)) if defined else float("nan")), per_class


def class_summary(label: np.ndarray, p: np.ndarray, decision: np.ndarray, matrix: np.ndarray,
                  bins: int = 10, cells: dict | None = None) -> np.ndarray:
    """The sums :func:`class_metrics` reads, as one vector that adds up over hosts (so several
    hosts' metrics are one host's on all the rows): ``[rows, sum of -log p[i, y_i] (p clipped at
    1e-15), sum of the Brier terms]``, then per bin of ``max_k p[i, k]`` ``[rows, sum of the top
    probability, rows whose top class is the true one]`` (``bins`` x 3), the confusion matrix
    ``[true][decided]`` (K x K), its cells' costs ``sum_{i: y_i = k, d_i = j} C_i[k][j]`` (K x K),
    the cost of deciding each class for every row ``sum_i C_i[y_i][j]`` (K; each row at its own
    matrix ``C_i`` with per-row ``cells``: :func:`true_class_costs`), and per class and bin of
    ``p[:, k]`` ``[rows, sum of p[:, k], rows of class k]`` (K x ``bins`` x 3). Beyond
    :data:`~costaware.decisions.costs.ROW_BLOCK` rows, the sum of the blocks' summaries (its
    ``(rows, K)`` float64 temporaries would cost several times ``p`` at once)."""
    blocks = row_blocks(len(label))
    if len(blocks) == 1:
        return _class_summary(label, p, decision, matrix, bins, cells)
    return np.sum([_class_summary(label[b], p[b], decision[b], matrix, bins, cells_of(cells, b))
                   for b in blocks], axis=0)


def _class_summary(label: np.ndarray, p: np.ndarray, decision: np.ndarray, matrix: np.ndarray,
                   bins: int, cells: dict | None) -> np.ndarray:
    y = np.asarray(label, dtype=np.int64)
    d = np.asarray(decision, dtype=np.int64)
    n, k = len(y), p.shape[1]
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    confusion = np.zeros((k, k))
    np.add.at(confusion, (y, d), 1)
    top = p.max(axis=1) if n else np.zeros(0)
    hit = (p.argmax(axis=1) == y).astype(np.float64) if n else np.zeros(0)
    own = true_class_costs(y, matrix, cells)
    cell_costs = np.zeros((k, k))
    np.add.at(cell_costs, (y, d), own[np.arange(n), d])

    def binned(values, truth):
        where = np.minimum((values * bins).astype(np.int64), bins - 1)
        return np.stack([np.bincount(where, minlength=bins), np.bincount(where, values, bins),
                         np.bincount(where, truth, bins)], axis=1)

    reliability = [binned(p[:, c], (y == c).astype(np.float64)) for c in range(k)]
    return np.concatenate([
        [n, -np.log(np.clip(p[np.arange(n), y], 1e-15, 1 - 1e-15)).sum(),
         ((p - onehot) ** 2).sum()],
        binned(top, hit).ravel(), confusion.ravel(), cell_costs.ravel(), own.sum(axis=0),
        np.ravel(reliability)]).astype(np.float64)


def class_metrics(summary: np.ndarray, matrix: np.ndarray, auc_per_class: list[float],
                  bins: int = 10) -> dict:
    """A channel's metrics from its (summed) :func:`class_summary` at ``decision``:

    * ``logloss`` ``-mean log p[i, y_i]`` (``p[i, y_i]`` clipped to ``[1e-15, 1 - 1e-15]``),
      ``brier`` ``(1/2) mean sum_k (p[i, k] - [y_i = k])**2`` (at K = 2 the binary
      ``mean (p - y)**2``), ``top_label_ece`` the top-label expected calibration error
      ``sum_b |sum_{i in b} (max_k p[i, k] - [argmax_k p[i, k] = y_i])| / n`` over ``bins``
      equal-width bins of ``max_k p[i, k]``;
    * ``auc`` macro one-vs-rest (the mean of ``auc_per_class`` where defined: see
      :func:`channel_auc`), ``accuracy``, ``balanced_accuracy`` the mean of the per-class recalls
      over the classes present, ``recall_per_class``;
    * ``reliability_per_class``: for each class ``k`` and each of ``bins`` equal-width bins of
      ``p[:, k]``, ``[rows, sum of p[:, k], rows of class k]`` (one-vs-rest reliability);
    * ``confusion`` ``[true][decided]`` counts, ``cell_costs`` their costs (``count * C``
      without per-row cells),
      ``cost`` their sum, ``expected_cost`` per row, ``cost_all`` the cost of deciding each single
      class for every row and ``savings`` ``1 - cost / min(cost_all)`` (0: no better than the
      cheapest single decision for everyone); with per-row ``cells`` each row's costs are its
      own matrix's (:func:`true_class_costs`).
    """
    k = len(matrix)
    n, loss, brier = summary[:3]
    top = summary[3:3 + 3 * bins].reshape(bins, 3)
    at = 3 + 3 * bins
    confusion = np.rint(summary[at:at + k * k]).astype(np.int64).reshape(k, k)
    cell_costs = summary[at + k * k:at + 2 * k * k].reshape(k, k)
    cost_all = summary[at + 2 * k * k:at + 2 * k * k + k]  # deciding j for everyone
    reliability = summary[at + 2 * k * k + k:].reshape(k, bins, 3)
    n = int(round(n))
    cost = float(cell_costs.sum())
    counts = confusion.sum(axis=1)
    cheapest = float(cost_all.min())
    defined = [a for a in auc_per_class if not math.isnan(a)]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diag(confusion) / counts
    return {
        "rows": n,
        "logloss": float(loss / n) if n else float("nan"),
        "brier": float(brier / n / 2) if n else float("nan"),
        "top_label_ece": float(np.abs(top[:, 1] - top[:, 2]).sum() / n) if n else float("nan"),
        "auc": float(np.mean(defined)) if defined else float("nan"),
        "accuracy": float(np.diag(confusion).sum() / n) if n else float("nan"),
        "balanced_accuracy": float(np.nanmean(recall)) if (counts > 0).any() else float("nan"),
        "recall_per_class": [float(r) for r in recall],
        "cost": cost,
        "expected_cost": cost / n if n else float("nan"),
        "cost_all": [float(c) for c in cost_all],
        "savings": 1.0 - cost / cheapest if cheapest > 0 else float("nan"),
        "reliability_per_class": [[[int(r), float(sp), float(sy)] for r, sp, sy in c]
                                  for c in reliability],
        "confusion": confusion.tolist(),
        "cell_costs": cell_costs.tolist(),
    }


def channel_auc(label: np.ndarray, p: np.ndarray, cluster: Cluster = SOLO) -> list[float]:
    """Each class's one-vs-rest AUC over every host's rows, as the binary path computes its AUC
    (:func:`costaware.training.evaluation.metrics_at`): exact (:func:`one_vs_rest_auc`) on the gathered
    labels and scores up to :data:`~costaware.metrics.classification.EXACT_AUC_ROWS` rows, beyond from summed
    per-class histograms of ``logit(p[:, k])`` (:func:`costaware.metrics.classification.binned_auc`)."""
    y = np.asarray(label, dtype=np.int64)
    k = p.shape[1]
    rows = cluster.sum([len(y)])[0]  # the same test on every host: gather is collective
    if rows <= EXACT_AUC_ROWS:
        gathered = cluster.gather(np.asarray(p, dtype=np.float64).ravel()).reshape(-1, k)
        return one_vs_rest_auc(cluster.gather(y), gathered)[1]
    # a block of rows at a time: each class's histogram reads a float64 column of its rows
    local = np.sum([np.stack([score_histogram(y[b] == c, p[b, c]) for c in range(k)])
                    for b in row_blocks(len(y))], axis=0)
    summed = cluster.sum(local.ravel()).reshape(k, 2, AUC_BINS + 2)
    return [binned_auc(bins) for bins in summed]


def channel_metrics(label: np.ndarray, p: np.ndarray, decision: np.ndarray,
                    matrix: np.ndarray, bins: int = 10, cluster: Cluster = SOLO,
                    cells: dict | None = None) -> dict:
    """:func:`class_metrics` of the rows over every host of ``cluster`` (their summaries
    summed, the AUC as :func:`channel_auc`); with per-row ``cells``, each row at its own costs."""
    summary = cluster.sum(class_summary(label, p, decision, matrix, bins, cells))
    return class_metrics(summary, matrix, channel_auc(label, p, cluster), bins)
