"""Which calibrator a job serves, chosen by the held-out rows' own evidence.

Candidates, simplest first (two classes; K >= 3 classes have the first two, as ``softmax(z)``
and the temperature-and-bias fit of :mod:`costaware.decisions.multiclass`):

* ``identity``: ``p = sigmoid(m)``, the booster's margin taken as it is (0 parameters). The loss's
  offset keeps the margin a log-odds (:mod:`costaware.training.objective`), so this is often
  calibrated already.
* ``platt``: the Bayesian Platt scaling of :mod:`costaware.decisions.calibration` (2 parameters).
* ``isotonic`` (with at least :data:`ISOTONIC_MIN_ROWS` held-out rows): a non-decreasing step
  function of the margin (:class:`Isotonic`), as many parameters as it has steps.

**The choice** is cross-validated over the held-out rows' folds (the cross-fitting folds, or
folds of the validation channel): for each fold ``f`` and candidate ``c``, ``c`` is fitted on the
held-out rows outside ``f`` and scores the rows of ``f``, so each row gets, from a calibrator that
did not see it, a log loss ``l_ci = -log p_c(y_i | m_i)`` and the realised cost ``k_ci`` of the
Bayes decision on ``p_c`` at its own costs. Platt scaling (``platt``; K >= 3: ``temperature``) is
served unless another candidate ``c`` decides more cheaply by more than the noise of that gain
and one mistake the held-out rows could not show:

    K_platt - K_c > se(k_platt - k_c) + R / n,
    K = mean_i k_i,   se(d) = sd(d) / sqrt(n) (paired),   R = max_i (costliest mistake on row i),

the cheapest such ``c`` if several. Why cost and not log loss: the Bayes decision turns on the
probability near each row's threshold, and log loss mostly weighs the rest. Why ``R / n``: a
rare, costly mistake (a missed cancer costs 168 biopsies) that happened to no held-out row is
invisible to the standard error, which only sees the differences that occurred; a calibrator that
saves a few biopsies per hundred rows by being surer of its low probabilities has to save more
than one such mistake would cost over the n rows (on the demo's breast-cancer split the identity
saves $284 ± $26 a patient in cross-validation, less than $216,720 / 426 = $509, and misses a
cancer on the test patients). Why Platt first: its Bayesian fit shrinks towards the identity
``(1, 0)`` and, where the held-out rows say little, towards 1/2, which is what a costly decision
should do on thin evidence. The evidence has every candidate's cost, gain over Platt with its
paired standard error, and log loss. The chosen candidate is then
fitted on every held-out row. Every sum is added up over the hosts (``reduce``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..cluster import SOLO, Reduce
from .calibration import Calibrator, fit_platt, sigmoid_by_blocks
from .costs import sigmoid

ISOTONIC_MIN_ROWS = 1000  # scikit-learn's guidance: isotonic overfits on fewer
BIN_WIDTH = 0.01  # margins are pooled to this grid before the isotonic fit (summable over hosts)
MARGIN_LIMIT = 40.0  # margins beyond +-40 are pooled with +-40 (sigmoid is 1 - 4e-18 there)
PRIOR_ROWS = 2.0  # each step's rate shrinks towards the identity by this many pseudo-rows
EPSILON = 1e-15  # probabilities scored by log loss are kept this far from 0 and 1


@dataclass(frozen=True)
class Identity:
    """``p = sigmoid(m)``: the margin as it is."""

    rows: int = 0  # the held-out rows it was chosen on

    def log_odds(self, margin: np.ndarray) -> np.ndarray:
        return np.asarray(margin, dtype=np.float64)

    def probability(self, margin: np.ndarray) -> np.ndarray:
        return sigmoid_by_blocks(self.log_odds, margin)

    def to_dict(self) -> dict:
        return {"method": "identity", "rows": self.rows}

    @classmethod
    def from_dict(cls, d: dict) -> "Identity":
        return cls(int(d.get("rows", 0)))


@dataclass(frozen=True)
class Isotonic:
    """A non-decreasing map of the margin: log-odds ``knot_log_odds`` at ``knot_margins`` (each
    step's mean margin), linear in between, constant beyond the first and last knot.

    Fitted by pool-adjacent-violators (SciPy's ``isotonic_regression``) on the held-out
    rows' labels pooled to a grid of margins (:data:`BIN_WIDTH`), each step's rate then shrunk
    towards the identity by :data:`PRIOR_ROWS` pseudo-rows at its mean ``sigmoid(m)``,

        p_s = (sum_{i in s} y_i + r mean_{i in s} sigmoid(m_i)) / (n_s + r),

    so that no step is certain (0 or 1) on finite evidence, and then kept non-decreasing (a running
    maximum). Interpolating in log-odds keeps the map continuous and non-decreasing, so reasons
    read from the margin keep their direction.
    """

    knot_margins: tuple[float, ...]
    knot_log_odds: tuple[float, ...]
    rows: int = 0

    def log_odds(self, margin: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(margin, dtype=np.float64), self.knot_margins,
                         self.knot_log_odds)

    def probability(self, margin: np.ndarray) -> np.ndarray:
        return sigmoid_by_blocks(self.log_odds, margin)

    def to_dict(self) -> dict:
        return {"method": "isotonic", "knot_margins": list(self.knot_margins),
                "knot_log_odds": list(self.knot_log_odds), "rows": self.rows}

    @classmethod
    def from_dict(cls, d: dict) -> "Isotonic":
        margins = tuple(float(x) for x in d["knot_margins"])
        log_odds = tuple(float(x) for x in d["knot_log_odds"])
        if (not margins or len(margins) != len(log_odds)
                or not all(math.isfinite(x) for x in margins + log_odds)
                or any(b <= a for a, b in zip(margins, margins[1:]))
                or any(b < a for a, b in zip(log_odds, log_odds[1:]))):
            raise ValueError("isotonic calibrator: knot_margins must be increasing finite numbers "
                             "and knot_log_odds as many non-decreasing finite numbers")
        return cls(margins, log_odds, int(d.get("rows", 0)))


def fit_identity(margin: np.ndarray, label: np.ndarray, reduce: Reduce = SOLO.sum) -> Identity:
    return Identity(int(reduce(np.array([np.size(label)], dtype=np.float64))[0]))


def fit_isotonic(margin: np.ndarray, label: np.ndarray, reduce: Reduce = SOLO.sum) -> Isotonic:
    """The :class:`Isotonic` map of the held-out ``(margin, label)`` (every host's rows)."""
    # (scipy's, which scikit-learn's isotonic_regression calls with the same arguments: importing
    # scikit-learn for it took about 117 MiB of a training job's resident memory, at its peak)
    from scipy.optimize import isotonic_regression  # training only

    m = np.clip(np.asarray(margin, dtype=np.float64), -MARGIN_LIMIT, MARGIN_LIMIT)
    y = (np.asarray(label) == 1).astype(np.float64)
    bins = int(round(2 * MARGIN_LIMIT / BIN_WIDTH)) + 1
    at = np.rint((m + MARGIN_LIMIT) / BIN_WIDTH).astype(np.int64)
    # (sigmoid(-m) summed on its own, not as 1 - sigmoid(m): from m ~ 37 on sigmoid(m) rounds to
    # 1, and a step of such rows, all positive, would get p = 1 and an infinite log-odds)
    sums = reduce(np.concatenate([np.bincount(at, minlength=bins),
                                  np.bincount(at, weights=y, minlength=bins),
                                  np.bincount(at, weights=m, minlength=bins),
                                  np.bincount(at, weights=sigmoid(m), minlength=bins),
                                  np.bincount(at, weights=sigmoid(-m), minlength=bins)]))
    n, positives, margin_sum, identity_sum, identity_rest = sums.reshape(5, bins)
    used = n > 0
    if not used.any():
        return Isotonic((0.0,), (0.0,), 0)
    n, positives, margin_sum = n[used], positives[used], margin_sum[used]
    identity_sum, identity_rest = identity_sum[used], identity_rest[used]
    rate = isotonic_regression(positives / n, weights=n, increasing=True).x
    step = np.concatenate([[0], np.cumsum(np.diff(rate) != 0)])  # each bin's step
    per = lambda values: np.bincount(step, weights=values)  # noqa: E731  (a step's sum)
    rows = per(n)
    # p_s and 1 - p_s, each from its own sums (their ratio is the step's odds)
    ones = per(positives) + PRIOR_ROWS * per(identity_sum) / rows
    zeros = per(n - positives) + PRIOR_ROWS * per(identity_rest) / rows
    log_odds = np.maximum.accumulate(np.log(ones) - np.log(zeros))
    knots = per(margin_sum) / rows
    return Isotonic(tuple(float(x) for x in knots), tuple(float(x) for x in log_odds),
                    int(n.sum()))


def calibrator_from_dict(d: dict):
    """A two-class calibrator from the policy's JSON, by its ``method``."""
    kinds = {"platt": Calibrator, "identity": Identity, "isotonic": Isotonic}
    if d.get("method") not in kinds:
        raise ValueError(f"unknown calibrator {d.get('method')!r}; known: {', '.join(kinds)}")
    return kinds[d["method"]].from_dict(d)


# --------------------------------------------------------------------------------------------------
# The choice


@dataclass(frozen=True)
class Candidate:
    name: str
    parameters: str  # how many, in words (for the log and the report)
    fit: Callable[[np.ndarray, np.ndarray, Reduce], object]


TWO_CLASS_CANDIDATES = (Candidate("identity", "0", fit_identity),
                        Candidate("platt", "2", fit_platt),
                        Candidate("isotonic", "one per step", fit_isotonic))


@dataclass(frozen=True)
class Choice:
    """The chosen calibrator (fitted on every held-out row) and the evidence."""

    calibrator: object
    name: str
    evidence: dict  # name -> {"parameters", "cv_log_loss", "difference", "se"} (vs the best)
    folds: int
    rows: int
    forced: str = ""  # why the evidence did not choose (the calibrator hyperparameter, ...)
    fitted: dict = field(default_factory=dict, repr=False)  # every candidate, on every row

    @property
    def rule(self) -> str:
        return (f"set by {self.forced}" if self.forced else
                "Platt scaling unless another candidate's cross-validated cost is lower by more "
                "than one paired standard error plus one unseen mistake of the costliest kind")

    def to_dict(self) -> dict:
        return {"chosen": self.name, "rule": self.rule, "folds": self.folds, "rows": self.rows,
                "candidates": self.evidence}

    def describe(self) -> str:
        """The choice and each candidate's cross-validated cost (with its gain over Platt and the
        paired standard error) and log loss, in one line."""
        scores = "; ".join(
            f"{name} cost {e['cv_cost']:.6g}"
            + (f" (saves {e['cost_gain_over_default']:+.4g} ± {e['cost_gain_se']:.4g})"
               if e["cost_gain_se"] else "")
            + f", log loss {e['cv_log_loss']:.5f}" for name, e in self.evidence.items())
        return (f"{self.name} ({self.rule}); {self.folds}-fold cross-validated on {self.rows} "
                f"held-out rows, per row: {scores}")


def row_log_loss(p: np.ndarray, label: np.ndarray) -> np.ndarray:
    """``-log p(y_i)``: from ``P(y = 1)`` (two classes) or a ``(rows, K)`` matrix (K >= 3)."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(label)
    if p.ndim == 1:
        chosen = np.where(y == 1, p, 1.0 - p)
    else:
        chosen = p[np.arange(len(p)), y.astype(np.int64)]
    return -np.log(np.clip(chosen, EPSILON, 1.0))


def choose(candidates: list[Candidate], margin: np.ndarray, label: np.ndarray, folds: np.ndarray,
           n_folds: int, row_cost: Callable[[np.ndarray, np.ndarray], np.ndarray],
           costliest_mistake: float, reduce: Reduce = SOLO.sum, forced: str | None = None,
           default: str = "platt", forced_by: str = "the hyperparameter calibrator") -> Choice:
    """The calibrator of the module docstring's rule. ``candidates`` simplest first (one of them
    named ``default``, the incumbent), ``folds`` each held-out row's fold (0..n_folds-1),
    ``row_cost(p, rows)`` the realised cost of the Bayes decision on ``p`` of the held-out rows
    ``rows`` (a mask), ``costliest_mistake`` ``R`` (over every host's held-out rows). ``forced``
    (a candidate's name; ``forced_by`` says why) is served whatever the evidence, which is still
    measured."""
    k = len(candidates)
    losses, costs = np.empty((k, len(label))), np.empty((k, len(label)))
    for f in range(n_folds):
        inside, outside = folds == f, folds != f
        for c, candidate in enumerate(candidates):
            fitted = candidate.fit(margin[outside], label[outside], reduce)
            p = fitted.probability(margin[inside])
            losses[c, inside] = row_log_loss(p, label[inside])
            costs[c, inside] = row_cost(p, inside)
    rows = float(reduce(np.array([len(label)], dtype=np.float64))[0])
    names = [candidate.name for candidate in candidates]
    incumbent = names.index(default)
    loss_mean, loss_difference, loss_se = paired_means(losses, rows, reduce)
    cost_mean, cost_difference, cost_se = paired_means(costs, rows, reduce, incumbent)
    cost_gain = -cost_difference  # what a candidate saves per row against the incumbent
    unseen = costliest_mistake / rows
    better = [c for c in range(k) if cost_gain[c] > cost_se[c] + unseen]
    chosen = (names.index(forced) if forced else
              min(better, key=lambda c: cost_mean[c]) if better else incumbent)
    evidence = {name: {"parameters": candidate.parameters, "cv_log_loss": float(loss_mean[c]),
                       "difference": float(loss_difference[c]), "se": float(loss_se[c]),
                       "cv_cost": float(cost_mean[c]), "cost_gain_over_default":
                       float(cost_gain[c]), "cost_gain_se": float(cost_se[c]),
                       "unseen_mistake_per_row": float(unseen)}
                for c, (name, candidate) in enumerate(zip(names, candidates))}
    fitted = {name: candidate.fit(margin, label, reduce)
              for name, candidate in zip(names, candidates)}
    return Choice(fitted[names[chosen]], names[chosen], evidence, n_folds, int(rows),
                  forced_by if forced else "", fitted)


def paired_means(values: np.ndarray, rows: float, reduce: Reduce, reference: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate (a row of ``values``, one value per held-out row): the mean, its difference
    from the ``reference`` candidate's (default: the lowest mean), and that difference's paired
    standard error ``sd(d) / sqrt(n)``, summed over the hosts."""
    k = len(values)
    means = reduce(values.sum(axis=1)) / rows
    reference = int(np.argmin(means)) if reference is None else reference
    sums = np.empty(2 * k)
    for c in range(k):  # (a candidate at a time: (k, rows) differences were 2 x 53 MiB more at
        d = values[c] - values[reference]  # a 2.2M-row job's peak; the sums are the same bits)
        sums[c], sums[k + c] = d.sum(), (d ** 2).sum()
    sums = reduce(sums)
    mean_d, mean_d2 = sums[:k] / rows, sums[k:] / rows
    return means, mean_d, np.sqrt(np.maximum(mean_d2 - mean_d ** 2, 0.0) / max(rows - 1, 1.0))
