"""The calibrator: Platt's fit from sums, the posterior predictive, monotonicity; and probabilities
of a model trained with 168:1 cost weights that match held-out frequencies."""

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from costaware.config import hyperparameters
from costaware.training import pipeline as training
from costaware.decisions.calibration import Calibrator, fit_platt
from costaware.decisions.costs import CostMatrix, RowCosts, sigmoid
from costaware.data.channel_files import Dataset
from costaware.metrics.classification import channel_metrics, summarize


def _platt_data(n, seed, slope=0.7, intercept=-0.5):
    rng = np.random.default_rng(seed)
    margin = rng.normal(size=n) * 3
    label = (rng.random(n) < sigmoid(slope * margin + intercept)).astype(int)
    return margin, label


def test_the_fit_is_logistic_regression_on_the_margin():
    margin, label = _platt_data(20000, 0)
    ours = fit_platt(margin, label)
    theirs = LogisticRegression(C=1e6, tol=1e-10, max_iter=1000).fit(margin[:, None], label)
    assert ours.slope == pytest.approx(theirs.coef_[0][0], rel=1e-4)
    assert ours.intercept == pytest.approx(theirs.intercept_[0], rel=1e-4)
    assert ours.rows == 20000
    # with this many rows the posterior barely moves the plug-in probability
    m = np.linspace(-6, 6, 25)
    plug_in = sigmoid(ours.slope * m + ours.intercept)
    assert np.abs(ours.probability(m) - plug_in).max() < 2e-3


def test_hosts_adding_their_sums_fit_the_same_calibrator():
    margin, label = _platt_data(3000, 1)
    whole = fit_platt(margin, label)
    parts = [(margin[k], label[k]) for k in (slice(0, 1000), slice(1000, 3000))]
    # two "hosts" in lockstep: every reduce call returns the sum of both hosts' local sums
    import threading
    barrier, shared, results = threading.Barrier(2), [None, None], [None, None]

    def host(i):
        def reduce(values):
            shared[i] = np.asarray(values, dtype=np.float64)
            barrier.wait()
            total = shared[0] + shared[1]
            barrier.wait()
            return total
        results[i] = fit_platt(*parts[i], reduce=reduce)

    threads = [threading.Thread(target=host, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1]
    assert results[0].slope == pytest.approx(whole.slope, rel=1e-8)
    assert results[0].intercept == pytest.approx(whole.intercept, rel=1e-8)


@pytest.mark.parametrize("n", [8, 30, 200])
def test_few_held_out_rows_pull_extreme_probabilities_towards_one_half(n):
    margin, label = _platt_data(n, 2, slope=1.0, intercept=0.0)
    calibrator = fit_platt(margin, label)
    far = np.array([-12.0, 12.0])
    plug_in = sigmoid(calibrator.slope * far + calibrator.intercept)
    served = calibrator.probability(far)
    assert served[0] > plug_in[0] and served[1] < plug_in[1]
    if n == 8:  # so little evidence: far from certain either way
        assert 1e-3 < served[0] and served[1] < 1 - 1e-3


@pytest.mark.parametrize("seed", range(20))
def test_the_probability_never_falls_as_the_margin_rises(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 60))
    margin = rng.normal(size=n) * rng.uniform(0.1, 5)
    label = (rng.random(n) < 0.5).astype(int)
    label[:2] = [0, 1]
    calibrator = fit_platt(margin, label)
    grid = np.linspace(-500, 500, 20001)
    p = calibrator.probability(grid)
    assert np.all(np.diff(p) >= -1e-15), calibrator
    assert Calibrator.from_dict(calibrator.to_dict()) == calibrator


def _known_probability_rows(n, seed):
    """Rows whose P(y=1|x) is known: a nonlinear logit of 6 features, base rate about 20%."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    logit = 1.5 * x[:, 0] - x[:, 1] + 0.8 * x[:, 2] * x[:, 3] + 0.5 * np.abs(x[:, 4]) - 2.2
    p = sigmoid(logit.astype(np.float64))
    y = (rng.random(n) < p).astype(np.int8)
    return x, y, p


def test_a_model_trained_with_168_to_1_weights_gives_probabilities_held_out_rows_bear_out():
    """The case study's cost ratio, fully weighted (cost_weight_exponent 1): the served
    probabilities' reliability bins match the held-out rows' frequencies; the weighted model's own
    tilted probability (the margin plus the weights' offset, what the loss fits) does not."""
    costs = CostMatrix(fp=1287.67, fn=252000, tp=35280, tn=0)
    x, y, truth = _known_probability_rows(26000, 3)
    names = [f"x{i}" for i in range(6)]

    def dataset(rows):
        return Dataset(x[rows], y[rows], names, RowCosts.constant(costs, len(y[rows])), "mem", True)

    settings = hyperparameters.parse({"cost_fp": "1287.67", "cost_fn": "252000",
                                      "cost_tp": "35280", "cost_weight_exponent": "1",
                                      "num_round": "150", "eta": "0.1", "max_depth": "3",
                                      "nthread": "2"})
    train, test = slice(0, 6000), slice(6000, None)
    result = training.train(settings, dataset(train), log=lambda line: None)
    margin = result.booster.inplace_predict(x[test], predict_type="margin")
    p = result.policy.probability(margin)
    label = y[test]
    m = channel_metrics(summarize(label, p, p >= 0.5, RowCosts.constant(costs, len(label))))
    for b in m["reliability"]:
        if b["rows"] >= 100:
            rate, mean = b["observed_rate"], b["mean_probability"]
            se = math.sqrt(max(mean * (1 - mean), 1e-4) / b["rows"])
            assert abs(rate - mean) < 4 * se + 0.02, b
    assert m["ece"] < 0.02, m["ece"]
    # the known probabilities' own ECE on these rows, for scale: what sampling noise alone gives
    truth_m = channel_metrics(summarize(label, truth[test], truth[test] >= 0.5,
                                        RowCosts.constant(costs, len(label))))
    assert m["ece"] < truth_m["ece"] + 0.015, (m["ece"], truth_m["ece"])
    # what the cost-weighted loss itself fits is tilted towards the costly class, far off
    offset = result.weighting.offset(RowCosts.constant(costs, len(label)))
    tilted = sigmoid(margin + offset)
    tilted_m = channel_metrics(summarize(label, tilted, tilted >= 0.5,
                                         RowCosts.constant(costs, len(label))))
    assert tilted_m["ece"] > 5 * m["ece"] and tilted_m["ece"] > 0.1, tilted_m["ece"]


@pytest.mark.parametrize("served_model", ["refit", "fold_average"])
def test_no_label_of_a_folds_held_out_rows_reaches_its_fold_model(monkeypatch, served_model):
    """Swap the labels of pairs of rows (one positive, one negative) inside fold 0, under 10:1
    class costs: the class counts, and so every scalar computed over all rows, stay the same, and
    fold 0's model, which must not see those rows, grows the same trees: its margins on fold 0 are
    identical, round after round (the weights once went into the hist sketch, and moved its cuts)."""
    x, y, _ = _known_probability_rows(1200, 11)
    folds = np.arange(len(y)) % 5  # fixed folds: the real ones follow the labels' order
    monkeypatch.setattr(training, "channel_folds",
                        lambda labels, k, seed, cluster=None, classes=2: folds)
    seen = []
    original = training.out_of_fold

    def recording(boosting, data, folds_, rounds, classes=2, first=1, take=None):
        out = original(boosting, data, folds_, rounds, classes, first, take)
        if rounds is None:
            seen[-1].append(out[folds_ == 0].copy())
        return out

    monkeypatch.setattr(training, "out_of_fold", recording)
    settings = hyperparameters.parse({"cost_fp": "1", "cost_fn": "10", "cost_weight_exponent": "1",
                                      "num_round": "8", "max_depth": "3", "nthread": "1",
                                      "served_model": served_model})
    swapped = y.copy()
    positives = np.flatnonzero((folds == 0) & (y == 1))[:30]
    negatives = np.flatnonzero((folds == 0) & (y == 0))[:30]
    swapped[positives], swapped[negatives] = 0, 1
    for labels in (y, swapped):
        seen.append([])
        data = Dataset(x, labels, [f"x{i}" for i in range(6)],
                       RowCosts.constant(CostMatrix(fp=1, fn=10), len(y)), "mem", True)
        training.train(settings, data, log=lambda line: None)
    assert len(seen[0]) == len(seen[1]) == 8
    for before, after in zip(*seen):
        assert np.array_equal(before, after)


@pytest.mark.parametrize("given, fit_rows, expected", [
    ({}, 499_999, (5, False)),  # the defaults below LARGE_ROWS: 5 folds, their average served
    ({}, 500_000, (2, False)),  # from there: 2 folds
    ({"cross_fit_folds": "4"}, 2_000_000, (4, False)),
    ({"served_model": "refit"}, 2_000_000, (2, True)),
    ({"served_model": "fold_average"}, 100, (5, False)),
    ({"calibration_data": "validation"}, 2_000_000, (0, True)),
])
def test_the_automatic_cross_fitting_follows_the_fit_rows(given, fit_rows, expected):
    assert training.cross_fitting(hyperparameters.parse(given), fit_rows) == expected


def test_each_rounds_metrics_read_a_sample_of_many_held_out_rows(monkeypatch):
    """Above ROUND_ROWS held-out rows every round's calibrator and metrics read a seeded random
    sample (the log says so and how many), early stopping too; the kept round's calibrator and
    the final metrics read every row."""
    monkeypatch.setattr(training, "ROUND_ROWS", 300)
    x, y, _ = _known_probability_rows(1200, 5)
    data = Dataset(x, y, [f"x{i}" for i in range(6)],
                   RowCosts.constant(CostMatrix(fp=1, fn=3), len(y)), "mem", True)
    settings = hyperparameters.parse({"num_round": "6", "max_depth": "2", "cost_fn": "3",
                                      "early_stopping_rounds": "3"})
    sizes, lines = [], []
    original = training.out_of_fold

    def recording(boosting, data_, folds, rounds, classes=2, first=1, take=None):
        out = original(boosting, data_, folds, rounds, classes, first, take)
        sizes.append((rounds, len(out)))
        return out

    monkeypatch.setattr(training, "out_of_fold", recording)
    result = training.train(settings, data, log=lines.append)
    sampled = [n for rounds, n in sizes if rounds is None]
    assert len(sampled) == result.rounds_trained and len(set(sampled)) == 1
    assert 200 < sampled[0] < 400  # about 300 of 1,200
    assert any(line.startswith(f"every round's held-out metrics (and early stopping) read a random "
                               f"sample of {sampled[0]} of the held-out rows") for line in lines)
    assert [n for rounds, n in sizes if rounds is not None] == [1200]  # the kept round: every row
    assert result.policy.calibrator.rows == 1200
    assert result.channels["train"].metrics["rows"] == 1200


def test_early_stopping_on_a_sample_of_the_held_out_rows_says_so(monkeypatch):
    """Above ROUND_ROWS held-out rows early stopping reads the rounds' sample: the line that
    reports the kept round must not say it read every held-out row."""
    monkeypatch.setattr(training, "ROUND_ROWS", 300)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1200, 6)).astype(np.float32)
    y = (rng.random(1200) < 0.3).astype(np.int8)  # noise: more trees only overfit
    data = Dataset(x, y, [f"x{i}" for i in range(6)],
                   RowCosts.constant(CostMatrix(fp=1, fn=3), len(y)), "mem", True)
    settings = hyperparameters.parse({"num_round": "30", "max_depth": "6", "eta": "1",
                                      "cost_fn": "3", "early_stopping_rounds": "2"})
    lines = []
    result = training.train(settings, data, log=lines.append)
    assert result.rounds_trained < 30
    stopped = [line for line in lines if line.startswith("early stopping: keeping rounds")]
    assert len(stopped) == 1
    sampled = next(line for line in lines if line.startswith("every round's held-out metrics"))
    size = sampled.split("random sample of ")[1].split(" ")[0]
    assert "every held-out row" not in stopped[0]
    assert f"over a random sample of {size} of the {len(y)} held-out rows" in stopped[0]


def test_too_few_rows_of_a_class_for_the_automatic_folds_says_what_to_set():
    """cross_fit_folds 0 (automatic) means 5 folds here: the message names the 5 folds, not a
    hyperparameter value the user never gave."""
    from costaware.errors import DataError

    x, y, _ = _known_probability_rows(400, 3)
    y = np.zeros_like(y)
    y[:3] = 1
    data = Dataset(x, y, [f"x{i}" for i in range(6)],
                   RowCosts.constant(CostMatrix(fp=1, fn=3), len(y)), "mem", True)
    with pytest.raises(DataError, match="3 rows of class 1, fewer than the 5 cross-fitting folds: "
                                        r"every fold needs rows of both classes; set "
                                        r"cross_fit_folds lower \(2 at least\)"):
        training.train(hyperparameters.parse({"num_round": "2"}), data, log=lambda line: None)
