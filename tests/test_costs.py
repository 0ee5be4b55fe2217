import itertools

import numpy as np
import pytest

from costaware.costs import (CostMatrix, DecisionPolicy, RowCosts, cost_curve, empirical_threshold,
                             expected_costs_of_actions, realised_costs, sigmoid)


def test_bayes_threshold_formula():
    costs = CostMatrix(fp=1287.67, fn=252000, tp=35280, tn=0)
    assert costs.bayes_threshold() == pytest.approx(1287.67 / (1287.67 + 252000 - 35280))
    assert CostMatrix(fp=1, fn=1).bayes_threshold() == 0.5


def test_bayes_threshold_is_where_expected_costs_cross():
    costs = CostMatrix(fp=3, fn=11, tp=1, tn=0.5)
    p = np.array([costs.bayes_threshold()])
    cost_if_1, cost_if_0 = expected_costs_of_actions(p, costs)
    assert cost_if_1[0] == pytest.approx(cost_if_0[0])
    below, above = expected_costs_of_actions(np.array([p[0] - 0.01, p[0] + 0.01]), costs)
    assert below[0] > above[0] and below[1] < above[1]


def _brute_force_best(score, label, costs: RowCosts):
    best = np.inf
    for t in np.concatenate([np.unique(score), [np.inf]]):
        total = realised_costs(label, (score >= t).astype(int), costs).sum()
        best = min(best, total)
    return best


@pytest.mark.parametrize("seed", range(20))
def test_empirical_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    score = np.round(rng.random(n), int(rng.integers(1, 4)))  # rounding creates ties
    label = (rng.random(n) < 0.4).astype(int)
    costs = RowCosts.build(CostMatrix(fp=rng.uniform(0.1, 5), fn=rng.uniform(0.1, 50),
                                      tp=rng.uniform(0, 0.1), tn=rng.uniform(0, 0.1)),
                           n, rng.uniform(0, 10, n), ("fn", "fp"))
    threshold, total = empirical_threshold(score, label, costs)
    assert total == pytest.approx(_brute_force_best(score, label, costs))
    realised = realised_costs(label, (score >= threshold).astype(int), costs).sum()
    assert realised == pytest.approx(total)


def test_cost_curve_cuts_only_between_distinct_scores():
    score = np.array([0.9, 0.5, 0.5, 0.1])
    label = np.array([1, 0, 1, 0])
    thresholds, totals = cost_curve(score, label, RowCosts.build(CostMatrix(1, 1), 4))
    assert len(thresholds) == 4  # k = 0, 1, 3, 4
    assert thresholds[0] > 0.9 and thresholds[-1] == 0.1
    assert list(totals) == [2, 1, 1, 2]


def test_row_costs_scale_only_named_costs():
    rc = RowCosts.build(CostMatrix(fp=1, fn=10, tp=2, tn=0), 3, np.array([1.0, 2.0, 3.0]), ("fn",))
    assert list(rc.fn) == [10, 20, 30] and list(rc.fp) == [1, 1, 1] and list(rc.tp) == [2, 2, 2]
    assert list(rc.sample_weights(np.array([1, 0, 1]))) == [8, 1, 28]


def test_sigmoid_is_stable_at_extremes():
    out = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert np.all(np.isfinite(out)) and out[0] == 0.0 and out[1] == 0.5 and out[2] == 1.0


def test_policy_override_moves_threshold_in_log_odds():
    base = CostMatrix(fp=1, fn=4)
    policy = DecisionPolicy(base, threshold=0.3, score_offset=0.7, threshold_source="empirical")
    new = policy.with_costs(CostMatrix(fp=1, fn=20))
    logit = lambda p: np.log(p / (1 - p))
    shift = logit(CostMatrix(fp=1, fn=20).bayes_threshold()) - logit(base.bayes_threshold())
    assert logit(new.threshold) == pytest.approx(logit(0.3) + shift)
    bayes_policy = DecisionPolicy(base, threshold=base.bayes_threshold())
    assert bayes_policy.with_costs(CostMatrix(3, 5)).threshold == pytest.approx(3 / 8)
    assert policy.with_costs(base) is policy


def test_policy_round_trips_and_decides():
    policy = DecisionPolicy(CostMatrix(fp=2, fn=5, tp=0.5, tn=0), 0.25, 1.5, "empirical")
    again = DecisionPolicy.from_dict(policy.to_dict())
    assert again == policy
    score = policy.score(np.array([-3.0, 1.5, 4.0]))
    assert score[1] == pytest.approx(0.5)
    assert list(policy.decide(np.array([0.2, 0.25, 0.3]))) == [0, 1, 1]


@pytest.mark.parametrize("seed", range(15))
@pytest.mark.parametrize("group_specific", [False, True])
def test_constrained_threshold_matches_brute_force(seed, group_specific):
    from costaware.costs import constrained_threshold
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 40))
    score = np.round(rng.random(n), 2)
    label = (rng.random(n) < 0.5).astype(int)
    s = rng.random(n) < 0.4
    s[0], s[1] = True, False
    costs = RowCosts.build(CostMatrix(fp=rng.uniform(0.5, 3), fn=rng.uniform(0.5, 3)), n)
    bound = float(rng.choice([0.0, 0.1, 0.3]))
    found = constrained_threshold(score, label, costs, s, bound, group_specific)
    candidates = np.concatenate([np.unique(score), [1.5]])
    best = np.inf
    pairs = itertools.product(candidates, candidates) if group_specific else ((t, t) for t in candidates)
    for t_a, t_d in pairs:
        decision = np.where(s, score >= t_d, score >= t_a).astype(int)
        if abs(decision[~s].mean() - decision[s].mean()) <= bound + 1e-12:
            best = min(best, realised_costs(label, decision, costs).sum())
    assert found["total"] == pytest.approx(best)
    decision = np.where(s, score >= found["threshold_d"], score >= found["threshold_a"]).astype(int)
    assert abs(decision[~s].mean() - decision[s].mean()) <= bound + 1e-12
    assert realised_costs(label, decision, costs).sum() == pytest.approx(found["total"])


def test_group_policy_round_trips_and_needs_the_facet():
    policy = DecisionPolicy(CostMatrix(1, 3), 0.3, 0.0, "constrained", group_thresholds=(0.3, 0.2),
                            facet={"column": "sex", "values_or_threshold": [1], "is_feature": False})
    assert DecisionPolicy.from_dict(policy.to_dict()) == policy
    assert list(policy.decide(np.array([0.25, 0.25]), np.array([False, True]))) == [0, 1]
    with pytest.raises(ValueError, match="every row needs its facet"):
        policy.decide(np.array([0.25]))
    moved = policy.with_costs(CostMatrix(1, 9))
    assert moved.group_thresholds[0] < 0.3 and moved.group_thresholds[1] < 0.2


@pytest.mark.parametrize("seed", range(10))
def test_decision_is_always_the_cheaper_expected_action(seed):
    rng = np.random.default_rng(seed)
    costs = CostMatrix(fp=rng.uniform(1, 10), fn=rng.uniform(10, 100), tp=rng.uniform(0, 1), tn=0.0)
    policy = DecisionPolicy(costs, threshold=float(rng.uniform(0.05, 0.95)), threshold_source="empirical")
    for candidate in (policy, policy.with_costs(CostMatrix(fp=2.0, fn=rng.uniform(3, 300)))):
        score = np.concatenate([rng.random(200), [0.0, 1.0, candidate.threshold]])
        decision = candidate.decide(score)
        cost_if_1, cost_if_0 = candidate.expected_costs(score)
        assert np.all((cost_if_1 <= cost_if_0 + 1e-9)[decision == 1])
        assert np.all((cost_if_0 < cost_if_1 + 1e-9)[decision == 0])
    bayes = DecisionPolicy(costs, threshold=costs.bayes_threshold())
    score = rng.random(50)
    assert np.allclose(bayes.decision_probability(score), score)
