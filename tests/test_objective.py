import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer

from costaware import hyperparameters, training
from costaware.data import Dataset
from costaware.objective import (fitted_offset, intercept, make_objective, score_offset,
                                 weighted_logistic_grad_hess, weighted_logistic_loss)


@pytest.mark.parametrize("seed", range(5))
def test_gradient_and_hessian_match_finite_differences(seed):
    rng = np.random.default_rng(seed)
    n = 50
    margin = rng.normal(scale=3, size=n)
    label = rng.integers(0, 2, n)
    weight = rng.uniform(0.1, 20, n)
    grad, hess = weighted_logistic_grad_hess(margin, label, weight)
    h = 1e-5
    for i in range(n):
        up, down = margin.copy(), margin.copy()
        up[i] += h
        down[i] -= h
        numeric = (weighted_logistic_loss(up, label, weight) - weighted_logistic_loss(down, label, weight)) / (2 * h)
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-7)
        g_up = weighted_logistic_grad_hess(up, label, weight)[0][i]
        g_down = weighted_logistic_grad_hess(down, label, weight)[0][i]
        assert hess[i] == pytest.approx((g_up - g_down) / (2 * h), rel=1e-4, abs=1e-9)


def test_intercept_minimises_constant_model():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 2, 100)
    weight = rng.uniform(1, 5, 100)
    b = intercept(label, weight)
    losses = [weighted_logistic_loss(np.full(100, b + d), label, weight) for d in (-1e-3, 0, 1e-3)]
    assert losses[1] < losses[0] and losses[1] < losses[2]


def test_score_offset_is_log_cost_ratio_for_class_costs():
    label = np.array([1, 0, 0, 1, 0])
    weight = np.where(label == 1, 20.0, 2.0)
    assert score_offset(label, weight) == pytest.approx(np.log(10))


def test_fitted_offset_zeroes_the_mean_residual():
    rng = np.random.default_rng(3)
    margin = rng.normal(size=300)
    label = (rng.random(300) < 0.3).astype(int)
    a = fitted_offset(margin, label)
    p = 1 / (1 + np.exp(-(margin - a)))
    assert p.sum() == pytest.approx(label.sum(), rel=1e-8)


def _breast_cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return x.astype(np.float32), (1 - y).astype(np.int8)


def test_cost_weighted_loss_equals_builtin_logistic_with_sample_weights():
    """With constant class costs our objective grows the same trees as binary:logistic + weights.

    Twice: the numpy objective through ``xgb.train(obj=...)`` (what training uses with the parity
    penalty or sampling) agrees to 1e-4; ``training.train`` without them lets XGBoost compute these
    very gradients natively and gives the built-in's model bit for bit. Without row or column
    sampling: with sampling, costaware seeds every round's sample by (seed, round) so that a resumed
    run is exact (tests/test_checkpoints.py), while ``xgb.train`` draws from one random stream.
    """
    x, y = _breast_cancer()
    settings = hyperparameters.parse({"cost_fp": "2", "cost_fn": "30", "cost_tp": "1", "num_round": "25",
                                      "max_depth": "4", "eta": "0.2", "seed": "3",
                                      "decision_threshold": "bayes"})
    data = Dataset(x, y, [f"f{i}" for i in range(x.shape[1])], None, "mem", False)
    result = training.train(settings, data, log=lambda line: None)

    weight = np.where(y == 1, 30.0 - 1.0, 2.0 - 0.0)
    weight = weight / weight.mean()
    base = 1 / (1 + np.exp(-intercept(y, weight)))
    params = {**settings.xgboost_params(), "objective": "binary:logistic", "base_score": base}
    dtrain = xgb.DMatrix(x, label=y, weight=weight)
    builtin = xgb.train(params, dtrain, num_boost_round=25)
    numpy_objective = xgb.train(params, dtrain, num_boost_round=25, obj=make_objective(y, weight))

    theirs = builtin.predict(xgb.DMatrix(x), output_margin=True)
    assert np.abs(numpy_objective.predict(xgb.DMatrix(x), output_margin=True) - theirs).max() < 1e-4
    ours = result.booster.predict(xgb.DMatrix(x, feature_names=data.feature_names), output_margin=True)
    assert np.array_equal(ours, theirs)
    assert result.booster.num_boosted_rounds() == 25


def test_symmetric_loss_is_the_unweighted_builtin():
    x, y = _breast_cancer()
    settings = hyperparameters.parse({"objective": "binary:logistic", "num_round": "10", "cost_fn": "9",
                                      "decision_threshold": "bayes"})
    data = Dataset(x, y, [f"f{i}" for i in range(x.shape[1])], None, "mem", False)
    result = training.train(settings, data, log=lambda line: None)
    base = y.mean()
    builtin = xgb.train({**settings.xgboost_params(), "objective": "binary:logistic", "base_score": base},
                        xgb.DMatrix(x, label=y), num_boost_round=10)
    dm = xgb.DMatrix(x, feature_names=data.feature_names)
    plain = xgb.DMatrix(x)
    assert np.abs(result.booster.predict(dm) - builtin.predict(plain)).max() < 1e-5
    assert result.policy.score_offset == 0.0


def test_make_objective_binds_rows():
    label = np.array([0, 1])
    obj = make_objective(label, np.array([1.0, 3.0]))
    grad, hess = obj(np.zeros(2), None)
    assert list(grad) == [0.5, -1.5] and list(hess) == [0.25, 0.75]
