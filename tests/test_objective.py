"""The cost-weighted loss: derivatives, weights and offsets, and what XGBoost grows with them."""

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer

from costaware.config import hyperparameters
from costaware.training import pipeline as training
from costaware.decisions.costs import CostMatrix, RowCosts
from costaware.data.channel_files import Dataset
from costaware.training.objective import (CAP, CostWeighting, base_log_odds, make_objective,
                                 weighted_logistic_grad_hess, weighted_logistic_loss)


@pytest.mark.parametrize("seed", range(5))
def test_gradient_and_hessian_match_finite_differences(seed):
    rng = np.random.default_rng(seed)
    n = 50
    margin = rng.normal(scale=3, size=n)
    label = rng.integers(0, 2, n)
    weight = rng.uniform(0.1, 20, n)
    offset = rng.normal(scale=2, size=n)
    grad, hess = weighted_logistic_grad_hess(margin, label, weight, offset)
    h = 1e-5
    for i in range(n):
        up, down = margin.copy(), margin.copy()
        up[i] += h
        down[i] -= h
        numeric = (weighted_logistic_loss(up, label, weight, offset)
                   - weighted_logistic_loss(down, label, weight, offset)) / (2 * h)
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-7)
        g_up = weighted_logistic_grad_hess(up, label, weight, offset)[0][i]
        g_down = weighted_logistic_grad_hess(down, label, weight, offset)[0][i]
        assert hess[i] == pytest.approx((g_up - g_down) / (2 * h), rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("offset_kind", ["none", "scalar", "per row"])
def test_gradients_by_blocks_are_one_blocks_bits(offset_kind):
    """Past a block (262,144 rows) the gradient and Hessian are the bits of the whole array at
    once (the expression below, float32 as XGBoost's margins): a block joined at the wrong rows
    or an offset not cut with its rows would differ."""
    rng = np.random.default_rng(7)
    n = 600_001
    margin = rng.normal(scale=4, size=n).astype(np.float32)
    label = rng.integers(0, 2, n).astype(np.int8)
    weight = rng.uniform(0.1, 20, n).astype(np.float32)
    weight[rng.random(n) < 0.2] = 0.0  # held-out rows
    offset = {"none": None, "scalar": np.float32(0.7),
              "per row": rng.normal(size=n).astype(np.float32)}[offset_kind]
    q = 1 / (1 + np.exp(-(margin if offset is None else margin + offset)))
    expected_grad = (q - label.astype(np.float32)) * weight
    expected_hess = np.where(weight > 0, np.maximum((1 - q) * q * weight, np.float32(1e-16)),
                             np.float32(0))
    grad, hess = weighted_logistic_grad_hess(margin, label, weight, offset)
    assert grad.dtype == hess.dtype == np.float32
    np.testing.assert_array_equal(grad, expected_grad)
    np.testing.assert_array_equal(hess, expected_hess)


def test_k_class_gradients_by_blocks_are_the_whole_arrays_rounded_once():
    """K >= 3: a block at a time, each value the float64 gradient of the whole array at once
    rounded to float32 (as XGBoost rounds a float64 gradient)."""
    from costaware.training.class_objective import class_objective, loss_gradients

    rng = np.random.default_rng(11)
    n, k = 600_001, 3
    margins = rng.normal(scale=3, size=(n, k)).astype(np.float32)
    label = rng.integers(0, k, n).astype(np.int8)
    weight = rng.uniform(0.2, 5, n)
    weight[rng.random(n) < 0.2] = 0.0
    offsets = np.log(np.array([0.5, 1.0, 2.0]))
    grad, hess = class_objective(label, weight, offsets)(margins.ravel(), None)
    expected_grad, expected_hess = loss_gradients(margins.astype(np.float64), label, weight,
                                                  offsets)
    assert grad.dtype == hess.dtype == np.float32 and grad.shape == (n, k)
    np.testing.assert_array_equal(grad, expected_grad.astype(np.float32))
    np.testing.assert_array_equal(hess, expected_hess.astype(np.float32))


def test_held_out_rows_have_no_gradient_and_no_hessian():
    grad, hess = weighted_logistic_grad_hess(np.zeros(3), np.array([0, 1, 1]),
                                             np.array([1.0, 0.0, 2.0]))
    assert grad[1] == 0 and hess[1] == 0 and hess[0] > 0 and hess[2] > 0


def test_weights_are_tempered_capped_regrets_and_the_offset_their_log_ratio():
    costs = RowCosts(fp=np.array([1.0, 1.0, 0.0, 4.0]), fn=np.array([50.0, 2.0, 900.0, 4.0]),
                     tp=np.zeros(4), tn=np.array([0.0, 0.0, 0.0, 1.0]))
    label = np.array([1, 0, 1, 0])
    w = CostWeighting.fit(label, costs, 0.5)
    regret = np.array([50.0, 1.0, 900.0, 3.0])
    assert w.scale == pytest.approx(regret.mean())
    relative = np.clip(regret / regret.mean(), 1 / CAP, CAP)
    assert w.weights(label, costs) == pytest.approx(relative ** 0.5)
    r1, r0 = np.array([50.0, 2.0, 900.0, 4.0]), np.array([1.0, 1.0, 0.0, 3.0])
    clip = lambda r: np.clip(r / regret.mean(), 1 / CAP, CAP)  # noqa: E731
    assert w.offset(costs) == pytest.approx(0.5 * (np.log(clip(r1)) - np.log(clip(r0))))
    symmetric = CostWeighting.fit(label, costs, 0.0)
    assert np.array_equal(symmetric.weights(label, costs), np.ones(4))
    assert not symmetric.offset(costs).any()
    assert CostWeighting.from_dict(w.to_dict()) == w


def test_the_offset_keeps_the_weighted_optimum_at_the_class_log_odds():
    """Weights tilt the optimum of m + t by log(w1/w0); with t = that tilt, m stays logit P(y=1)."""
    label = np.array([1] * 30 + [0] * 70)
    costs = RowCosts.constant(CostMatrix(fp=1, fn=20), 100)
    w = CostWeighting.fit(label, costs, 1.0)
    weight, offset = w.weights(label, costs), w.offset(costs)
    grid = np.linspace(-3, 3, 60001)
    losses = [weighted_logistic_loss(np.full(100, m), label, weight, offset) for m in grid]
    assert grid[int(np.argmin(losses))] == pytest.approx(np.log(30 / 70), abs=1e-3)
    assert base_log_odds(label) == pytest.approx(np.log(30 / 70))


def _breast_cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return x.astype(np.float32), (1 - y).astype(np.int8)


def test_training_grows_the_builtin_logistic_trees_with_sample_weights_and_base_margins():
    """With the cost weights as sample weights and the offsets as base margins, XGBoost's own
    binary:logistic grows the trees costaware grows (the margins agree to float32 rounding), once
    its histogram cuts are the unweighted ones costaware uses (cuts placed by label-following
    weights would let held-out labels into the fold models). The refit model: the default serves
    the fold models' average, whose trees are tested in test_calibrator_choice.py."""
    x, y = _breast_cancer()
    settings = hyperparameters.parse({"cost_fp": "2", "cost_fn": "30", "cost_tp": "1",
                                      "num_round": "25", "max_depth": "4", "eta": "0.2",
                                      "seed": "3", "cost_weight_exponent": "1",
                                      "min_child_weight": "0", "served_model": "refit"})
    costs = RowCosts.constant(CostMatrix(fp=2, fn=30, tp=1), len(y))
    data = Dataset(x, y, [f"f{i}" for i in range(x.shape[1])], costs, "mem", False)
    result = training.train(settings, data, log=lambda line: None)

    weighting = CostWeighting.fit(y, costs, 1.0)
    weight = weighting.weights(y, costs)
    weight = weight / weight.mean()
    base = base_log_odds(y)
    params = {**settings.xgboost_params(), "objective": "binary:logistic", "base_score": 0.5}
    dtrain = xgb.QuantileDMatrix(x, label=y, weight=weight, base_margin=base + weighting.offset(costs),
                                 ref=xgb.QuantileDMatrix(x))  # the unweighted cuts
    builtin = xgb.train(params, dtrain, num_boost_round=25)
    ours = result.booster.predict(xgb.DMatrix(x, feature_names=data.feature_names),
                                  output_margin=True)
    theirs = builtin.predict(xgb.DMatrix(x), output_margin=True) + base  # (trees + our base)
    assert np.abs(ours - theirs).max() < 1e-4
    assert result.booster.num_boosted_rounds() == 25


def test_symmetric_loss_is_the_unweighted_builtin():
    x, y = _breast_cancer()
    settings = hyperparameters.parse({"objective": "binary:logistic", "num_round": "10",
                                      "cost_fn": "9", "served_model": "refit"})
    data = Dataset(x, y, [f"f{i}" for i in range(x.shape[1])],
                   RowCosts.constant(CostMatrix(1, 9), len(y)), "mem", False)
    result = training.train(settings, data, log=lambda line: None)
    builtin = xgb.train({**settings.xgboost_params(), "objective": "binary:logistic",
                         "base_score": y.mean()}, xgb.DMatrix(x, label=y), num_boost_round=10)
    dm = xgb.DMatrix(x, feature_names=data.feature_names)
    assert np.abs(result.booster.predict(dm) - builtin.predict(xgb.DMatrix(x))).max() < 1e-5
    assert result.weighting.exponent == 0


def test_make_objective_binds_rows_weights_and_offsets():
    label = np.array([0, 1])
    obj = make_objective(label, np.array([1.0, 3.0]), offset=np.array([0.0, 0.0]))
    grad, hess = obj(np.zeros(2), None)
    assert list(grad) == [0.5, -1.5] and list(hess) == [0.25, 0.75]
    shifted = make_objective(label, np.array([1.0, 3.0]), offset=np.array([np.log(3), 0.0]))
    grad, _ = shifted(np.zeros(2), None)
    assert grad[0] == pytest.approx(0.75)


def test_weights_that_follow_the_label_are_kept_as_one_value_a_class_with_the_same_gradients():
    """Class costs give every row of a class the same loss weight: the objectives keep K values,
    not one a row, for the whole of training, and compute the same gradients bit for bit; any
    row weighing otherwise keeps one value a row."""
    import tracemalloc

    from costaware.training.class_objective import class_objective, loss_gradients
    from costaware.training.loss_weights import LossWeights

    rng = np.random.default_rng(0)
    n = 200_000
    label = (rng.random(n) < 0.3).astype(np.int8)
    weight = np.where(label == 1, 2.5, 0.4).astype(np.float32)
    kept = LossWeights.of(weight, label, 2)
    assert kept.per_row is None and kept.per_class.tolist() == [np.float32(0.4), np.float32(2.5)]
    np.testing.assert_array_equal(kept.block(label, slice(5, 900)), weight[5:900])
    odd = weight.copy()
    odd[17] = 1.0  # one row off its class's weight
    assert LossWeights.of(odd, label, 2).per_row is odd
    # labels that do not index the K values (a float array, a -1) keep one weight a row
    assert LossWeights.of(weight, label.astype(float), 2).per_row is weight
    assert LossWeights.of(weight, label - 1, 2).per_row is weight
    margin = rng.normal(size=n).astype(np.float32)
    for offset in (None, np.float32(0.3)):
        for got, want in zip(weighted_logistic_grad_hess(margin, label, kept, offset),
                             weighted_logistic_grad_hess(margin, label, weight, offset)):
            np.testing.assert_array_equal(got, want)
    tracemalloc.start()
    objective = make_objective(label, weight)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert held < 10_000  # (a float32 weight a row would be 800,000 bytes)
    for got, want in zip(objective(margin, None),
                         weighted_logistic_grad_hess(margin, label, weight)):
        np.testing.assert_array_equal(got, want)
    # K = 3: float64 class weights, the same gradients from K values
    y3 = rng.integers(0, 3, 5000)
    class_weights = np.array([0.5, 1.0, 3.0])
    offsets = np.log(class_weights)
    margins = rng.normal(size=(5000, 3)).astype(np.float32)
    for got, want in zip(class_objective(y3, class_weights[y3], offsets)(margins.ravel(), None),
                         loss_gradients(margins.astype(np.float64), y3, class_weights[y3],
                                        offsets)):
        np.testing.assert_array_equal(got, want.astype(np.float32))
