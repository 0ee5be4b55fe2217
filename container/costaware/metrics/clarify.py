"""Bias metrics of SageMaker Clarify, as vectorised numpy: pure functions, no I/O, no pandas.

Definitions, argument meanings and edge-case behaviour follow the reference implementation,
``smclarify`` 0.5 (``smclarify.bias.metrics``), metric by metric; ``tests/test_fairness_metrics.py``
checks every function against it on random and edge-case inputs.

Notation
--------
``sensitive`` is Clarify's ``sensitive_facet_index``: True marks facet *d* (the sensitive,
possibly disfavoured group), False marks facet *a* (everyone else). ``y`` is Clarify's
``positive_label_index`` and ``yhat`` its ``positive_predicted_label_index``: the label and the
predicted label, already collapsed to "positive outcome" (1/True) or not (0/False); see
:func:`positive_label_index` and :func:`sensitive_facet_index` for the collapsing rules. For a facet
``f`` in {a, d}::

    n_f         rows in f                 n_f^(1), n_f^(0)   rows in f with y = 1, y = 0
    nhat_f^(1)  rows in f with yhat = 1   nhat_f^(0)         rows in f with yhat = 0
    TP_f, FP_f, FN_f, TN_f                the confusion matrix of yhat against y within f

Edge cases (all as in Clarify)
------------------------------
* **Empty facet** (``n_a = 0`` or ``n_d = 0``): every facet-comparing metric raises
  :class:`UndefinedMetricError` (a ``ValueError``, which is what Clarify raises). The
  ``*_bias`` dictionaries turn it into ``nan`` by default (Clarify's report turns it into
  ``value: null`` plus an error message; pass ``on_error="none"`` for that). The
  exceptions are CDDL/CDDPL, which Clarify computes without checking the facets.
* **Zero denominators inside a ratio** use Clarify's ``divide``: ``0/0 = 0`` and
  ``x/0 = +inf`` (``-inf`` for ``x < 0``). A difference of two ratios that are both ``+inf``
  is ``0``; ``inf - finite = inf``. Ratios that cannot exceed 1 (recall, precision, ...) are 0
  when their denominator is 0, so only DI, DCA, DCR and TE can be infinite.
* **KL, JS, LP, TVD, KS** compare the label distributions of the two facets only on the label
  values present in both facets (each facet's frequencies are normalised by its own size
  first, then restricted, so they need not sum to 1). No common value (which includes an
  empty facet) raises.
* **CDDL, CDDPL** raise without a group variable and when the whole data set has no positive
  or no negative label (predicted label for CDDPL); a subgroup without positives (negatives)
  uses 0 for its acceptance (rejection) share.
* **GE** raises on an empty data set and when every row is a false negative (mean benefit 0).
* **FT** raises when a facet is empty.

Clarify's *report* (``bias_report``) adds one rule on top of the metrics: it refuses to compute
any post-training metric when no row is predicted positive. That is a property of the report,
not of the metrics, and is not reproduced here: the metrics themselves are well defined then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np

INF = math.inf

POST_TRAINING_METRICS = ("DPPL", "DI", "DCA", "DCR", "RD", "SD", "DAR", "DRR", "AD", "CDDPL", "TE",
                         "FT", "GE")
"""Clarify's post-training metric names, in its registry order."""

PRE_TRAINING_METRICS = ("CI", "DPL", "KL", "JS", "LP", "TVD", "KS", "CDDL")
"""Clarify's pre-training metric names, in its registry order."""

# Clarify's FlipTest k-NN: 5 neighbours, or 1 when facet a has at most 9 rows.
FT_NEIGHBORS = 5
FT_MIN_NEIGHBORS = 1
FT_SAMPLES_THRESHOLD = 9

# Clarify's rule for calling an integer (or integer-like string) column continuous.
UNIQUENESS_THRESHOLD = 0.05

OnError = Literal["nan", "none", "raise"]


class UndefinedMetricError(ValueError):
    """The metric is undefined on this input; Clarify raises ``ValueError`` in the same case."""


# --------------------------------------------------------------------------- input handling


def _as_bool(x: Any, name: str) -> np.ndarray:
    """A 1-D boolean array from booleans or 0/1 numbers (anything else is an error)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.dtype == np.bool_:
        return a
    if a.dtype.kind in "iuf":
        b = a == 1
        if np.count_nonzero(b) + np.count_nonzero(a == 0) != a.size:
            raise ValueError(f"{name} must be boolean or 0/1")
        return b
    raise ValueError(f"{name} must be boolean or 0/1, got dtype {a.dtype}")


def _same_length(**arrays: np.ndarray) -> None:
    sizes = {name: len(a) for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"inputs differ in length: {sizes}")


def _divide(a: float, b: float) -> float:
    """Clarify's ``divide``: ``a/b``, with ``0/0 = 0`` and ``a/0 = +inf`` (``-inf`` if ``a < 0``)."""
    if b == 0:
        if a == 0:
            return 0.0
        return -INF if a < 0 else INF
    return a / b


def _diff(x: float, y: float) -> float:
    """``x - y``, except that two ``+inf`` ratios differ by 0 (as in Clarify)."""
    if x == y == INF:
        return 0.0
    return float(x - y)


def _check_facets(n_a: int, n_d: int) -> None:
    if n_d == 0:
        raise UndefinedMetricError("facet d (sensitive) is empty")
    if n_a == 0:
        raise UndefinedMetricError("facet a (not sensitive) is empty")


# --------------------------------------------------------------------------- confusion counts


@dataclass(frozen=True)
class FacetConfusion:
    """Confusion counts of ``yhat`` against ``y`` within facet a (not sensitive) and d (sensitive)."""

    tp_a: int
    fp_a: int
    fn_a: int
    tn_a: int
    tp_d: int
    fp_d: int
    fn_d: int
    tn_d: int

    @property
    def n_a(self) -> int:
        return self.tp_a + self.fp_a + self.fn_a + self.tn_a

    @property
    def n_d(self) -> int:
        return self.tp_d + self.fp_d + self.fn_d + self.tn_d

    @property
    def n(self) -> int:
        return self.n_a + self.n_d


def facet_confusion(y: Any, yhat: Any, sensitive: Any) -> FacetConfusion:
    """The eight counts ``TP_f, FP_f, FN_f, TN_f`` for ``f`` in {a, d}, in one pass of bit operations.

    Seven ``count_nonzero`` calls (``s``, ``y``, ``yhat``, ``y&yhat``, ``s&y``, ``s&yhat``,
    ``s&y&yhat``) determine all eight cells by inclusion-exclusion.
    """
    y = _as_bool(y, "y")
    yhat = _as_bool(yhat, "yhat")
    s = _as_bool(sensitive, "sensitive")
    _same_length(y=y, yhat=yhat, sensitive=s)
    n = s.size
    buf = np.empty(n, dtype=np.bool_)
    cnt = np.count_nonzero
    n_d = cnt(s)
    pos = cnt(y)
    ppos = cnt(yhat)
    tp = cnt(np.logical_and(y, yhat, out=buf))
    tp_d = cnt(np.logical_and(buf, s, out=buf))
    pos_d = cnt(np.logical_and(s, y, out=buf))
    ppos_d = cnt(np.logical_and(s, yhat, out=buf))
    tp_a = tp - tp_d
    fn_d, fp_d = pos_d - tp_d, ppos_d - tp_d
    fn_a, fp_a = (pos - pos_d) - tp_a, (ppos - ppos_d) - tp_a
    tn_d = n_d - tp_d - fn_d - fp_d
    tn_a = (n - n_d) - tp_a - fn_a - fp_a
    return FacetConfusion(int(tp_a), int(fp_a), int(fn_a), int(tn_a),
                          int(tp_d), int(fp_d), int(fn_d), int(tn_d))


# --------------------------------------------------------------------------- from counts


def _dppl(c: FacetConfusion) -> float:
    _check_facets(c.n_a, c.n_d)
    return (c.tp_a + c.fp_a) / c.n_a - (c.tp_d + c.fp_d) / c.n_d


def _di(c: FacetConfusion) -> float:
    _check_facets(c.n_a, c.n_d)
    return float(_divide((c.tp_d + c.fp_d) / c.n_d, (c.tp_a + c.fp_a) / c.n_a))


def _dca(c: FacetConfusion) -> float:
    _check_facets(c.n_a, c.n_d)
    return _diff(_divide(c.tp_a + c.fn_a, c.tp_a + c.fp_a), _divide(c.tp_d + c.fn_d, c.tp_d + c.fp_d))


def _dcr(c: FacetConfusion) -> float:
    _check_facets(c.n_a, c.n_d)
    return _diff(_divide(c.tn_d + c.fp_d, c.tn_d + c.fn_d), _divide(c.tn_a + c.fp_a, c.tn_a + c.fn_a))


def _rd(c: FacetConfusion) -> float:
    _check_facets(c.n_a, c.n_d)
    return _diff(_divide(c.tp_a, c.tp_a + c.fn_a), _divide(c.tp_d, c.tp_d + c.fn_d))


def _sd(c: FacetConfusion) -> float:
    _check_facets(c.n_a, c.n_d)
    return _diff(_divide(c.tn_d, c.tn_d + c.fp_d), _divide(c.tn_a, c.tn_a + c.fp_a))


def _dar(c: FacetConfusion) -> float:
    _check_facets(c.n_a, c.n_d)
    return _diff(_divide(c.tp_a, c.tp_a + c.fp_a), _divide(c.tp_d, c.tp_d + c.fp_d))


def _drr(c: FacetConfusion) -> float:
    _check_facets(c.n_a, c.n_d)
    return _diff(_divide(c.tn_d, c.tn_d + c.fn_d), _divide(c.tn_a, c.tn_a + c.fn_a))


def _ad(c: FacetConfusion) -> float:
    _check_facets(c.n_a, c.n_d)
    return _diff(_divide(c.tp_a + c.tn_a, c.n_a), _divide(c.tp_d + c.tn_d, c.n_d))


def _te(c: FacetConfusion) -> float:
    _check_facets(c.n_a, c.n_d)
    return _diff(_divide(c.fn_d, c.fp_d), _divide(c.fn_a, c.fp_a))


def _ge(c: FacetConfusion, alpha: float = 2.0) -> float:
    n = c.n
    if n == 0:
        raise UndefinedMetricError("GE: the data set is empty")
    c0 = c.fn_a + c.fn_d           # benefit 0
    c2 = c.fp_a + c.fp_d           # benefit 2
    c1 = n - c0 - c2               # benefit 1
    mean = (c1 + 2 * c2) / n
    if mean == 0:
        raise UndefinedMetricError("GE: every prediction is a false negative (mean benefit 0)")
    total = c1 * ((1 / mean) ** alpha - 1) + c2 * ((2 / mean) ** alpha - 1) - c0
    return float(total / (n * alpha * (alpha - 1)))


# --------------------------------------------------------------------------- post-training


def dppl(yhat: Any, sensitive: Any) -> float:
    r"""Difference in Positive Proportions in Predicted Labels (Clarify ``DPPL``).

    ``DPPL = nhat_a^(1)/n_a - nhat_d^(1)/n_d``. Raises :class:`UndefinedMetricError` if a facet is
    empty.
    """
    yhat = _as_bool(yhat, "yhat")
    return _dpl_counts(yhat, sensitive)


def di(yhat: Any, sensitive: Any) -> float:
    r"""Disparate Impact (Clarify ``DI``).

    ``DI = q_d / q_a`` with ``q_f = nhat_f^(1)/n_f``; ``0`` if ``q_a = q_d = 0``, ``+inf`` if only
    ``q_a = 0``. Raises if a facet is empty.
    """
    yhat = _as_bool(yhat, "yhat")
    s = _as_bool(sensitive, "sensitive")
    _same_length(yhat=yhat, sensitive=s)
    n_d = int(np.count_nonzero(s))
    n_a = s.size - n_d
    _check_facets(n_a, n_d)
    ppos_d = int(np.count_nonzero(yhat & s))
    ppos_a = int(np.count_nonzero(yhat)) - ppos_d
    return float(_divide(ppos_d / n_d, ppos_a / n_a))


def dca(y: Any, yhat: Any, sensitive: Any) -> float:
    r"""Difference in Conditional Acceptance (Clarify ``DCA``).

    ``DCA = c_a - c_d`` with ``c_f = n_f^(1) / nhat_f^(1)`` (observed over predicted positives);
    ``c_f = 0`` if both counts are 0, ``+inf`` if only ``nhat_f^(1) = 0``; ``DCA = 0`` if
    ``c_a = c_d = inf``. Raises if a facet is empty.
    """
    return _dca(facet_confusion(y, yhat, sensitive))


def dcr(y: Any, yhat: Any, sensitive: Any) -> float:
    r"""Difference in Conditional Rejection (Clarify ``DCR``).

    ``DCR = r_d - r_a`` with ``r_f = n_f^(0) / nhat_f^(0)`` (observed over predicted negatives);
    zero denominators as in :func:`dca`. Raises if a facet is empty.
    """
    return _dcr(facet_confusion(y, yhat, sensitive))


def rd(y: Any, yhat: Any, sensitive: Any) -> float:
    r"""Recall Difference (Clarify ``RD``).

    ``RD = TP_a/(TP_a+FN_a) - TP_d/(TP_d+FN_d)``; a facet's recall is 0 when it has no positive
    label. Raises if a facet is empty.
    """
    return _rd(facet_confusion(y, yhat, sensitive))


def sd(y: Any, yhat: Any, sensitive: Any) -> float:
    r"""Specificity Difference (Clarify ``SD``).

    ``SD = TN_d/(TN_d+FP_d) - TN_a/(TN_a+FP_a)``; a facet's specificity is 0 when it has no
    negative label. Raises if a facet is empty.
    """
    return _sd(facet_confusion(y, yhat, sensitive))


def dar(y: Any, yhat: Any, sensitive: Any) -> float:
    r"""Difference in Acceptance Rates, i.e. in precision (Clarify ``DAR``).

    ``DAR = TP_a/nhat_a^(1) - TP_d/nhat_d^(1)``; a facet's rate is 0 when it has no predicted
    positive. Raises if a facet is empty.
    """
    return _dar(facet_confusion(y, yhat, sensitive))


def drr(y: Any, yhat: Any, sensitive: Any) -> float:
    r"""Difference in Rejection Rates (Clarify ``DRR``).

    ``DRR = TN_d/nhat_d^(0) - TN_a/nhat_a^(0)``; a facet's rate is 0 when it has no predicted
    negative. Raises if a facet is empty.
    """
    return _drr(facet_confusion(y, yhat, sensitive))


def ad(y: Any, yhat: Any, sensitive: Any) -> float:
    r"""Accuracy Difference (Clarify ``AD``).

    ``AD = (TP_a+TN_a)/n_a - (TP_d+TN_d)/n_d``. Raises if a facet is empty.
    """
    return _ad(facet_confusion(y, yhat, sensitive))


def te(y: Any, yhat: Any, sensitive: Any) -> float:
    r"""Treatment Equality (Clarify ``TE``).

    ``TE = FN_d/FP_d - FN_a/FP_a``; a ratio is 0 when ``FN = FP = 0`` and ``+inf`` when only
    ``FP = 0``; ``TE = 0`` when both ratios are ``+inf``. Raises if a facet is empty.
    """
    return _te(facet_confusion(y, yhat, sensitive))


def ge(y: Any, yhat: Any) -> float:
    r"""Generalized Entropy index with ``alpha = 2`` on the whole population (Clarify ``GE``).

    With benefit ``b_i = yhat_i - y_i + 1`` (0 for a false negative, 2 for a false positive, 1
    otherwise) and mean benefit ``mu``::

        GE = 1 / (n alpha (alpha - 1)) * sum_i ((b_i / mu)^alpha - 1)

    computed from the three benefit counts. Raises :class:`UndefinedMetricError` if ``n = 0`` or
    ``mu = 0`` (all rows false negatives).
    """
    y = _as_bool(y, "y")
    return _ge(facet_confusion(y, yhat, np.zeros(y.size, dtype=bool)))


def cddpl(yhat: Any, sensitive: Any, group: Any) -> float:
    r"""Conditional Demographic Disparity in Predicted Labels (Clarify ``CDDPL``).

    :func:`cddl` with the predicted label in place of the label.
    """
    return _cdd(_as_bool(yhat, "yhat"), _as_bool(sensitive, "sensitive"), group)


def ft(features: Any, yhat: Any, sensitive: Any) -> float:
    r"""FlipTest (Clarify ``FT``).

    A k-nearest-neighbour classifier (scikit-learn, Euclidean, uniform weights, ``k = 5``, or
    ``k = 1`` when facet a has at most 9 rows) is fitted on facet a's ``features`` with the model's
    predicted labels, and predicts ``yknn`` for each row of facet d: the model's decision had the
    row been in facet a. Then::

        FT = (#{d: yhat = 1, yknn = 0} - #{d: yhat = 0, yknn = 1}) / n_d

    The model is not called again: as in Clarify, ``yhat`` are its predictions on these rows.
    ``features`` (2-D, numeric) are the model inputs without the facet and label columns, as
    Clarify uses them. Raises :class:`UndefinedMetricError` if a facet is empty, ``ValueError`` for
    non-numeric features.
    """
    from sklearn.neighbors import KNeighborsClassifier

    yhat = _as_bool(yhat, "yhat")
    s = _as_bool(sensitive, "sensitive")
    x = np.asarray(features)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2:
        raise ValueError(f"features must be two-dimensional, got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError("FlipTest does not support non-numeric columns")
    _same_length(features=x, yhat=yhat, sensitive=s)
    n_d = int(np.count_nonzero(s))
    n_a = s.size - n_d
    _check_facets(n_a, n_d)
    k = FT_NEIGHBORS if n_a > FT_SAMPLES_THRESHOLD else FT_MIN_NEIGHBORS
    knn = KNeighborsClassifier(n_neighbors=k, weights="uniform", algorithm="auto", leaf_size=30, p=2,
                               metric="minkowski")
    knn.fit(x[~s], yhat[~s])
    yknn = np.asarray(knn.predict(x[s]), dtype=bool)
    yhat_d = yhat[s]
    flips = np.count_nonzero(yhat_d & ~yknn) - np.count_nonzero(~yhat_d & yknn)
    return float(_divide(int(flips), n_d))


# --------------------------------------------------------------------------- pre-training


def ci(sensitive: Any) -> float:
    r"""Class Imbalance (Clarify ``CI``).

    ``CI = (n_a - n_d) / (n_a + n_d)``. Raises if a facet is empty.
    """
    s = _as_bool(sensitive, "sensitive")
    n_d = int(np.count_nonzero(s))
    n_a = s.size - n_d
    _check_facets(n_a, n_d)
    return float(n_a - n_d) / s.size


def _dpl_counts(label: np.ndarray, sensitive: Any) -> float:
    s = _as_bool(sensitive, "sensitive")
    _same_length(label=label, sensitive=s)
    n_d = int(np.count_nonzero(s))
    n_a = s.size - n_d
    _check_facets(n_a, n_d)
    pos_d = int(np.count_nonzero(label & s))
    pos_a = int(np.count_nonzero(label)) - pos_d
    return pos_a / n_a - pos_d / n_d


def dpl(y: Any, sensitive: Any) -> float:
    r"""Difference in Proportions of Labels (Clarify ``DPL``).

    ``DPL = n_a^(1)/n_a - n_d^(1)/n_d``. Raises if a facet is empty.
    """
    return _dpl_counts(_as_bool(y, "y"), sensitive)


def _facet_label_counts(label: Any, sensitive: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per label value (sorted), the row counts in facet a and in facet d."""
    s = _as_bool(sensitive, "sensitive")
    lab = np.asarray(label)
    if lab.ndim != 1:
        raise ValueError(f"label must be one-dimensional, got shape {lab.shape}")
    _same_length(label=lab, sensitive=s)
    if lab.dtype == np.bool_:
        n_d = int(np.count_nonzero(s))
        pos = int(np.count_nonzero(lab))
        pos_d = int(np.count_nonzero(lab & s))
        pos_a = pos - pos_d
        return (np.array([s.size - n_d - pos_a, pos_a], dtype=np.int64),
                np.array([n_d - pos_d, pos_d], dtype=np.int64))
    if lab.dtype.kind == "f" and np.isnan(lab).any():
        raise ValueError("label contains NaN")
    _, inverse = np.unique(lab, return_inverse=True)
    k = int(inverse.max()) + 1 if inverse.size else 0
    table = np.bincount(inverse.ravel() * 2 + s, minlength=2 * k).reshape(k, 2)
    return table[:, 0], table[:, 1]


def _pdfs_from_counts(count_a: np.ndarray, count_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P_a(x) = n_a(x)/n_a``, ``P_d(x) = n_d(x)/n_d`` on the values x with both counts > 0."""
    common = (count_a > 0) & (count_d > 0)
    if not common.any():
        raise UndefinedMetricError("no label value occurs in both facets (or a facet is empty)")
    return count_a[common] / count_a.sum(), count_d[common] / count_d.sum()


def _kl(pa: np.ndarray, pd_: np.ndarray) -> float:
    return float(np.sum(pa * np.log(pa / pd_)))


def _js(pa: np.ndarray, pd_: np.ndarray) -> float:
    p = 0.5 * (pa + pd_)
    return float(0.5 * (np.sum(pa * np.log(pa / p)) + np.sum(pd_ * np.log(pd_ / p))))


def _lp(pa: np.ndarray, pd_: np.ndarray, p: float = 2) -> float:
    return float(np.linalg.norm(pa - pd_, p))


def _tvd(pa: np.ndarray, pd_: np.ndarray) -> float:
    return 0.5 * _lp(pa, pd_, 1)


def _ks(pa: np.ndarray, pd_: np.ndarray) -> float:
    return _lp(pa, pd_, np.inf)


def kl(label: Any, sensitive: Any) -> float:
    r"""Kullback-Leibler divergence of the label distributions (Clarify ``KL``).

    ``KL = sum_x P_a(x) log(P_a(x) / P_d(x))`` over the label values x present in both facets,
    ``P_f(x) = n_f(x) / n_f`` (normalised before the restriction, so the restricted ``P_f`` need
    not sum to 1). ``label`` may have any number of discrete values; Clarify's report passes the
    collapsed 0/1 label. Raises :class:`UndefinedMetricError` if no value occurs in both facets
    (so also when a facet is empty).
    """
    return _kl(*_pdfs_from_counts(*_facet_label_counts(label, sensitive)))


def js(label: Any, sensitive: Any) -> float:
    r"""Jensen-Shannon divergence of the label distributions (Clarify ``JS``).

    ``JS = 1/2 [sum_x P_a log(P_a/P) + sum_x P_d log(P_d/P)]`` with ``P = (P_a + P_d)/2``, over the
    values present in both facets (see :func:`kl`). Raises like :func:`kl`.
    """
    return _js(*_pdfs_from_counts(*_facet_label_counts(label, sensitive)))


def lp(label: Any, sensitive: Any, p: float = 2) -> float:
    r"""L-p norm of the difference of the label distributions (Clarify ``LP``, which uses ``p = 2``).

    ``LP = (sum_x |P_a(x) - P_d(x)|^p)^(1/p)`` over the values present in both facets (see
    :func:`kl`). Raises like :func:`kl`.
    """
    return _lp(*_pdfs_from_counts(*_facet_label_counts(label, sensitive)), p)


def tvd(label: Any, sensitive: Any) -> float:
    r"""Total Variation Distance (Clarify ``TVD``).

    ``TVD = 1/2 sum_x |P_a(x) - P_d(x)|`` over the values present in both facets (see :func:`kl`).
    Raises like :func:`kl`.
    """
    return _tvd(*_pdfs_from_counts(*_facet_label_counts(label, sensitive)))


def ks(label: Any, sensitive: Any) -> float:
    r"""Kolmogorov-Smirnov distance as Clarify defines it (Clarify ``KS``).

    ``KS = max_x |P_a(x) - P_d(x)|`` over the values present in both facets (see :func:`kl`): the
    largest gap between the probability mass functions, not between the cumulative distributions
    (for a 0/1 label it equals ``|DPL|`` when both values occur in both facets). Raises like
    :func:`kl`.
    """
    return _ks(*_pdfs_from_counts(*_facet_label_counts(label, sensitive)))


def _code_dtype(cells: int) -> np.dtype:
    """The narrowest unsigned integer type holding ``0..cells-1`` (narrow arrays count faster)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if cells <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _group_codes(group: Any, n: int, per_group: int = 4) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Dense codes ``0..k-1`` of the group values in sorted order, ``k``, and the rows kept.

    The codes have the narrowest unsigned type that still holds ``per_group * k`` cells. NaN
    groups are dropped (Clarify compares ``group == value`` and NaN never equals itself).
    Integer groups with a small range use an offset instead of a sort.
    """
    g = np.asarray(group)
    if g.ndim != 1 or g.size != n:
        raise ValueError(f"group must be one-dimensional with {n} rows, got shape {g.shape}")
    keep = None
    if g.dtype.kind == "f":
        nan = np.isnan(g)
        if nan.any():
            keep = ~nan
            g = g[keep]
    if g.size == 0:
        return np.zeros(0, dtype=np.uint8), 0, keep
    if g.dtype.kind in "biu":
        lo, hi = int(g.min()), int(g.max())
        k = hi - lo + 1
        if k <= max(2 * g.size, 1 << 16):
            dtype = _code_dtype(per_group * k)
            if g.dtype.kind == "b":
                return g.astype(dtype), k, keep
            # modular arithmetic in the narrow type gives g - lo exactly, as it fits
            return np.subtract(g, np.asarray(lo).astype(g.dtype), dtype=dtype, casting="unsafe"), k, keep
    _, inverse = np.unique(g, return_inverse=True)
    inverse = inverse.ravel()
    k = int(inverse.max()) + 1
    return inverse.astype(_code_dtype(per_group * k)), k, keep


def _cdd(label: np.ndarray, s: np.ndarray, group: Any) -> float:
    if group is None or np.size(group) == 0:
        raise UndefinedMetricError("group variable is empty or not provided")
    _same_length(label=label, sensitive=s)
    n_pos = int(np.count_nonzero(label))
    if n_pos == 0:
        raise UndefinedMetricError("no positive labels in set")
    if n_pos == label.size:
        raise UndefinedMetricError("no negative labels in set")
    codes, k, keep = _group_codes(group, label.size)
    if keep is not None:
        label, s = label[keep], s[keep]
    # cell = 4 group + 2 s + label; columns: (a, 0), (a, 1), (d, 0), (d, 1)
    codes <<= 2
    codes |= s.view(np.uint8) << 1
    codes |= label.view(np.uint8)
    return _cdd_table(np.bincount(codes, minlength=4 * k).reshape(k, 4))


def _cdd_table(table: np.ndarray) -> float:
    """CDD from per-group counts, columns (facet a, label 0), (a, 1), (d, 0), (d, 1)."""
    counts = table.sum(axis=1)
    present = counts > 0
    table, counts = table[present], counts[present].astype(np.float64)
    pos = table[:, 1] + table[:, 3]
    neg = table[:, 0] + table[:, 2]
    accepted = np.divide(table[:, 3], pos, out=np.zeros(len(pos)), where=pos > 0)
    rejected = np.divide(table[:, 2], neg, out=np.zeros(len(neg)), where=neg > 0)
    return float(_divide(np.sum(counts * (rejected - accepted)), np.sum(counts)))


def cddl(y: Any, sensitive: Any, group: Any) -> float:
    r"""Conditional Demographic Disparity in Labels (Clarify ``CDDL``).

    For each value ``i`` of the group variable (``n_i`` rows), the demographic disparity is facet
    d's share of the rejected minus its share of the accepted::

        DD_i = n_{d,i}^(0) / n_i^(0) - n_{d,i}^(1) / n_i^(1)      (a share is 0 if n_i^(.) = 0)
        CDD  = sum_i n_i DD_i / sum_i n_i

    Facets are not checked (an empty facet d gives 0). Raises :class:`UndefinedMetricError` if
    ``group`` is missing or empty, or the data set has no positive or no negative label. Rows
    whose group is NaN count in neither sum.
    """
    return _cdd(_as_bool(y, "y"), _as_bool(sensitive, "sensitive"), group)


# --------------------------------------------------------------------------- collapsing columns


def infer_data_type(values: Any, values_or_threshold: Sequence[Any] | None = None
                    ) -> Literal["categorical", "continuous"]:
    """Clarify's guess whether a facet or label column is categorical or continuous.

    Categorical if the column is a pandas ``category``, or more than one value is given;
    otherwise continuous if it is float, or integer (or strings all castable to integers) with
    ``#distinct / #rows >= 0.05``; otherwise categorical. Note the consequence: a 0/1 integer
    column of at most 40 rows counts as continuous, so Clarify reads ``[1]`` as the threshold
    ``> 1`` (no positive at all).
    """
    if getattr(getattr(values, "dtype", None), "name", None) == "category":
        return "categorical"
    if isinstance(values_or_threshold, (list, tuple, set, np.ndarray)) and len(values_or_threshold) > 1:
        return "categorical"
    v = np.asarray(values)
    if v.dtype.kind == "f":
        return "continuous"
    if v.dtype.kind in "iuOSU":
        if v.dtype.kind in "OSU":
            try:
                v.astype(np.int64)
            except (ValueError, TypeError, OverflowError):
                return "categorical"
            distinct = len(set(v.tolist()))
        else:
            distinct = np.unique(v).size
        if _divide(distinct, v.size) >= UNIQUENESS_THRESHOLD:
            return "continuous"
    return "categorical"


def _is_list(x: Any) -> bool:
    return isinstance(x, (list, tuple, set, frozenset, np.ndarray))


def _collapse(values: Any, spec: Any, data_type: str | None, what: str) -> np.ndarray:
    if spec is None or (_is_list(spec) and len(spec) == 0):
        raise ValueError(f"{what}: values or threshold must be given")
    if data_type == "infer":
        data_type = infer_data_type(values, list(spec) if _is_list(spec) else [spec])
    elif data_type is None:
        data_type = "categorical" if _is_list(spec) else "continuous"
    v = np.asarray(values)
    if data_type == "continuous":
        if _is_list(spec):
            if len(spec) != 1:
                raise ValueError(f"{what}: a continuous column takes a single numeric threshold")
            spec = next(iter(spec))
        try:
            threshold = float(spec)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: a continuous column takes a single numeric threshold") from None
        if v.dtype.kind not in "biuf":
            v = v.astype(np.float64)
        return v > threshold
    if data_type != "categorical":
        raise ValueError(f"{what}: data_type must be None, 'categorical', 'continuous' or 'infer'")
    wanted = list(spec) if _is_list(spec) else [spec]
    mask = _isin(v, wanted)
    if v.size and not mask.any():
        converted = _convert_like(v, wanted, what)
        if converted is not None:
            mask = _isin(v, converted)
    return mask


def _isin(v: np.ndarray, wanted: list) -> np.ndarray:
    mask = np.zeros(v.shape, dtype=bool)
    for w in wanted:
        eq = v == w
        if isinstance(eq, np.ndarray):          # comparing across types may give a scalar False
            mask |= eq
    return mask


def _convert_like(v: np.ndarray, wanted: list, what: str) -> list | None:
    """Clarify's retry: convert the given values to the type of the column's first element."""
    first = v[0]
    kind = type(first.item()) if isinstance(first, np.generic) else type(first)
    if isinstance(wanted[0], kind):
        return None
    if kind is bool:
        return [str(w).lower() == "true" if isinstance(w, str) else bool(w) for w in wanted]
    try:
        return [kind(w) for w in wanted]
    except ValueError as error:
        if "invalid literal for int()" in str(error):
            return [float(w) for w in wanted]
        raise ValueError(f"{what}: the given values do not occur in the column and cannot be "
                         f"converted to its type") from None
    except TypeError:
        return None


def positive_label_index(labels: Any, label_values_or_threshold: Any, *,
                         data_type: Literal["categorical", "continuous", "infer"] | None = None
                         ) -> np.ndarray:
    """Collapse labels to the positive outcome, by Clarify's ``label_values_or_threshold`` rule.

    * categorical: ``True`` where the label equals one of the given values. If none matches,
      the values are converted to the type of the column's first element (``"1"`` -> ``1``;
      ``"1.0"`` -> ``1.0`` for integer columns) and matched again, as Clarify does. One
      deliberate difference: on a boolean column the strings ``"true"``/``"false"`` (any case)
      become ``True``/``False``, where Clarify's conversion ``bool("false")`` gives ``True``.
    * continuous: ``True`` where ``label > threshold`` (strictly: Clarify builds the interval
      ``(threshold, max]``).

    ``data_type=None`` takes a list/tuple/set/array as category values and a scalar as a
    threshold; ``"infer"`` applies Clarify's column-type guess (:func:`infer_data_type`) to
    a list as Clarify's analysis configuration gives it (``[0.5]`` on a float column is a
    threshold).
    """
    return _collapse(labels, label_values_or_threshold, data_type, "label_values_or_threshold")


def sensitive_facet_index(facet: Any, facet_values_or_threshold: Any, *,
                          data_type: Literal["categorical", "continuous", "infer"] | None = None
                          ) -> np.ndarray:
    """The ``sensitive`` mask (facet d) from a facet column, by Clarify's
    ``facet_values_or_threshold`` rule: membership in the given values, or ``facet > threshold``.
    Same rules and ``data_type`` as :func:`positive_label_index`.
    """
    return _collapse(facet, facet_values_or_threshold, data_type, "facet_values_or_threshold")


# --------------------------------------------------------------------------- all metrics


def _collect(items: list[tuple[str, Callable[[], float]]], on_error: OnError) -> dict:
    if on_error not in ("nan", "none", "raise"):
        raise ValueError("on_error must be 'nan', 'none' or 'raise'")
    out: dict[str, float | None] = {}
    for name, compute in items:
        try:
            out[name] = float(compute())
        except UndefinedMetricError:
            if on_error == "raise":
                raise
            out[name] = math.nan if on_error == "nan" else None
    return out


def post_training_bias(y: Any, yhat: Any, sensitive: Any, group: Any = None, *,
                       features: Any = None, on_error: OnError = "nan") -> dict:
    """All post-training metrics, keyed by Clarify's names (:data:`POST_TRAINING_METRICS` order).

    The confusion counts are computed once. ``CDDPL`` is included when ``group`` is given and
    ``FT`` when ``features`` is given (FT fits a k-NN, which is costly on large data). A metric
    Clarify cannot compute (see the module docstring) is ``nan``, or ``None`` with
    ``on_error="none"``; ``on_error="raise"`` re-raises :class:`UndefinedMetricError`.
    """
    c = facet_confusion(y, yhat, sensitive)
    items: list[tuple[str, Callable[[], float]]] = [
        ("DPPL", lambda: _dppl(c)), ("DI", lambda: _di(c)), ("DCA", lambda: _dca(c)),
        ("DCR", lambda: _dcr(c)), ("RD", lambda: _rd(c)), ("SD", lambda: _sd(c)),
        ("DAR", lambda: _dar(c)), ("DRR", lambda: _drr(c)), ("AD", lambda: _ad(c)),
    ]
    if group is not None:
        items.append(("CDDPL", lambda: cddpl(yhat, sensitive, group)))
    items.append(("TE", lambda: _te(c)))
    if features is not None:
        items.append(("FT", lambda: ft(features, yhat, sensitive)))
    items.append(("GE", lambda: _ge(c)))
    return _collect(items, on_error)


def pre_training_bias(y: Any, sensitive: Any, group: Any = None, *,
                      on_error: OnError = "nan") -> dict:
    """All pre-training metrics on the collapsed label, keyed by Clarify's names.

    As in Clarify's report, KL, JS, LP, TVD and KS are computed on the collapsed 0/1 label.
    ``CDDL`` is included when ``group`` is given. Undefined metrics as in
    :func:`post_training_bias`.
    """
    y = _as_bool(y, "y")
    s = _as_bool(sensitive, "sensitive")
    _same_length(y=y, sensitive=s)
    table = _facet_label_counts(y, s)

    def on_pdfs(f: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[], float]:
        return lambda: f(*_pdfs_from_counts(*table))

    items: list[tuple[str, Callable[[], float]]] = [
        ("CI", lambda: ci(s)),
        ("DPL", lambda: _dpl_counts(y, s)),
        ("KL", on_pdfs(_kl)), ("JS", on_pdfs(_js)), ("LP", on_pdfs(_lp)),
        ("TVD", on_pdfs(_tvd)), ("KS", on_pdfs(_ks)),
    ]
    if group is not None:
        items.append(("CDDL", lambda: _cdd(y, s, group)))
    return _collect(items, on_error)


# --------------------------------------------------------------------------- from count tables


def facet_confusion_of(table: np.ndarray) -> FacetConfusion:
    """:class:`FacetConfusion` from counts by (facet a/d, label 0/1, decision 0/1)."""
    t = np.rint(np.asarray(table, dtype=np.float64)).astype(np.int64).reshape(2, 2, 2)
    return FacetConfusion(int(t[0, 1, 1]), int(t[0, 0, 1]), int(t[0, 1, 0]), int(t[0, 0, 0]),
                          int(t[1, 1, 1]), int(t[1, 0, 1]), int(t[1, 1, 0]), int(t[1, 0, 0]))


def _cdd_of(facets: np.ndarray, groups: np.ndarray, by: str) -> float:
    """CDDL (``by="label"``) or CDDPL (``by="decision"``) from counts by (group, facet, label,
    decision) (rows without a group left out) and ``facets`` (every row), with the checks of
    :func:`_cdd`."""
    t = np.rint(np.asarray(groups, dtype=np.float64)).astype(np.int64)
    every = np.rint(np.asarray(facets, dtype=np.float64)).astype(np.int64).reshape(2, 2, 2)
    if t.size == 0:
        raise UndefinedMetricError("group variable is empty or not provided")
    values = every.sum(axis=(0, 2)) if by == "label" else every.sum(axis=(0, 1))
    if values[1] == 0:
        raise UndefinedMetricError("no positive labels in set")
    if values[0] == 0:
        raise UndefinedMetricError("no negative labels in set")
    per = t.sum(axis=3) if by == "label" else t.sum(axis=2)  # (k, facet, value)
    return _cdd_table(per.reshape(len(per), 4))


def post_training_bias_of(facets: np.ndarray, groups: np.ndarray | None = None, *,
                          on_error: OnError = "nan") -> dict:
    """:func:`post_training_bias` from count tables (what several hosts add up): ``facets`` by
    (facet, label, decision), ``groups`` by (group, facet, label, decision)."""
    c = facet_confusion_of(facets)
    items: list[tuple[str, Callable[[], float]]] = [
        ("DPPL", lambda: _dppl(c)), ("DI", lambda: _di(c)), ("DCA", lambda: _dca(c)),
        ("DCR", lambda: _dcr(c)), ("RD", lambda: _rd(c)), ("SD", lambda: _sd(c)),
        ("DAR", lambda: _dar(c)), ("DRR", lambda: _drr(c)), ("AD", lambda: _ad(c)),
    ]
    if groups is not None:
        items.append(("CDDPL", lambda: _cdd_of(facets, groups, "decision")))
    items += [("TE", lambda: _te(c)), ("GE", lambda: _ge(c))]
    return _collect(items, on_error)


def pre_training_bias_of(facets: np.ndarray, groups: np.ndarray | None = None, *,
                         on_error: OnError = "nan") -> dict:
    """:func:`pre_training_bias` from the count tables of :func:`post_training_bias_of`."""
    t = np.rint(np.asarray(facets, dtype=np.float64)).astype(np.int64).reshape(2, 2, 2)
    by_label = t.sum(axis=2)  # (facet, label)
    count_a, count_d = by_label[0], by_label[1]
    n_a, n_d = int(count_a.sum()), int(count_d.sum())

    def ci_() -> float:
        _check_facets(n_a, n_d)
        return float(n_a - n_d) / (n_a + n_d)

    def dpl_() -> float:
        _check_facets(n_a, n_d)
        return count_a[1] / n_a - count_d[1] / n_d

    def on_pdfs(f: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[], float]:
        return lambda: f(*_pdfs_from_counts(count_a, count_d))

    items: list[tuple[str, Callable[[], float]]] = [
        ("CI", ci_), ("DPL", dpl_), ("KL", on_pdfs(_kl)), ("JS", on_pdfs(_js)),
        ("LP", on_pdfs(_lp)), ("TVD", on_pdfs(_tvd)), ("KS", on_pdfs(_ks)),
    ]
    if groups is not None:
        items.append(("CDDL", lambda: _cdd_of(facets, groups, "label")))
    return _collect(items, on_error)


__all__ = [
    "FacetConfusion", "INF", "facet_confusion_of", "post_training_bias_of", "pre_training_bias_of", "POST_TRAINING_METRICS", "PRE_TRAINING_METRICS", "UndefinedMetricError",
    "ad", "cddl", "cddpl", "ci", "dar", "dca", "dcr", "di", "dpl", "dppl", "drr", "facet_confusion",
    "ft", "ge", "infer_data_type", "js", "kl", "ks", "lp", "positive_label_index",
    "post_training_bias", "pre_training_bias", "rd", "sd", "sensitive_facet_index", "te", "tvd",
]
