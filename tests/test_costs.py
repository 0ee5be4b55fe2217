"""Costs, the Bayes rule, fitted rules and the served policy: against brute force."""

import itertools

import numpy as np
import pytest

from costaware.decisions.calibration import Calibrator
from costaware.decisions.costs import (CostMatrix, RowCosts, bayes_decision, check_row_costs, decision_margin,
                             shifted_decision, sigmoid)
from costaware.decisions.rules import DecisionRule, InfeasibleBound, ShiftHistogram
from costaware.errors import DataError
from costaware.decisions.policy import OverrideRefused, Policy


def _random_costs(rng, n: int) -> RowCosts:
    """Per-row costs of every kind: some rows with a dominated action, some with zero regret."""
    tp, tn = rng.uniform(0, 5, n), rng.uniform(0, 2, n)
    fn = tp + rng.choice([0.0, 1.0], n, p=[0.1, 0.9]) * rng.exponential(50, n)
    fp = tn + rng.choice([0.0, 1.0], n, p=[0.1, 0.9]) * rng.exponential(5, n)
    both = (fn == tp) & (fp == tn)
    fp[both] += 1.0  # both decisions equal for every p is refused; keep one regret
    return RowCosts(fp, fn, tp, tn)


def test_bayes_threshold_formula():
    costs = CostMatrix(fp=1287.67, fn=252000, tp=35280, tn=0)
    assert costs.bayes_threshold() == pytest.approx(1287.67 / (1287.67 + 252000 - 35280))
    assert CostMatrix(fp=1, fn=1).bayes_threshold() == 0.5
    assert RowCosts.constant(costs, 3).bayes_threshold() == pytest.approx(
        np.full(3, costs.bayes_threshold()))


@pytest.mark.parametrize("seed", range(10))
def test_bayes_decision_is_brute_force_argmin_with_random_row_costs(seed):
    rng = np.random.default_rng(seed)
    n = 500
    costs = _random_costs(rng, n)
    p = np.concatenate([rng.random(n - 4), [0.0, 1.0, 1e-300, 1 - 1e-16]])
    decision, cost_if_1, cost_if_0 = bayes_decision(p, costs)
    # brute force: each action's expected cost written out, the cheaper one (ties: 1)
    brute_1 = np.array([pi * tp + (1 - pi) * fp for pi, tp, fp in zip(p, costs.tp, costs.fp)])
    brute_0 = np.array([pi * fn + (1 - pi) * tn for pi, fn, tn in zip(p, costs.fn, costs.tn)])
    assert np.array_equal(cost_if_1, brute_1) and np.array_equal(cost_if_0, brute_0)
    assert np.array_equal(decision, (brute_1 <= brute_0).astype(np.int8))
    # the decision margin agrees (z >= 0 iff deciding 1 is not more expensive), up to exact ties
    z = decision_margin(p, costs)
    clear = np.abs(brute_1 - brute_0) > 1e-9 * (np.abs(brute_1) + np.abs(brute_0) + 1)
    assert np.array_equal((z >= 0)[clear], decision[clear] == 1)
    assert np.array_equal(shifted_decision(p, costs, 0.0)[clear], decision[clear])


def test_regrets_never_go_negative_by_rounding():
    costs = RowCosts(np.array([0.3]), np.array([0.1 + 0.2]), np.array([0.3]), np.array([0.1 + 0.2]))
    r1, r0 = costs.regrets()
    assert r1[0] == 0.0 and r0[0] == 0.0  # 0.1 + 0.2 - 0.3 = 5.6e-17: rounding, counted as 0
    weird = RowCosts(np.array([1.0]), np.array([0.3]), np.array([0.1 + 0.2]), np.array([0.0]))
    assert weird.regrets()[0][0] == 0.0


@pytest.mark.parametrize(("cells", "message"), [
    ({"fn": np.nan}, "line 3, cost_fn: missing; costs must be numbers >= 0"),
    ({"fp": -2.0}, "line 3, cost_fp: -2; costs must be numbers >= 0"),
    ({"fp": 1.0, "tn": 1.0, "fn": 4.0, "tp": 4.0}, "line 3: cost_fn (4) equals cost_tp (4) and cost_fp (1) "
                                                   "equals cost_tn (1): both decisions cost the same"),
    ({"tp": 9.0, "fn": 4.0}, "line 3: cost_tp (9) exceeds cost_fn (4): the correct decision would cost "
                             "more than the mistake"),
])
def test_bad_cost_cells_are_refused_naming_row_and_column(cells, message):
    values = {"fp": np.array([1.0, 1.0]), "fn": np.array([5.0, 5.0]), "tp": np.zeros(2),
              "tn": np.zeros(2)}
    for cell, value in cells.items():
        values[cell] = np.array([values[cell][0], value])
    costs = RowCosts(values["fp"], values["fn"], values["tp"], values["tn"])
    with pytest.raises(DataError) as info:
        check_row_costs(costs, lambda i: f"line {i + 2}", {c: f"cost_{c}" for c in values},
                        training=True)
    assert str(info.value).startswith(message)


def test_serving_accepts_a_correct_decision_dearer_than_the_mistake():
    costs = RowCosts(np.array([1.0]), np.array([4.0]), np.array([9.0]), np.array([0.0]))
    check_row_costs(costs, str, {c: c for c in "fp fn tp tn".split()}, training=False)
    decision, cost_if_1, cost_if_0 = bayes_decision(np.array([0.99]), costs)
    assert decision[0] == 0 and cost_if_0[0] < cost_if_1[0]  # deciding 1 never pays here



def test_serving_refuses_costs_that_reverse_the_rule():
    # tp >= fn and tn >= fp (one strictly): deciding 1 would pay only when p is low
    costs = RowCosts(np.array([1.0, 1.0]), np.array([4.0, 4.0]), np.array([0.0, 4.0]),
                     np.array([0.0, 3.0]))
    with pytest.raises(DataError, match=r"^row 1: tp \(4\) is not below fn \(4\) and tn \(3\) is "
                                        r"not below fp \(1\)"):
        check_row_costs(costs, lambda i: f"row {i}", {c: c for c in "fp fn tp tn".split()},
                        training=False)


@pytest.mark.parametrize("rule", [DecisionRule(), DecisionRule("empirical", 0.7, 0.7),
                                  DecisionRule("empirical", -1.3, -1.3)])
def test_thresholds_and_margins_agree_with_decisions_when_one_decision_dominates(rule):
    """Rows with r0 < 0 < r1, r0 = 0 < r1, r1 = 0 < r0, r1 < 0 < r0 and an ordinary one: the served
    threshold (0, 0, 1, 1, p*) is finite and decides as the rule does, at every p (the one
    documented exception: r1 < 0 at p = 1 exactly, where threshold 1 would say 1 and the rule says
    0); the decision margin's sign agrees everywhere."""
    costs = RowCosts(fp=np.array([0.0, 0.0, 2.0, 2.0, 1.0]), fn=np.array([5.0, 5.0, 1.0, 1.0, 9.0]),
                     tp=np.array([0.0, 0.0, 1.0, 3.0, 0.0]), tn=np.array([1.0, 0.0, 0.0, 0.0, 0.0]))
    check_row_costs(costs, str, {c: c for c in "fp fn tp tn".split()}, training=False)
    threshold = rule.thresholds(costs)
    assert np.all(np.isfinite(threshold))
    assert threshold[:4].tolist() == [0.0, 0.0, 1.0, 1.0]
    for p in [0.0, 1e-300, 0.05, 0.1, 0.37, 0.5, 0.9, 1 - 1e-16, 1.0]:
        ps = np.full(5, p)
        decision = rule.decide(ps, costs)[0]
        expected = (ps >= threshold).astype(np.int8)
        if p == 1.0:
            expected[3] = 0
        assert np.array_equal(decision, expected), (p, decision, expected)
        z = decision_margin(ps, costs)
        assert np.array_equal(bayes_decision(ps, costs)[0], (z >= 0).astype(np.int8)), (p, z)

def _rule_cost(rule: DecisionRule, p, label, costs, sensitive):
    decision, _, _ = rule.decide(p, costs, sensitive)
    return costs.realised(label, decision).sum(), decision


@pytest.mark.parametrize("seed", range(12))
def test_empirical_rule_is_the_cheapest_shift_on_the_grid(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    costs = _random_costs(rng, n)
    p = rng.beta(0.5, 0.5, n)
    label = (rng.random(n) < p ** 1.5).astype(int)  # miscalibrated: the best shift is not 0
    histogram = ShiftHistogram.of(p, label, costs)
    rule = histogram.empirical()
    total, _ = _rule_cost(rule, p, label, costs, None)
    edges = ShiftHistogram.edges()
    brute = [costs.realised(label, shifted_decision(p, costs, e)).sum() for e in edges]
    assert total == pytest.approx(min(brute), rel=1e-9, abs=1e-9)
    assert histogram.total_cost() == pytest.approx(np.array(brute), rel=1e-9, abs=1e-9)
    ties = np.flatnonzero(np.isclose(brute, min(brute), rtol=1e-12, atol=1e-12))
    assert abs(rule.shift_a) == pytest.approx(np.abs(edges[ties]).min())  # nearest 0 wins


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("per_facet", [False, True])
def test_constrained_rule_matches_brute_force_on_a_coarse_grid(seed, per_facet, monkeypatch):
    import costaware.decisions.rules as decision_module
    monkeypatch.setattr(decision_module, "SHIFT_BINS", 40)  # 41 candidates: brute force is cheap
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 80))
    costs = RowCosts.constant(CostMatrix(fp=rng.uniform(0.5, 3), fn=rng.uniform(0.5, 3)), n)
    p = np.round(rng.random(n), 2)
    label = (rng.random(n) < 0.5).astype(int)
    s = rng.random(n) < 0.4
    s[0], s[1] = True, False
    bound = float(rng.choice([0.0, 0.1, 0.3]))
    histogram = decision_module.ShiftHistogram.of(p, label, costs, s)
    try:
        rule, dppl = histogram.constrained(bound, per_facet)
    except InfeasibleBound:
        rule = None
    edges = decision_module.ShiftHistogram.edges()
    best = np.inf
    pairs = itertools.product(edges, edges) if per_facet else ((e, e) for e in edges)
    for d_a, d_d in pairs:
        decision = shifted_decision(p, costs, np.where(s, d_d, d_a))
        if abs(decision[~s].mean() - decision[s].mean()) <= bound + 1e-12:
            best = min(best, costs.realised(label, decision).sum())
    if rule is None:
        assert best == np.inf
        return
    total, decision = _rule_cost(rule, p, label, costs, s)
    assert total == pytest.approx(best)
    assert abs(decision[~s].mean() - decision[s].mean()) <= bound + 1e-12
    assert dppl == pytest.approx(decision[~s].mean() - decision[s].mean())


def test_shift_histograms_add_up_over_hosts():
    rng = np.random.default_rng(3)
    costs = _random_costs(rng, 400)
    p, label, s = rng.random(400), rng.integers(0, 2, 400), rng.random(400) < 0.3
    whole = ShiftHistogram.of(p, label, costs, s)
    halves = [ShiftHistogram.of(p[k], label[k], costs.subset(k), s[k])
              for k in (slice(0, 170), slice(170, 400))]
    summed = ShiftHistogram.unpack(halves[0].pack() + halves[1].pack())
    assert np.array_equal(summed.rows, whole.rows)
    assert np.allclose(summed.cost_change, whole.cost_change) and np.allclose(summed.cost_if_0, whole.cost_if_0)


def test_rule_thresholds_are_where_the_rule_switches():
    costs = RowCosts(np.array([1.0, 2.0]), np.array([9.0, 4.0]), np.zeros(2), np.zeros(2))
    assert DecisionRule().thresholds(costs) == pytest.approx([0.1, 1 / 3])
    shifted = DecisionRule("empirical", 0.5, 0.5)
    t = shifted.thresholds(costs)
    for i in range(2):
        eps = 1e-9
        one = RowCosts(*(np.array([getattr(costs, c)[i]]) for c in ("fp", "fn", "tp", "tn")))
        assert shifted.decide(np.array([t[i] + eps]), one)[0][0] == 1
        assert shifted.decide(np.array([t[i] - eps]), one)[0][0] == 0


def _policy(rule=DecisionRule(), facet=None):
    calibrator = Calibrator(0.9, -0.2, ((0.01, 0.0), (0.0, 0.02)), 100)
    return Policy(calibrator, rule, CostMatrix(fp=2, fn=5, tp=0.5, tn=0), (("fn", "loan_loss"),),
                  facet)


def test_policy_round_trips():
    for policy in (_policy(), _policy(DecisionRule("empirical", 0.7, 0.7)),
                   _policy(DecisionRule("constrained", 0.2, -0.4, 0.05),
                           {"column": "sex", "values_or_threshold": [1], "is_feature": False})):
        assert Policy.from_dict(policy.to_dict()) == policy


def test_override_decides_by_the_models_rule_at_the_new_costs():
    policy = _policy(DecisionRule("empirical", 1.5, 1.5))
    new = policy.with_costs(CostMatrix(fp=1, fn=50))
    assert new.rule == policy.rule and new.costs == CostMatrix(fp=1, fn=50)
    assert new.calibrator == policy.calibrator
    p = np.array([0.08, 0.085])
    decision, _, _ = new.decide(p, RowCosts.constant(new.costs, 2))
    # the new Bayes threshold 1/51, shifted by 1.5 in log-odds: sigmoid(log(1/50) + 1.5) = 0.0823
    assert list(decision) == [0, 1]
    assert policy.with_costs(policy.costs) is policy


def test_constrained_policy_refuses_overrides():
    policy = _policy(DecisionRule("constrained", 0.2, 0.2, 0.05))
    with pytest.raises(OverrideRefused, match=r"\|DPPL\| <= 0.05"):
        policy.with_costs(CostMatrix(fp=1, fn=50))


def test_per_facet_rule_needs_the_facet():
    rule = DecisionRule("constrained", 0.0, -3.0, 0.1)
    costs = RowCosts.constant(CostMatrix(1, 1), 2)
    decision, _, _ = rule.decide(np.array([0.2, 0.2]), costs, np.array([False, True]))
    assert list(decision) == [0, 1]  # facet d's boundary moved down by 3 in log-odds
    with pytest.raises(ValueError, match="every row needs its facet"):
        rule.decide(np.array([0.2]), RowCosts.constant(CostMatrix(1, 1), 1))


def test_sigmoid_is_stable_at_extremes():
    out = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert np.all(np.isfinite(out)) and out[0] == 0.0 and out[1] == 0.5 and out[2] == 1.0


def test_rule_described_once_for_the_log_and_the_report():
    assert DecisionRule().describe() == "bayes"
    assert DecisionRule("empirical", 0.25, 0.25).describe() == "empirical (shift +0.25)"
    both = DecisionRule("constrained", -0.5, 1.25, 0.05)
    assert both.describe() == "constrained (shifts a -0.5, d +1.25; |DPPL| <= 0.05)"
    # what is described is what is saved: the description survives the artifact's round trip
    assert DecisionRule.from_dict(both.to_dict()).describe() == both.describe()


def test_joined_row_costs_keep_a_repeated_class_cost_one_value():
    """Batches of a channel joined: a cell that is the class cost in every batch stays one value
    (no 8 bytes a row), a column's values are joined in order, and different class costs (or a
    column beside a class cost) give every row its own."""
    matrix = CostMatrix(fp=1, fn=20)
    parts = [RowCosts.from_columns(matrix, n, {"fn": np.arange(n, dtype=np.float64) + k})
             for k, n in ((0, 3), (10, 0), (20, 2))]
    joined = RowCosts.concat(parts)
    assert len(joined) == 5 and joined.fp.strides == (0,) and joined.fp[0] == 1
    np.testing.assert_array_equal(joined.fn, [0, 1, 2, 20, 21])
    assert joined.fn.strides != (0,)
    mixed = RowCosts.concat([RowCosts.constant(matrix, 2),
                             RowCosts.constant(CostMatrix(fp=2, fn=20), 2)])
    np.testing.assert_array_equal(mixed.fp, [1, 1, 2, 2])
    beside = RowCosts.concat([RowCosts.constant(matrix, 2),
                              RowCosts.from_columns(matrix, 1, {"fp": np.array([1.0])})])
    np.testing.assert_array_equal(beside.fp, [1, 1, 1])
    assert beside.fp.strides != (0,)
