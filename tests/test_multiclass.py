"""The multi-class core: cost matrices, Bayes decisions, the loss and the calibrator."""

import itertools

import numpy as np
import pytest

from costaware.training import class_objective
from costaware.decisions import multiclass as mc
from costaware.decisions.costs import CAP, CostMatrix, RowCosts
from costaware.training.objective import CostWeighting


@pytest.mark.parametrize("seed", range(20))
def test_decision_is_brute_force_argmin_of_expected_cost(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 7))
    matrix = rng.uniform(0, 10, (k, k))
    p = rng.dirichlet(np.ones(k) * 0.7, size=200)
    decision, expected = mc.bayes_decisions(p, matrix)
    for i in range(len(p)):
        costs = [sum(p[i, t] * matrix[t][j] for t in range(k)) for j in range(k)]
        assert np.allclose(expected[i], costs)
        assert decision[i] == min(range(k), key=lambda j: (costs[j], j))


def test_ties_go_to_the_lower_class():
    matrix = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], float)
    decision, _ = mc.bayes_decisions(np.array([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4]]), matrix)
    assert decision.tolist() == [0, 1]


@pytest.mark.parametrize("text, fragment", [
    ("[[0,1],[1,0", "not JSON"),
    ('{"a": 1}', "must be a JSON list of rows"),
    ("[[0,1,2],[1,0],[2,1,0]]", "row 1 has 2 values, the matrix has 3 rows"),
    ('[[0,1,2],[1,0,"x"],[2,1,0]]', 'C[1][2] is "x", not a number'),
    ("[[0,1,2],[1,0,-1],[2,1,0]]", "C[1][2] is -1: costs must be finite and not below 0"),
    ("[[0,1,2],[1,0,true],[2,1,0]]", "C[1][2] is true, not a number"),
    ("[[1,5,5],[0,5,5],[0,5,5]]", "deciding class 0 costs no more than any other decision"),
    ("[[0,1,1],[1,0,1],[1,1,0],[1,1,1]]", "row 0 has 3 values, the matrix has 4 rows"),
])
def test_bad_matrices_refused_with_one_line(text, fragment):
    with pytest.raises(mc.CostMatrixError) as info:
        mc.parse_cost_matrix(text)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_matrix_size_must_match_the_classes():
    with pytest.raises(mc.CostMatrixError, match="3 x 3, but there are 4 classes"):
        mc.parse_cost_matrix("[[0,1,1],[1,0,1],[1,1,0]]", classes=4)
    assert mc.parse_cost_matrix([[0, 1, 1], [1, 0, 1], [1, 1, 0]], 3).shape == (3, 3)


@pytest.mark.parametrize("seed", range(10))
def test_each_row_is_decided_at_its_own_matrix(seed):
    """Per-row cells: E[i] = p[i] @ C_i with C_i the class matrix with the row's own cells, and a
    row whose cells equal the class costs gets exactly p @ C."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 6))
    n = 300
    matrix = rng.uniform(0, 10, (k, k))
    p = rng.dirichlet(np.ones(k), size=n)
    cells = {(0, 1): rng.uniform(0, 30, n), (k - 1, 0): rng.uniform(0, 30, n)}
    own = np.tile(matrix, (n, 1, 1))
    for (t, j), values in cells.items():
        own[:, t, j] = values
    decision, expected = mc.bayes_decisions(p, matrix, cells)
    assert np.allclose(expected, np.einsum("nk,nkj->nj", p, own), rtol=1e-12)
    assert (decision == np.einsum("nk,nkj->nj", p, own).argmin(axis=1)).all()
    same = {cell: np.full(n, matrix[cell]) for cell in cells}
    assert (mc.expected_costs(p, matrix, same) == p @ matrix).all()


def test_row_loss_weights_are_the_class_weights_at_class_costs_and_follow_each_rows_regret():
    rng = np.random.default_rng(4)
    matrix = np.array([[0, 2, 3], [2, 0, 1], [12, 3, 0]], float)
    label = rng.integers(0, 3, 400)
    classwise = class_objective.ClassWeighting.fit(label, matrix, 0.5)
    weighting, weight = class_objective.row_loss_weights(label, matrix, 0.5)
    assert weighting == classwise and (weight == np.asarray(classwise.weights)[label]).all()
    # the cell at its class cost for every row: the same weights (to rounding)
    same, same_weight = class_objective.row_loss_weights(label, matrix, 0.5, {(2, 0): np.full(400, 12.0)})
    assert np.allclose(same.weights, classwise.weights, rtol=1e-12)
    assert np.allclose(same_weight, np.asarray(classwise.weights)[label], rtol=1e-12)
    # a row's own cost: its regret mean_{j != y} (C_i[y][j] - C_i[y][y]), its weight by it
    refund = rng.uniform(0, 40, 400)
    regret = mc.row_regrets(label, matrix, {(2, 0): refund})
    assert np.allclose(regret[label == 2], (refund[label == 2] + 3) / 2)
    assert np.allclose(regret[label != 2], mc.class_regrets(matrix)[label[label != 2]])
    _, own_weight = class_objective.row_loss_weights(label, matrix, 1.0, {(2, 0): refund})
    scaled = np.clip(regret / regret.mean(), 1 / CAP, CAP)
    assert np.allclose(own_weight, scaled / scaled.mean(), rtol=1e-12)


@pytest.mark.parametrize("text, fragment", [
    ('[[0,"a",2],[1,0,1],["a",1,0]]', "C[0][1] and C[2][0] name the same column ('a')"),
    ('[[0," ",2],[1,0,1],[2,1,0]]', "C[0][1] is a blank column name"),
    ('[[0,null,2],[1,0,1],[2,1,0]]', "C[0][1] is null, not a number or the name of a cost column"),
])
def test_named_cells_refused_with_one_line(text, fragment):
    with pytest.raises(mc.CostMatrixError) as info:
        mc.parse_cost_matrix(text, columns=True)
    assert fragment in str(info.value)


@pytest.mark.parametrize("seed", range(5))
def test_gradient_and_hessian_are_the_losses_derivatives(seed):
    rng = np.random.default_rng(seed)
    n, k = 7, 4
    f = rng.normal(0, 2, (n, k))
    y = rng.integers(0, k, n)
    w = rng.uniform(0.2, 3, n)
    w[0] = 0.0  # a row a fold model does not see
    offsets = rng.normal(0, 0.5, k)
    grad, hess = class_objective.loss_gradients(f, y, w, offsets)
    eps = 1e-5
    for i, c in itertools.product(range(n), range(k)):
        up, down = f.copy(), f.copy()
        up[i, c] += eps
        down[i, c] -= eps
        numeric = (class_objective.weighted_loss(up, y, w, offsets) - class_objective.weighted_loss(down, y, w, offsets)) / (2 * eps)
        assert numeric == pytest.approx(grad[i, c], abs=1e-6)
        g_up = class_objective.loss_gradients(up, y, w, offsets)[0][i, c]
        g_down = class_objective.loss_gradients(down, y, w, offsets)[0][i, c]
        assert (g_up - g_down) / (2 * eps) == pytest.approx(hess[i, c], abs=1e-6)
    assert np.all(grad[0] == 0) and np.all(hess[0] == 0)


def test_two_classes_weight_as_the_binary_loss():
    # the regret of class k for K = 2 is the binary C_FN - C_TP and C_FP - C_TN
    costs = CostMatrix(fp=3.0, fn=20.0, tp=1.0, tn=0.5)
    matrix = np.array([[costs.tn, costs.fp], [costs.fn, costs.tp]])
    label = np.array([0] * 70 + [1] * 30)
    for exponent in (0.0, 0.15, 1.0):
        ours = class_objective.ClassWeighting.fit(label, matrix, exponent)
        binary = CostWeighting.fit(label, RowCosts.constant(costs, len(label)), exponent)
        raw = binary.weights(label, RowCosts.constant(costs, len(label)))
        expected = raw / raw.mean()
        assert np.allclose(np.asarray(ours.weights)[label], expected)
        assert ours.scale == pytest.approx(binary.scale)


def test_weighted_optimum_keeps_margins_log_probabilities():
    # one leaf (a constant margin per class): the weighted loss with offsets is minimised where
    # softmax(f) equals the class shares
    label = np.array([0] * 50 + [1] * 30 + [2] * 20)
    matrix = np.array([[0, 1, 2], [5, 0, 1], [20, 4, 0]], float)
    weighting = class_objective.ClassWeighting.fit(label, matrix, 1.0)
    w = np.asarray(weighting.weights)[label]
    f = np.zeros(3)
    for _ in range(200):  # Newton steps on the three constants
        grad, hess = class_objective.loss_gradients(np.tile(f, (len(label), 1)), label, w, weighting.offsets)
        f -= grad.sum(axis=0) / hess.sum(axis=0)
    assert np.allclose(mc.softmax(f[None])[0], [0.5, 0.3, 0.2], atol=1e-6)


def test_temperature_calibrator_stays_sane_on_separable_rows():
    """Issue #21: labels that are cut-offs on one feature (1 and 2), margins that separate the
    held-out rows perfectly once each class's bias is corrected. Maximum likelihood has no finite
    optimum there (it went to T = 0.0155, biases -96 and +72, and a row on the boundary of class 1
    got P = 7e-4); the prior centred on no correction keeps it finite and a boundary row near even
    between its two classes."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3, 450)
    y = np.digitize(x, [1.0, 2.0])

    def margins(x):
        return -4 * np.abs(np.asarray(x)[:, None] - [0.5, 1.5, 2.5]) + np.array([0.0, 1.5, -1.0])

    cal = mc.fit_temperature(margins(x), y)
    assert cal.temperature > 0.05
    assert max(abs(b) for b in cal.bias) < 30
    on_boundary = cal.probability(margins([1.0, 2.0]))
    assert on_boundary[0, [0, 1]].min() > 0.05 and on_boundary[1, [1, 2]].min() > 0.05
    # the evidence does outweigh the prior: the held-out rows are calibrated, every one confident
    assert cal.probability(margins(x))[np.arange(len(y)), y].min() > 0.3


def test_temperature_calibrator_recovers_a_known_distortion():
    rng = np.random.default_rng(3)
    n, k = 20000, 3
    true_logits = rng.normal(0, 1.5, (n, k))
    y = np.array([rng.choice(k, p=p) for p in mc.softmax(true_logits)])
    # the model is overconfident (margins times 2.5) and off by a class bias
    margins = true_logits * 2.5 + np.array([0.0, 1.0, -0.5])
    cal = mc.fit_temperature(margins, y)
    assert cal.temperature == pytest.approx(2.5, rel=0.05)
    assert cal.bias[0] == 0.0
    assert cal.bias[1] == pytest.approx(-1.0 / 2.5, abs=0.05)
    assert cal.bias[2] == pytest.approx(0.5 / 2.5, abs=0.05)

    def logloss(p):
        return -np.log(p[np.arange(n), y]).mean()

    assert logloss(cal.probability(margins)) < logloss(mc.softmax(margins)) - 0.1
    again = mc.TemperatureCalibrator.from_dict(cal.to_dict())
    assert np.array_equal(again.probability(margins), cal.probability(margins))


# --- bias, the way Clarify reads more than two classes ---------------------------------------

@pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")
@pytest.mark.parametrize("classes, favourable, seed", [
    ([0, 1, 2], [1, 2], 0),
    ([0, 1, 2, 3], [0], 1),
    (["low", "medium", "high"], ["high"], 2),
    (["low", "medium", "high"], ["medium", "high"], 3),
])
def test_collapsed_bias_equals_smclarify(classes, favourable, seed):
    import pandas as pd
    from smclarify.bias import report as clarify_report

    from costaware.metrics import bias
    from support import report_values, same

    rng = np.random.default_rng(seed)
    n, k = 500, len(classes)
    label = rng.integers(0, k, n)
    decision = np.where(rng.random(n) < 0.7, label, rng.integers(0, k, n))
    facet = rng.choice(["A", "B"], n, p=[0.6, 0.4])
    group = rng.integers(0, 3, n)
    values = np.array(classes, dtype=object)
    frame = pd.DataFrame({"facet": pd.Series(facet, dtype=object),
                          "label": pd.Series(values[label], dtype=object),
                          "pred": pd.Series(values[decision], dtype=object)})
    ref = {}
    for stage in (clarify_report.StageType.PRE_TRAINING, clarify_report.StageType.POST_TRAINING):
        ref.update(report_values(clarify_report.bias_report(
            frame, clarify_report.FacetColumn("facet", ["B"]),
            clarify_report.LabelColumn("label", frame["label"], favourable), stage,
            clarify_report.LabelColumn("pred", frame["pred"]),
            group_variable=pd.Series(group))))
    favourite = tuple(classes.index(v) for v in favourable)
    tables = bias.collapsed_tables(label, decision, facet == "B", favourite, group, 3)
    section = bias.bias_section(*tables)
    got = {**section["pre_training"], **section["post_training"]}
    assert set(got) <= set(ref) and len(got) >= 18  # every metric but FT (which needs features)
    assert all(same(got[name], ref[name]) for name in got), \
        {name: (got[name], ref[name]) for name in got if not same(got[name], ref[name])}


def test_per_class_parity_is_one_vs_rest_dppl_and_di():
    from costaware.metrics import bias
    from costaware.metrics import clarify as fairness

    rng = np.random.default_rng(9)
    decision = rng.integers(0, 3, 400)
    sensitive = rng.random(400) < 0.3
    rows = bias.per_class_parity(decision, sensitive, 3)
    for k, row in enumerate(rows):
        assert row["DPPL"] == pytest.approx(fairness.dppl(decision == k, sensitive))
        assert row["DI"] == pytest.approx(fairness.di(decision == k, sensitive))
        rate_a = (decision[~sensitive] == k).mean()
        rate_d = (decision[sensitive] == k).mean()
        assert row["DPPL"] == pytest.approx(rate_a - rate_d)


@pytest.mark.parametrize("seed, per_facet", [(s, p) for s in range(8) for p in (True, False)])
def test_bounded_rule_is_the_cheapest_within_the_bound(seed, per_facet):
    rng = np.random.default_rng(seed)
    n, k = 40, 3
    matrix = rng.uniform(0, 5, (k, k))
    np.fill_diagonal(matrix, 0)
    p = rng.dirichlet(np.ones(k), n)
    label = np.array([rng.choice(k, p=row) for row in p])
    sensitive = rng.random(n) < 0.4
    favourable = (2,)
    bound = float(rng.choice([0.0, 0.05, 0.2]))
    expected = mc.expected_costs(p, matrix)
    rule, dppl, cost = mc.fit_favourable_shift(
        *mc.favourable_gaps(expected, label, favourable, matrix), sensitive, favourable, bound,
        per_facet)
    decided = rule.decide(expected, sensitive)
    fav = decided == 2
    assert abs(fav[~sensitive].mean() - fav[sensitive].mean() - dppl) < 1e-12
    assert abs(dppl) <= bound + 1e-12
    assert matrix[label, decided].sum() == pytest.approx(cost)
    # brute force over every shift that changes a decision: midpoints of the gaps, and beyond
    gaps = np.sort(np.unique(expected[:, :2].min(axis=1) - expected[:, 2]))
    candidates = np.concatenate([[-gaps[-1] - 10], -(gaps[1:] + gaps[:-1]) / 2, [-gaps[0] + 10]])
    pairs = ([(a, d) for a in candidates for d in candidates] if per_facet
             else [(a, a) for a in candidates])
    best = np.inf
    for a, d in pairs:
        trial = mc.FavourableShift(favourable, a, d).decide(expected, sensitive) == 2
        if abs(trial[~sensitive].mean() - trial[sensitive].mean()) <= bound + 1e-12:
            best = min(best, matrix[label, mc.FavourableShift(favourable, a, d)
                                    .decide(expected, sensitive)].sum())
    assert cost == pytest.approx(best)


def _wine_datasets():
    from sklearn.datasets import load_wine

    from costaware.data.channel_files import Dataset

    x, y = load_wine(return_X_y=True)
    order = np.random.default_rng(5).permutation(len(y))
    x, y = x[order], y[order]

    def dataset(rows):
        return Dataset(x[rows].astype(np.float32), y[rows].astype(np.int8),
                       [f"f{i}" for i in range(x.shape[1])],
                       RowCosts.constant(CostMatrix(1.0, 1.0), len(rows)), "wine", False)

    return dataset(np.arange(110)), dataset(np.arange(110, 150)), dataset(np.arange(150, len(y)))


def test_calibration_on_the_validation_channel():
    from costaware.config import hyperparameters
    from costaware.training import pipeline as training

    train, validation, test = _wine_datasets()
    settings = hyperparameters.parse({"cost_matrix": "[[0,1,2],[1,0,1],[6,2,0]]",
                                      "calibration_data": "validation", "num_round": "12",
                                      "max_depth": "2"})
    lines = []
    result = training.train(settings, train, validation, test, log=lines.append)
    assert result.held_out == "the validation channel's margins"
    assert result.policy.calibrator.rows == validation.rows
    assert result.channels["validation"].scored_by == "model"
    assert result.channels["validation"].fitted_on == ["calibrator"]
    assert result.channels["train"].fitted_on == ["trees"]
    assert result.rows == {"train": 110, "validation": 40, "test": 28}
    assert sum(line.startswith("[") and "validation:logloss=" in line for line in lines) == 13


def test_a_stop_request_ends_training_with_a_reason():
    from costaware.config import hyperparameters
    from costaware.training import pipeline as training
    from costaware.training.checkpoints import StopRequest, TrainingInterrupted

    train, _, _ = _wine_datasets()
    stop = StopRequest()
    stop.set()
    with pytest.raises(TrainingInterrupted, match="after 0 of 5 rounds: no checkpoint saved"):
        training.train(hyperparameters.parse({"cost_matrix": "[[0,1,1],[1,0,1],[1,1,0]]",
                                                         "num_round": "5"}),
                                  train, log=lambda line: None, stop=stop)


# --- the fairness penalty on the favourable classes -----------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_favourable_penalty_derivatives_match_finite_differences(seed):
    rng = np.random.default_rng(seed)
    n, k, favourable = 30, 4, (1, 3)
    f = rng.normal(scale=1.5, size=(n, k))
    s = rng.random(n) < 0.4
    grad, hess = class_objective.favourable_parity_grad_hess(f, s, favourable, 3.0)
    h = 1e-5
    for i, j in itertools.product(range(n), range(k)):
        up, down = f.copy(), f.copy()
        up[i, j] += h
        down[i, j] -= h
        numeric = (class_objective.favourable_parity_penalty(up, s, favourable, 3.0)
                   - class_objective.favourable_parity_penalty(down, s, favourable, 3.0)) / (2 * h)
        assert grad[i, j] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
        second = (class_objective.favourable_parity_grad_hess(up, s, favourable, 3.0)[0][i, j]
                  - class_objective.favourable_parity_grad_hess(down, s, favourable, 3.0)[0][i, j]) / (2 * h)
        assert hess[i, j] == pytest.approx(second, rel=1e-4, abs=1e-8)


def test_favourable_penalty_of_two_classes_is_the_binary_one():
    from costaware.training.objective import parity_penalty, parity_penalty_grad_hess

    rng = np.random.default_rng(0)
    m = rng.normal(size=25)
    s = rng.random(25) < 0.5
    f = np.column_stack([np.zeros(25), m])  # softmax([0, m])[1] = sigmoid(m)
    assert class_objective.favourable_parity_penalty(f, s, (1,), 2.0) == pytest.approx(parity_penalty(m, s, 2.0))
    assert np.allclose(class_objective.favourable_parity_grad_hess(f, s, (1,), 2.0)[0][:, 1],
                       parity_penalty_grad_hess(m, s, 2.0)[0])


def test_the_penalty_lowers_the_favourable_decisions_dppl():
    """Three classes whose labels lean on a proxy of the facet: the penalty on the favourable
    class's probability narrows the gap between the facets' favourable-decision rates (|DPPL|
    on the test rows, at the Bayes decisions); with the penalty the job keeps temperature
    scaling (chosen for cost alone, softmax(z) left |DPPL| at 0.235 instead of 0.201)."""
    from costaware.config import hyperparameters
    from costaware.training import pipeline as training
    from costaware.data.channel_files import Dataset

    rng = np.random.default_rng(1)
    n = 3000
    s = rng.random(n) < 0.3
    x = rng.normal(size=(n, 4))
    x[:, 0] += np.where(s, -1.0, 0.5)  # a proxy of the facet
    score = 1.2 * x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=n)
    y = np.digitize(score, [-0.3, 0.8]).astype(np.int8)
    facet = s.astype(float) + 1

    def dataset(rows):
        return Dataset(x[rows].astype(np.float32), y[rows], [f"x{i}" for i in range(4)],
                       RowCosts.constant(CostMatrix(1.0, 1.0), len(rows)), "mem", True,
                       facet=facet[rows])

    dppl = {}
    for penalty in (0.0, 30.0):
        settings = hyperparameters.parse({
            "cost_matrix": "[[0,1,2],[1,0,1],[3,1,0]]", "num_round": "30", "max_depth": "3",
            "facet_column": "facet", "facet_values_or_threshold": "[2]",
            "label_values_or_threshold": "[2]", "fairness_metrics": "DPPL",
            "fairness_penalty": str(penalty)})
        result = training.train(settings, dataset(np.arange(2200)), test=dataset(np.arange(2200, n)),
                                log=lambda line: None)
        dppl[penalty] = abs(result.channels["test"].bias["post_training"]["DPPL"])
        if penalty:  # the calibrator chosen for cost alone could undo the penalty: it is kept
            assert result.calibrator_choice.name == "temperature"
            assert result.calibrator_choice.rule == (
                "set by fairness_penalty > 0 (the choice weighs cost, not parity)")
    assert dppl[30.0] < 0.6 * dppl[0.0], dppl


# --- after the trees, a block of rows at a time ------------------------------------------------

def _class_job(n: int, k: int, seed: int = 5):
    """K classes' held-out rows as training evaluates them: float32 margins, a cost cell read
    per row, a facet and groups, the bounded rule per facet."""
    import json

    from costaware.config import hyperparameters
    from costaware.data.channel_files import Dataset
    from costaware.training.channels import Channel
    from costaware.training.class_kinds import ManyClasses

    matrix = [[0 if i == j else 1 + (i + 2 * j) % 5 for j in range(k)] for i in range(k)]
    matrix[k - 1][0] = "loss_given_default"
    settings = hyperparameters.parse({
        "classes": json.dumps([f"c{i}" for i in range(k)]), "cost_matrix": json.dumps(matrix),
        "facet_column": "f", "facet_values_or_threshold": "[1]",
        "label_values_or_threshold": '["c0", "c2"]', "max_abs_dppl": "0.05",
        "group_thresholds": "true", "fairness_metrics": "DPPL,DI,AD"})
    rng = np.random.default_rng(seed)
    label = rng.integers(0, k, n).astype(np.int8)
    margins = (1.5 * np.eye(k)[label] + rng.normal(0, 1.5, (n, k))).astype(np.float32)
    sensitive = rng.random(n) < 0.3
    data = Dataset(np.zeros((n, 1), np.float32), label, ["x"],
                   RowCosts.constant(CostMatrix(fp=1, fn=1), n), "memory", False,
                   facet=sensitive.astype(np.float64),
                   cell_costs={(k - 1, 0): rng.lognormal(1, 1, n)})
    return ManyClasses(settings), Channel("validation", data, sensitive, rng.integers(-1, 3, n)), \
        margins


def _after_the_trees(kind, channel, calibrator, p):
    """Every K >= 3 step after the calibrator on ``channel``'s rows, as training calls them."""
    from costaware.cluster import SOLO
    from costaware.metrics import multiclass_metrics

    label, cells = kind.label(channel.data), channel.data.cell_costs
    lines = []
    policy = kind.policy(channel, p, calibrator, channel.data, SOLO, lines.append)
    decision = policy.decisions(p, channel.sensitive, cells)
    return {"policy": policy, "decision": decision, "log": lines,
            "summary": multiclass_metrics.class_summary(label, p, decision, kind.matrix,
                                                        cells=cells),
            "auc": multiclass_metrics.channel_auc(label, p),
            "round": kind.bayes_metrics(channel, p, 3, SOLO),
            "result": kind.evaluate(channel, p, policy, 3, SOLO, "model", []),
            "bayes_cost": kind.bayes_cost(channel, p[::3], np.arange(len(p)) % 3 == 0),
            "costliest": kind.costliest_mistake(channel, SOLO)}


def _same_numbers(blocked, whole, where=""):
    """Equal: integers, text and structure exactly, floats to rounding."""
    if isinstance(whole, dict):
        assert blocked.keys() == whole.keys(), where
        for key in whole:
            _same_numbers(blocked[key], whole[key], f"{where}/{key}")
    elif isinstance(whole, (list, tuple)):
        assert len(blocked) == len(whole), where
        for i, (b, w) in enumerate(zip(blocked, whole)):
            _same_numbers(b, w, f"{where}[{i}]")
    elif isinstance(whole, float):
        assert blocked == pytest.approx(whole, rel=1e-11, abs=1e-12, nan_ok=True), where
    else:
        assert blocked == whole, where


def test_class_metrics_rule_and_decisions_in_blocks_equal_every_row_at_once(monkeypatch):
    """K >= 3 after the trees, a block of rows at a time beyond ROW_BLOCK rows (the calibrator's
    sums, its probabilities, the served and Bayes decisions at each row's own cost cell, the
    bounded rule's per-facet fit, the metrics' summary, the AUC's histograms, the facet's bias
    tables, the calibrator choice's realised costs): the counts and decisions are those of every
    row at once, the sums the same to rounding."""
    from costaware.decisions import costs as costs_module
    from costaware.metrics import multiclass_metrics

    kind, channel, margins = _class_job(10_001, 4)
    label = kind.label(channel.data)
    monkeypatch.setattr(multiclass_metrics, "EXACT_AUC_ROWS", 0)  # the histograms' AUC
    calibrator = mc.fit_temperature(margins, label)
    p = calibrator.probability(margins)
    whole = _after_the_trees(kind, channel, calibrator, p)
    assert whole["policy"].rule.delta_a != whole["policy"].rule.delta_d  # a rule per facet
    assert set(whole["decision"]) == {0, 1, 2, 3}
    served, _ = whole["policy"].decide(p, channel.sensitive, channel.data.cell_costs)
    np.testing.assert_array_equal(whole["decision"], served)
    # the rule's held-out DPPL and cost are its decisions', each row at its own cost cell
    favourable = np.isin(served, (0, 2))
    sensitive = channel.sensitive
    assert whole["policy"].rule.held_out_dppl == pytest.approx(
        favourable[~sensitive].mean() - favourable[sensitive].mean(), abs=1e-12)
    cost = mc.realised_costs(label, served, kind.matrix, channel.data.cell_costs).mean()
    assert f"cost per row {cost:.6g} (Bayes" in whole["log"][-1]
    monkeypatch.setattr(costs_module, "ROW_BLOCK", 999)
    fitted = mc.fit_temperature(margins, label)
    assert fitted.temperature == pytest.approx(calibrator.temperature, rel=1e-9)
    assert fitted.bias == pytest.approx(calibrator.bias, rel=1e-9, abs=1e-12)
    np.testing.assert_array_equal(calibrator.probability(margins), p)  # (row by row)
    blocked = _after_the_trees(kind, channel, calibrator, p)

    assert blocked["policy"] == whole["policy"]
    np.testing.assert_array_equal(blocked["decision"], whole["decision"])
    k, bins = 4, 10
    counts = np.zeros(len(whole["summary"]), dtype=bool)  # which of the summary's sums count rows
    counts[0] = True
    counts[3:3 + 3 * bins:3] = counts[5:3 + 3 * bins:3] = True  # each bin's rows and hits
    at = 3 + 3 * bins
    counts[at:at + k * k] = True  # the confusion matrix
    reliability = at + 2 * k * k + k
    counts[reliability::3] = counts[reliability + 2::3] = True
    np.testing.assert_array_equal(blocked["summary"][counts], whole["summary"][counts])
    np.testing.assert_allclose(blocked["summary"], whole["summary"], rtol=1e-11)
    assert blocked["auc"] == whole["auc"]
    np.testing.assert_array_equal(blocked["bayes_cost"], whole["bayes_cost"])
    assert blocked["costliest"] == whole["costliest"]
    _same_numbers(blocked["round"], whole["round"])
    for part in ("metrics", "alternatives", "bias"):
        _same_numbers(getattr(blocked["result"], part), getattr(whole["result"], part), part)
    assert blocked["result"].bias["per_class"] == whole["result"].bias["per_class"]
    assert whole["result"].metrics["confusion"] == blocked["result"].metrics["confusion"]


def test_memory_after_the_trees_does_not_grow_with_the_classes(monkeypatch):
    """Each K >= 3 step after the trees holds a few numbers a row and K x K summaries, and
    (rows, K) temporaries of one block of rows only: its peak memory on the same rows is about
    the same at K = 16 as at K = 4 (with every (rows, K) array at once it grows with K)."""
    import tracemalloc

    from costaware.cluster import SOLO
    from costaware.decisions import costs as costs_module

    monkeypatch.setattr(costs_module, "ROW_BLOCK", 500)
    rows = 20_000

    def peaks(k):
        kind, channel, margins = _class_job(rows, k)
        label = kind.label(channel.data)
        calibrator = mc.fit_temperature(margins, label)
        p = calibrator.probability(margins)
        policy = kind.policy(channel, p, calibrator, channel.data, SOLO, lambda line: None)
        steps = {
            "calibrator": lambda: mc.fit_temperature(margins, label),
            "probability": lambda: calibrator.probability(margins),
            "rule": lambda: kind.policy(channel, p, calibrator, channel.data, SOLO,
                                        lambda line: None),
            "evaluation": lambda: kind.evaluate(channel, p, policy, 3, SOLO, "model", []),
            "calibrator choice": lambda: (kind.bayes_cost(channel, p, np.ones(rows, bool)),
                                          kind.costliest_mistake(channel, SOLO)),
        }
        out = {}
        for name, step in steps.items():
            tracemalloc.start()
            kept = step()
            out[name] = tracemalloc.get_traced_memory()[1] - sum(  # less what it returns
                a.nbytes for a in (kept if isinstance(kept, tuple) else [kept])
                if isinstance(a, np.ndarray))
            tracemalloc.stop()
        return out

    few, many = peaks(4), peaks(16)
    block_temporaries = 8 * costs_module.ROW_BLOCK * 16 * 8  # eight (block, 16) float64 arrays
    assert all(many[step] < 1.25 * few[step] + block_temporaries for step in few), (few, many)
