"""Invariants of every registered metric, driven by costaware.metrics.registry as scikit-learn's
sklearn/metrics/tests/test_common.py drives its own: a metric added to the registry is checked here
without a new test.

Two computations of a channel's metrics exist: the binary one (``metrics.summarize`` into a
``Summary``, then ``metrics.channel_metrics``) and the multi-class one
(``multiclass_metrics.channel_metrics``); the fairness metrics come from a facet count table either way
(``bias.per_round_with_objective``). For every registered metric and every K it is logged for:
it is what its definition says (scikit-learn's value where scikit-learn has the metric, else the
definition computed row by row here); the same whatever the order of the rows; and each path logs
exactly the names the registry gives its K. For K = 2: the sum of two halves' summaries (what
several hosts add up) gives the metrics of all the rows, and a metric logged for every K is the
same through the multi-class path.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from costaware.metrics import bias
from costaware.metrics import registry as metric_registry
from costaware.decisions import multiclass
from costaware.metrics import multiclass_metrics
from costaware.decisions.costs import CostMatrix, RowCosts
from costaware.metrics.classification import channel_metrics, exact_auc, summarize

FAIRNESS = ["DPPL", "DI"]
AUC_WEIGHT, FAIRNESS_WEIGHT = 3.0, 1.0
BINARY_COSTS = CostMatrix(fp=1.0, fn=5.0, tp=0.5, tn=0.0)
FAVOURABLE = (2,)  # of K >= 3 classes


SHAPES = {2: ("distinct", "tied"), 3: ("distinct", "tied", "absent"), 4: ("distinct", "absent")}


def _rows(k: int, shape: str = "distinct", n: int = 600):
    """``(y, P, sensitive)``: probabilities that lean towards the true class, and a facet that
    shifts them. ``shape``: ``distinct`` (no two rows alike), ``tied`` (few distinct rows: tied
    scores), ``absent`` (no row of the last class). At K = 2, ``P[:, 0] = 1 - P[:, 1]`` with
    ``P[:, 1]`` in ``[0.001, 0.999]``."""
    rng = np.random.default_rng(10 * k + len(shape))
    y = np.arange(n) % (k - 1 if shape == "absent" else k)
    rng.shuffle(y)
    sensitive = rng.random(n) < 0.4
    noise = rng.integers(0, 3, (n, k)) if shape == "tied" else rng.normal(0, 1.0, (n, k))
    z = noise + 1.5 * np.eye(k)[y] + 0.5 * sensitive[:, None] * np.eye(k)[0]
    if k == 2:  # a function of z_1 - z_0 alone: equal differences, bitwise equal scores
        p1 = 0.001 + 0.998 / (1 + np.exp(z[:, 0] - z[:, 1]))
        return y, np.stack([1 - p1, p1], axis=1), sensitive
    return y, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True), sensitive


def _matrix(k: int) -> np.ndarray:
    if k == 2:  # [[tn, fp], [fn, tp]]: the binary costs as a matrix
        return np.array([[BINARY_COSTS.tn, BINARY_COSTS.fp], [BINARY_COSTS.fn, BINARY_COSTS.tp]])
    matrix = 1.0 + np.arange(k * k, dtype=np.float64).reshape(k, k) % 4
    np.fill_diagonal(matrix, 0.0)
    return matrix


def _with_fairness(metrics: dict, facets: np.ndarray) -> dict:
    return {**metrics, **bias.per_round_with_objective(FAIRNESS, facets, None, metrics["auc"],
                                                        AUC_WEIGHT, FAIRNESS_WEIGHT)}


def binary_path(y, p1, decision, sensitive) -> dict:
    summary = summarize(y, p1, decision, RowCosts.constant(BINARY_COSTS, len(y)), sensitive)
    return _with_fairness(channel_metrics(summary, exact_auc(y, p1)), summary.facets)


def multiclass_path(y, p, decision, sensitive, favourable=FAVOURABLE) -> dict:
    facets, _ = bias.collapsed_tables(y, decision, sensitive, favourable)
    return _with_fairness(multiclass_metrics.channel_metrics(y, p, decision, _matrix(p.shape[1])), facets)


def metrics_of(k: int, shape: str, order=None) -> tuple[dict, tuple]:
    """The metrics of the K-class rows (in ``order``) through the path that K takes, and the
    rows."""
    y, p, sensitive = _rows(k, shape)
    decision, _ = multiclass.bayes_decisions(p, _matrix(k))
    if order is not None:
        y, p, sensitive, decision = y[order], p[order], sensitive[order], decision[order]
    if k == 2:
        return binary_path(y, p[:, 1], decision, sensitive), (y, p, decision, sensitive)
    return multiclass_path(y, p, decision, sensitive), (y, p, decision, sensitive)


# ---------------------------------------------------------------------- each metric's reference

def _ece(confidence, hit):
    bins = np.minimum((confidence * 10).astype(np.int64), 9)
    return sum(abs((confidence[bins == b] - hit[bins == b]).sum()) for b in range(10)) / len(hit)


def _favourable_rates(decision, sensitive, favourable):
    chosen = np.isin(decision, favourable)
    return chosen[~sensitive].mean(), chosen[sensitive].mean()


def _cost(y, decision, k):
    return _matrix(k)[y, decision].sum()


def _savings(y, decision, k):
    return 1 - _cost(y, decision, k) / min(_cost(y, np.full_like(y, j), k) for j in range(k))


def _dppl(y, p, decision, sensitive):
    a, d = _favourable_rates(decision, sensitive, (1,) if p.shape[1] == 2 else FAVOURABLE)
    return abs(a - d)


def _di(y, p, decision, sensitive):
    a, d = _favourable_rates(decision, sensitive, (1,) if p.shape[1] == 2 else FAVOURABLE)
    return abs(1 - d / a)


def _auc(y, p, decision, sensitive):
    if p.shape[1] == 2:
        return skm.roc_auc_score(y, p[:, 1])
    if len(np.unique(y)) == p.shape[1]:
        return skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    # scikit-learn refuses a class absent from the rows; the definition leaves it out
    return np.mean([skm.roc_auc_score(y == c, p[:, c]) for c in np.unique(y)])


# name -> the value its definition gives for rows (y, P, decision, sensitive): scikit-learn's where
# it has the metric, else computed row by row from the registry's definition
REFERENCE = {
    "auc": _auc,
    "logloss": lambda y, p, d, s: skm.log_loss(y, p, labels=range(p.shape[1])),
    "brier": lambda y, p, d, s: (skm.brier_score_loss(y, p[:, 1]) if p.shape[1] == 2 else
                                 skm.brier_score_loss(y, p, labels=range(p.shape[1]),
                                                      scale_by_half=True)),
    "ece": lambda y, p, d, s: _ece(p[:, 1], (y == 1).astype(float)),
    "top_label_ece": lambda y, p, d, s: _ece(p.max(axis=1), (p.argmax(axis=1) == y).astype(float)),
    "expected_cost": lambda y, p, d, s: _cost(y, d, p.shape[1]) / len(y),
    "savings": lambda y, p, d, s: _savings(y, d, p.shape[1]),
    "precision": lambda y, p, d, s: skm.precision_score(y, d, zero_division=0),
    "recall": lambda y, p, d, s: skm.recall_score(y, d, zero_division=0),
    "f1": lambda y, p, d, s: skm.f1_score(y, d, zero_division=0),
    "accuracy": lambda y, p, d, s: skm.accuracy_score(y, d),
    "balanced_accuracy": lambda y, p, d, s: skm.balanced_accuracy_score(y, d),
    "dppl": _dppl,
    "di": _di,
    "combined_objective": lambda *rows: (AUC_WEIGHT * _auc(*rows) + FAIRNESS_WEIGHT
                                         * (1 - _dppl(*rows))) / (AUC_WEIGHT + FAIRNESS_WEIGHT),
}


def _cases(condition=lambda metric, k: True):
    return [pytest.param(m.name, k, shape, id=f"{m.name}-K{k}-{shape}")
            for m in metric_registry.all_metrics() for k, shapes in SHAPES.items()
            for shape in shapes if m.logged_for(k) and condition(m, k)]


def test_every_registered_metric_has_a_reference_definition():
    assert set(REFERENCE) == {m.name for m in metric_registry.all_metrics()}


@pytest.mark.parametrize("k", [2, 3, 4])
def test_each_path_logs_exactly_the_names_the_registry_gives_its_k(k):
    metrics, _ = metrics_of(k, "distinct")
    registered = {m.name for m in metric_registry.all_metrics()}
    assert registered & set(metrics) == {m.name for m in metric_registry.logged_for(k)}


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # "absent"
@pytest.mark.parametrize("name,k,shape", _cases())
def test_equals_its_definition(name, k, shape):
    metrics, rows = metrics_of(k, shape)
    assert metrics[name] == pytest.approx(REFERENCE[name](*rows), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name,k,shape", _cases())
def test_independent_of_row_order(name, k, shape):
    metrics, (y, _, _, _) = metrics_of(k, shape)
    shuffled, _ = metrics_of(k, shape, np.random.default_rng(7).permutation(len(y)))
    assert shuffled[name] == pytest.approx(metrics[name], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name,k,shape", _cases(lambda m, k: k == 2))
def test_summaries_of_two_hosts_add_up_to_all_rows(name, k, shape):
    """What several hosts do (cluster.sum of Summary.pack): each half's summary, summed."""
    y, p, sensitive = _rows(2, shape)
    decision, _ = multiclass.bayes_decisions(p, _matrix(2))
    costs = RowCosts.constant(BINARY_COSTS, len(y))
    halves = [slice(0, 250), slice(250, None)]
    parts = [summarize(y[h], p[h, 1], decision[h], costs.subset(h), sensitive[h]) for h in halves]
    summed = parts[0].unpack(parts[0].pack() + parts[1].pack())
    whole = summarize(y, p[:, 1], decision, costs, sensitive)
    # the AUC from the summaries' bins on both sides (the gathered exact AUC is row-order only)
    from_hosts = _with_fairness(channel_metrics(summed), summed.facets)
    from_one = _with_fairness(channel_metrics(whole), whole.facets)
    assert from_hosts[name] == pytest.approx(from_one[name], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name,k,shape", _cases(lambda m, k: k == 2 and m.logged_for(3)))
def test_two_classes_through_the_multiclass_path_are_the_binary_metric(name, k, shape):
    y, p, sensitive = _rows(2, shape)
    decision, _ = multiclass.bayes_decisions(p, _matrix(2))
    binary = binary_path(y, p[:, 1], decision, sensitive)
    through_classes = multiclass_path(y, p, decision, sensitive, favourable=(1,))
    assert through_classes[name] == pytest.approx(binary[name], rel=1e-12, abs=1e-15)
