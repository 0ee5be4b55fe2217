"""Classification metrics: pure numpy, no I/O.

AUC is computed on scores (the rank statistic), never on thresholded labels. Metrics at a threshold
use ``decide 1 iff score >= threshold``. Undefined ratios (no predicted positives, no positives) are
0, as scikit-learn's ``zero_division=0``, so that log lines always carry a finite number.
"""

from __future__ import annotations

import numpy as np

from .costs import RowCosts, realised_costs

EPS = 1e-15


def roc_auc(label: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney statistic with average ranks for ties:

    ``AUC = (sum_{i: y_i=1} rank_i - n1 (n1 + 1) / 2) / (n1 n0)``. NaN with a single class.
    """
    label = np.asarray(label) == 1
    score = np.asarray(score, dtype=np.float64)
    n1 = int(label.sum())
    n0 = label.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    # average ranks (1-based) over runs of equal scores
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [score.size]])
    run_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(score.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return float((ranks[label].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def log_loss(label: np.ndarray, score: np.ndarray) -> float:
    """Mean of ``-[y log p + (1-y) log(1-p)]`` with ``p`` clipped to ``[1e-15, 1-1e-15]``."""
    p = np.clip(np.asarray(score, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(label) == 1
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def confusion(label: np.ndarray, decision: np.ndarray) -> dict:
    """Counts ``tp, fp, fn, tn`` of decisions against labels."""
    y = np.asarray(label) == 1
    d = np.asarray(decision) == 1
    tp = int(np.sum(y & d))
    fp = int(np.sum(~y & d))
    fn = int(np.sum(y & ~d))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": int(y.size - tp - fp - fn)}


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def rates(counts: dict) -> dict:
    """``precision = tp/(tp+fp)``, ``recall = tp/(tp+fn)``, ``f1 = 2 tp/(2 tp+fp+fn)``,
    ``accuracy = (tp+tn)/n``."""
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
    }


def evaluate(label: np.ndarray, score: np.ndarray, threshold, costs: RowCosts) -> dict:
    """All metrics of ``score`` at ``threshold`` (a number, or one per row): AUC, log loss,
    confusion, rates, costs."""
    decision = (np.asarray(score) >= threshold).astype(np.int8)
    counts = confusion(label, decision)
    total = float(realised_costs(label, decision, costs).sum())
    n = len(label)
    return {
        "auc": roc_auc(label, score),
        "logloss": log_loss(label, score),
        "threshold": float(threshold) if np.ndim(threshold) == 0 else None,
        "confusion_matrix": counts,
        **rates(counts),
        "expected_cost_total": total,
        "expected_cost": _ratio(total, n),
        "rows": n,
    }
