import numpy as np
import pytest
from sklearn import metrics as skm

from costaware.costs import CostMatrix, RowCosts
from costaware.metrics import confusion, evaluate, log_loss, rates, roc_auc


@pytest.mark.parametrize("seed", range(10))
def test_auc_and_logloss_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 500))
    label = (rng.random(n) < 0.3).astype(int)
    label[:2] = [0, 1]
    score = np.round(rng.random(n), 2)  # ties
    assert roc_auc(label, score) == pytest.approx(skm.roc_auc_score(label, score), abs=1e-12)
    assert log_loss(label, score) == pytest.approx(skm.log_loss(label, np.clip(score, 1e-15, 1 - 1e-15)))


def test_auc_single_class_is_nan():
    assert np.isnan(roc_auc(np.zeros(4), np.arange(4.0)))


@pytest.mark.parametrize("seed", range(5))
def test_rates_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, 200)
    decision = rng.integers(0, 2, 200)
    r = rates(confusion(label, decision))
    assert r["precision"] == pytest.approx(skm.precision_score(label, decision))
    assert r["recall"] == pytest.approx(skm.recall_score(label, decision))
    assert r["f1"] == pytest.approx(skm.f1_score(label, decision))
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(label, decision))
    c = confusion(label, decision)
    assert [[c["tn"], c["fp"]], [c["fn"], c["tp"]]] == skm.confusion_matrix(label, decision).tolist()


def test_zero_division_gives_zero_not_nan():
    r = rates(confusion(np.array([0, 0]), np.array([0, 0])))
    assert r == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 1.0}


def test_evaluate_expected_cost():
    label = np.array([1, 1, 0, 0])
    score = np.array([0.9, 0.2, 0.6, 0.1])
    costs = RowCosts.build(CostMatrix(fp=10, fn=100, tp=1, tn=0), 4)
    out = evaluate(label, score, 0.5, costs)
    assert out["confusion_matrix"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 1}
    assert out["expected_cost_total"] == 111 and out["expected_cost"] == 111 / 4
    assert out["auc"] == 0.75
