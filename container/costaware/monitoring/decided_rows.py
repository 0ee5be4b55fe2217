"""What a served model's decisions cost, for any number of classes K: the figures a baseline
records and a monitoring window is compared with, each with its standard error.

A decided row is its calibrated probabilities ``P`` (K of them), the decision ``d`` (a class
index), its cost matrix ``C[true, decided]`` (the class costs, or the row's own cells), and, when
the ground truth has come in, its label ``y``; with a facet, whether it is in the sensitive facet
``d``. Two classes are the case K = 2: ``C = [[tn, fp], [fn, tp]]``.

Figures without labels (:class:`UnlabelledSums`, additive over batches, so a window of any size
is read in constant memory):

* base rate from the probabilities: ``mean_i P[i, k]`` for each class, with
  ``se = sd(P[:, k]) / sqrt(n)``;
* the expected cost of the decision the model predicts: ``mean_i sum_y P[i, y] C_i[y, d_i]``;
* the share of each decision; with a facet, DPPL (the difference in favourable decisions, facet a
  minus facet d) with ``se = sqrt(q_a (1 - q_a) / n_a + q_d (1 - q_d) / n_d)``.

Figures with labels (:func:`labelled_figures`, on the labelled rows):

* realized cost per decision ``mean_i C_i[y_i, d_i]``; the trivial rules' ``mean_i C_i[y_i, k]``
  (everyone decided ``k``); ``savings = 1 - cost / min_k(trivial_k)`` (its standard error by the
  delta method, :func:`savings_se`); the observed share of each class (``observed_base_rate``); the paired difference with
  the cheapest trivial rule ``mean_i (C_i[y_i, d_i] - C_i[y_i, k*])`` and its standard error;
* the gap between predicted and realized cost, ``mean_i (sum_y P[i, y] C_i[y, d_i] - C_i[y_i, d_i])``:
  zero in expectation when the probabilities are calibrated, whatever the costs;
* log loss ``mean_i -log P[i, y_i]`` (probabilities clipped to [1e-15, 1]), the expected
  calibration error ``ECE = sum_b n_b / n |mean(y == k) - mean P[:, k]|`` over ten equal-width
  bins of the probability of class 1 (K = 2) or of the top class (K >= 3), the reliability bins;
* AUC (class 1 against 0; the mean one-against-rest AUC with K >= 3) with Hanley and McNeil's
  standard error, the confusion matrix (rows: label, columns: decision);
* with a facet, Clarify's post-training bias of the decisions (favourable = the favourable
  classes) with a percentile interval from a Poisson bootstrap of the facet-label-decision table.

Every standard error is the usual one of a mean of independent rows; an interval is
``figure +- z * se``. A mean of rows also carries ``rows`` and their third central moment
``m3 = mean_i (x_i - mean)^3``: the checks pool a window's and the baseline's variance and correct
their bounds for skewness with them (:mod:`costaware.monitoring.checks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..metrics import clarify

LOG_CLIP = 1e-15
RELIABILITY_BINS = 10
BOOTSTRAP = 200


@dataclass
class DecidedRows:
    """Decided rows, for any K (see the module docstring)."""

    probabilities: np.ndarray  # (n, K)
    decision: np.ndarray  # (n,) class index
    costs: np.ndarray  # (n, K, K): C[true, decided]
    label: np.ndarray | None = None  # (n,) class index
    sensitive: np.ndarray | None = None  # (n,) bool: in facet d
    favourable: tuple[int, ...] = (1,)  # the favourable decisions (and labels)
    keys: np.ndarray | None = None  # (n,) each row's request key (a comparison pairs by it)
    times: np.ndarray | None = None  # (n,) seconds since 1970 (NaN: unknown)
    events: np.ndarray | None = None  # (n,) int64 hash of the record's eventId (-1: none)

    def __len__(self) -> int:
        return len(self.decision)

    @property
    def k(self) -> int:
        return self.probabilities.shape[1]

    def expected_costs(self) -> np.ndarray:
        """``E[i, d] = sum_y P[i, y] C_i[y, d]``, ``(n, K)``."""
        return np.einsum("iy,iyd->id", self.probabilities, self.costs)

    def chosen_expected_cost(self) -> np.ndarray:
        return self.expected_costs()[np.arange(len(self)), self.decision]

    def take(self, index) -> "DecidedRows":
        pick = (lambda a: None if a is None else a[index])
        return DecidedRows(self.probabilities[index], self.decision[index], self.costs[index],
                           pick(self.label), pick(self.sensitive), self.favourable,
                           pick(self.keys), pick(self.times), pick(self.events))

    @staticmethod
    def concat(parts: list["DecidedRows"], k: int, favourable: tuple[int, ...]) -> "DecidedRows":
        if not parts:
            return DecidedRows(np.empty((0, k)), np.empty(0, np.int64), np.empty((0, k, k)),
                               np.empty(0, np.int64), None, favourable)
        join = (lambda name: None if getattr(parts[0], name) is None
                else np.concatenate([getattr(p, name) for p in parts]))
        return DecidedRows(join("probabilities"), join("decision"), join("costs"), join("label"),
                           join("sensitive"), favourable, join("keys"), join("times"),
                           join("events"))


def binary_costs(fp, fn, tp, tn) -> np.ndarray:
    """Two classes' per-row cells as ``(n, 2, 2)`` ``C[true, decided]``."""
    return np.stack([np.stack([tn, fp], axis=-1), np.stack([fn, tp], axis=-1)], axis=1)


def mean_and_se(values: np.ndarray) -> dict:
    """``{"value": mean, "se": sd / sqrt(n), "rows": n, "m3": mean((x - mean)^3)}`` (se None
    under two rows; m3 None where it overflows: the checks then make no skewness correction)."""
    n = len(values)
    if n == 0:
        return {"value": None, "se": None, "rows": 0, "m3": None}
    mean = float(np.mean(values))
    se = float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else None
    with np.errstate(over="ignore", invalid="ignore"):
        m3 = float(np.mean((values - mean) ** 3))
    return {"value": mean, "se": se, "rows": n, "m3": m3 if math.isfinite(m3) else None}


class UnlabelledSums:
    """Sums of a stream of decided rows (no labels needed): base rate, expected cost, decisions,
    DPPL; :meth:`figures` turns them into means with standard errors."""

    def __init__(self, k: int, favourable: tuple[int, ...]):
        self.k, self.favourable = k, favourable
        self.n = 0
        self.p_sum = np.zeros(k)
        self.p_sq = np.zeros(k)
        self.p_cube = np.zeros(k)
        self.cost_sum = 0.0
        self.cost_sq = 0.0
        self.cost_cube = 0.0
        self.decisions = np.zeros(k, dtype=np.int64)
        self.facet_decisions = np.zeros((2, 2), dtype=np.int64)  # (facet a/d, favourable no/yes)

    def add(self, rows: DecidedRows) -> None:
        if not len(rows):
            return
        self.n += len(rows)
        self.p_sum += rows.probabilities.sum(axis=0)
        self.p_sq += np.square(rows.probabilities).sum(axis=0)
        self.p_cube += (rows.probabilities ** 3).sum(axis=0)
        chosen = rows.chosen_expected_cost()
        self.cost_sum += float(chosen.sum())
        self.cost_sq += float(np.square(chosen).sum())
        with np.errstate(over="ignore"):  # huge costs: m3 is then None (figures)
            self.cost_cube += float((chosen ** 3).sum())
        self.decisions += np.bincount(rows.decision, minlength=self.k)[:self.k]
        if rows.sensitive is not None:
            good = np.isin(rows.decision, self.favourable)
            code = rows.sensitive.astype(np.int64) * 2 + good
            self.facet_decisions += np.bincount(code, minlength=4).reshape(2, 2)

    def figures(self) -> dict:
        n = self.n
        out = {"rows": n,
               "base_rate": [_mean_se(s, q, c, n)
                             for s, q, c in zip(self.p_sum, self.p_sq, self.p_cube)],
               "expected_cost": _mean_se(self.cost_sum, self.cost_sq, self.cost_cube, n),
               "decision_share": (self.decisions / n).tolist() if n else None}
        if self.facet_decisions.sum():
            out["dppl"] = _dppl(self.facet_decisions)
        return out


def _mean_se(total: float, squares: float, cubes: float, n: int) -> dict:
    """:func:`mean_and_se` from the sums of the values, their squares and their cubes."""
    if n == 0:
        return {"value": None, "se": None, "rows": 0, "m3": None}
    mean = total / n
    var = max(squares / n - mean * mean, 0.0) * n / (n - 1) if n > 1 else None
    mu = np.float64(mean)  # numpy's overflow is inf (then None), Python's an exception
    with np.errstate(over="ignore", invalid="ignore"):
        m3 = float(cubes / n - 3 * mu * squares / n + 2 * mu ** 3)
    return {"value": float(mean), "se": None if var is None else math.sqrt(var / n), "rows": n,
            "m3": m3 if math.isfinite(m3) else None}


def _dppl(table: np.ndarray) -> dict:
    """DPPL of the favourable decisions, facet a minus facet d, with its standard error."""
    n_a, n_d = table.sum(axis=1)
    if n_a == 0 or n_d == 0:
        return {"value": None, "se": None, "rows_a": int(n_a), "rows_d": int(n_d)}
    q_a, q_d = table[0, 1] / n_a, table[1, 1] / n_d
    se = math.sqrt(q_a * (1 - q_a) / n_a + q_d * (1 - q_d) / n_d)
    return {"value": float(q_a - q_d), "se": se, "rows_a": int(n_a), "rows_d": int(n_d)}


def labelled_figures(rows: DecidedRows, seed: int = 0) -> dict:
    """The figures with labels (module docstring); ``{"rows": 0}`` without labelled rows."""
    n = len(rows)
    if n == 0 or rows.label is None:
        return {"rows": 0}
    # (first, before the per-row costs below exist: their temporaries and these were the peak
    # of a 2.2M-row job's memory together, ``bench_training.py --memory``)
    reliability, auc = calibration(rows), auc_with_se(rows)
    index = np.arange(n)
    y, d = rows.label, rows.decision
    realized = rows.costs[index, y, d]
    trivial = rows.costs[index, y, :]  # (n, K): everyone decided k
    trivial_means = trivial.mean(axis=0)
    best = int(np.argmin(trivial_means))
    cheaper = float(trivial_means[best])
    cost = float(realized.mean())
    p_true = np.clip(rows.probabilities[index, y], LOG_CLIP, 1.0)
    out = {
        "rows": n,
        "realized_cost": mean_and_se(realized),
        "trivial_costs": trivial_means.tolist(),
        "cheapest_trivial": best,
        "savings": (1.0 - cost / cheaper) if cheaper > 0 else None,
        "savings_se": savings_se(realized, trivial[:, best]),
        "cost_minus_trivial": mean_and_se(realized - trivial[:, best]),
        "cost_gap": mean_and_se(rows.chosen_expected_cost() - realized),
        "log_loss": mean_and_se(-np.log(p_true)),
        "observed_base_rate": [mean_and_se((y == k).astype(np.float64)) for k in range(rows.k)],
        "confusion": _confusion(y, d, rows.k).tolist(),
        **reliability,
        "auc": auc,
    }
    if rows.sensitive is not None:
        out["bias"] = bias_with_intervals(rows, seed)
    return out


def savings_se(cost: np.ndarray, trivial: np.ndarray) -> float | None:
    """The delta method's standard error of ``1 - A / B`` (``A``, ``B`` the means of the rows'
    realized and cheapest-trivial costs): ``sqrt(var(c_i / B - A t_i / B^2) / n)``."""
    n = len(cost)
    b = float(trivial.mean()) if n else 0.0
    if n < 2 or b <= 0:
        return None
    a = float(cost.mean())
    return float(np.std(cost / b - a * trivial / (b * b), ddof=1) / math.sqrt(n))


def _confusion(y: np.ndarray, d: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + d, minlength=k * k)[:k * k].reshape(k, k)


def calibration(rows: DecidedRows) -> dict:
    """ECE and the reliability bins (module docstring): the probability of class 1 with two
    classes, of the top class with more (its hit rate against its mean probability)."""
    if rows.k == 2:
        p, hit = rows.probabilities[:, 1], rows.label == 1
    else:
        top = np.argmax(rows.probabilities, axis=1)
        p, hit = rows.probabilities[np.arange(len(rows)), top], rows.label == top
    which = np.minimum((p * RELIABILITY_BINS).astype(np.int64), RELIABILITY_BINS - 1)
    count = np.bincount(which, minlength=RELIABILITY_BINS)
    mean_p = np.bincount(which, weights=p, minlength=RELIABILITY_BINS)
    rate = np.bincount(which, weights=hit.astype(np.float64), minlength=RELIABILITY_BINS)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p, rate = mean_p / count, rate / count
    used = count > 0
    ece = float(np.sum(count[used] / len(rows) * np.abs(rate[used] - mean_p[used])))
    bins = [{"lower": b / RELIABILITY_BINS, "upper": (b + 1) / RELIABILITY_BINS,
             "rows": int(count[b]), "mean_probability": float(mean_p[b]) if used[b] else None,
             "observed": float(rate[b]) if used[b] else None} for b in range(RELIABILITY_BINS)]
    return {"ece": ece, "reliability": bins}


def auc_with_se(rows: DecidedRows) -> dict:
    """AUC (ranks, ties counted half) with Hanley-McNeil's standard error
    ``sqrt((A(1-A) + (n1-1)(Q1-A^2) + (n0-1)(Q2-A^2)) / (n1 n0))``, ``Q1 = A/(2-A)``,
    ``Q2 = 2A^2/(1+A)``; with K >= 3 the mean over classes of one-against-rest, its se the mean of
    theirs (the AUCs of one rows' classes are positively correlated: the se of a mean of
    perfectly correlated figures, an upper bound)."""
    classes = [1] if rows.k == 2 else list(range(rows.k))
    values, ses = [], []
    for c in classes:
        positive = rows.label == c
        n1, n0 = int(positive.sum()), int((~positive).sum())
        if n1 == 0 or n0 == 0:
            continue
        score = rows.probabilities[:, c]
        order = score.argsort(kind="mergesort")
        ranks = np.empty(len(score))
        sorted_scores = score[order]
        _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
        mid = first + (counts + 1) / 2.0  # average rank of each tie group (1-based)
        ranks[order] = np.repeat(mid, counts)
        a = float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)
        values.append(a)
        ses.append(math.sqrt(max(var, 0.0)))
    if not values:
        return {"value": None, "se": None}
    se = float(np.mean(ses))  # the classes' AUCs share every row: no independence assumed
    return {"value": float(np.mean(values)), "se": float(se)}


def bias_cells(sensitive: np.ndarray, label: np.ndarray, decision: np.ndarray,
               favourable: tuple[int, ...]) -> np.ndarray:
    """Each row's cell of Clarify's (facet, label, decision) count table,
    ``4 [in facet d] + 2 [label favourable] + [decision favourable]``: ``np.bincount(cells,
    minlength=8)`` is the table :func:`costaware.metrics.clarify.post_training_bias_of` reads."""
    return (np.asarray(sensitive, dtype=np.int64) * 4
            + np.isin(label, favourable).astype(np.int64) * 2
            + np.isin(decision, favourable).astype(np.int64))


def bias_with_intervals(rows: DecidedRows, seed: int = 0, level: float = 0.95) -> dict:
    """Clarify's post-training metrics of the decisions by facet, each with a percentile interval
    from :data:`BOOTSTRAP` Poisson-bootstrap resamples of the (facet, label, decision) table."""
    code = bias_cells(rows.sensitive, rows.label, rows.decision, rows.favourable)
    values = clarify.post_training_bias_of(np.bincount(code, minlength=8), on_error="nan")
    rng = np.random.default_rng(seed)
    draws = {name: [] for name in values}
    for _ in range(BOOTSTRAP):
        table = np.bincount(code, weights=rng.poisson(1.0, len(code)), minlength=8)
        for name, value in clarify.post_training_bias_of(table, on_error="nan").items():
            draws[name].append(value)
    tail = (1 - level) / 2 * 100
    out = {}
    for name, value in values.items():
        sample = np.asarray(draws[name], dtype=np.float64)
        sample = sample[np.isfinite(sample)]
        finite = value is not None and math.isfinite(value)
        out[name] = {"value": float(value) if finite else None,
                     "interval": ([float(np.percentile(sample, tail)),
                                   float(np.percentile(sample, 100 - tail))]
                                  if finite and len(sample) >= BOOTSTRAP // 2 else None)}
    return out
