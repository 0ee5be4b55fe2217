"""The calibrator a job serves, chosen by cross-validated log loss (decisions/calibrator_choice.py),
and the fold models' average (training/boosting.averaged)."""

import json

import numpy as np
import pytest
import xgboost as xgb
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss

from costaware.decisions import calibrator_choice as choice
from costaware.decisions.calibration import Calibrator
from costaware.decisions.costs import sigmoid
from costaware.training.boosting import averaged


def _rows(n, link, seed=0):
    rng = np.random.default_rng(seed)
    m = rng.normal(0, 2, n)
    return m, (rng.random(n) < link(m)).astype(np.int8), np.arange(n) % 5


def _cost(label, fp, fn):
    """The realised cost of the Bayes decision (decide 1 iff p >= fp / (fp + fn)) on ``p``."""
    def row_cost(p, rows):
        decide = p >= fp / (fp + fn)
        return np.where(decide, np.where(label[rows] == 1, 0.0, fp),
                        np.where(label[rows] == 1, fn, 0.0))
    return row_cost


def test_platt_is_served_when_nothing_decides_more_cheaply():
    m, y, folds = _rows(20_000, sigmoid)  # the margin is already a calibrated log-odds
    chosen = choice.choose(list(choice.TWO_CLASS_CANDIDATES), m, y, folds, 5, _cost(y, 1, 3), 3.0)
    assert chosen.name == "platt" and not chosen.forced
    evidence = chosen.evidence
    assert set(evidence) == {"identity", "platt", "isotonic"}
    for name in ("identity", "isotonic"):  # neither saves more than one standard error
        assert evidence[name]["cost_gain_over_default"] <= evidence[name]["cost_gain_se"]
    # the identity fits nothing: its cross-validated log loss is the plain log loss of sigmoid(m),
    # and its cost the realised cost of deciding at p >= 1/4 on sigmoid(m)
    assert evidence["identity"]["cv_log_loss"] == pytest.approx(log_loss(y, sigmoid(m)), rel=1e-12)
    decide = sigmoid(m) >= 0.25
    by_hand = np.where(decide, np.where(y == 1, 0, 1), np.where(y == 1, 3, 0)).mean()
    assert evidence["identity"]["cv_cost"] == pytest.approx(by_hand, rel=1e-12)
    assert evidence["platt"]["cost_gain_over_default"] == 0
    assert isinstance(chosen.calibrator, Calibrator) and chosen.calibrator.rows == 20_000
    assert set(chosen.fitted) == {"identity", "platt", "isotonic"}


def test_platt_corrects_a_margin_off_by_a_slope_and_a_shift():
    m, y, folds = _rows(20_000, lambda m: sigmoid(0.5 * m - 1))
    chosen = choice.choose(list(choice.TWO_CLASS_CANDIDATES), m, y, folds, 5, _cost(y, 1, 1), 1.0)
    assert chosen.name == "platt"
    identity = chosen.evidence["identity"]
    assert -identity["cost_gain_over_default"] > 5 * identity["cost_gain_se"]  # costs far more
    assert chosen.calibrator.slope == pytest.approx(0.5, abs=0.05)
    assert chosen.calibrator.intercept == pytest.approx(-1, abs=0.1)


def test_isotonic_earns_its_place_where_a_logistic_map_decides_wrongly():
    """A step in the true probability at m = 0 (0.05 below, 0.6 and up above) and a threshold of
    0.3: any logistic curve through the step decides some rows on the wrong side; isotonic
    follows the step, and saves more than one standard error."""
    link = lambda m: np.where(m < 0, 0.05, 0.6 + 0.3 * np.tanh(m))  # noqa: E731
    m, y, folds = _rows(20_000, link)
    chosen = choice.choose(list(choice.TWO_CLASS_CANDIDATES), m, y, folds, 5, _cost(y, 3, 7), 7.0)
    assert chosen.name == "isotonic"
    isotonic = chosen.evidence["isotonic"]
    assert isotonic["cost_gain_over_default"] > isotonic["cost_gain_se"] > 0
    p = chosen.calibrator.probability(m)
    assert np.abs(p - link(m)).mean() < 0.02
    assert np.all(np.diff(chosen.calibrator.probability(np.sort(m))) >= 0)  # non-decreasing
    # the same gain is not enough where one mistake the rows did not show could cost more: a
    # costliest regret R with R / n above the gain keeps Platt
    gain = isotonic["cost_gain_over_default"]
    wary = choice.choose(list(choice.TWO_CLASS_CANDIDATES), m, y, folds, 5, _cost(y, 3, 7),
                         2 * gain * len(y))
    assert wary.name == "platt"
    assert wary.evidence["isotonic"]["unseen_mistake_per_row"] == pytest.approx(2 * gain)


def test_isotonic_agrees_with_scikit_learns_pool_adjacent_violators():
    m, y, _ = _rows(5_000, lambda m: sigmoid(2 * np.sign(m) * np.abs(m) ** 0.5), seed=3)
    ours = choice.fit_isotonic(m, y).probability(m)
    theirs = IsotonicRegression(out_of_bounds="clip").fit(m, y).predict(m)
    # the same steps up to the 0.01 margin grid, the shrinkage by 2 pseudo-rows and the
    # interpolation between the steps' mean margins
    assert np.abs(ours - theirs).mean() < 0.01
    assert 0 < ours.min() and ours.max() < 1  # no step is certain on finite evidence


def test_isotonic_on_two_hosts_is_the_one_host_fit():
    """Two hosts' sums (host 1's collected first, then added to host 0's, as an allreduce
    returns them) give the one-host fit, to the order of the float sums."""
    m, y, _ = _rows(4_000, sigmoid, seed=1)
    half = len(m) // 2
    second = []
    choice.fit_isotonic(m[half:], y[half:], lambda values: second.append(values) or values)
    two_hosts = choice.fit_isotonic(m[:half], y[:half], lambda values: values + second.pop(0))
    one_host = choice.fit_isotonic(m, y)
    assert two_hosts.rows == one_host.rows == 4_000
    assert len(two_hosts.knot_margins) == len(one_host.knot_margins) > 10
    assert np.allclose(two_hosts.knot_margins, one_host.knot_margins, rtol=0, atol=1e-12)
    assert np.allclose(two_hosts.knot_log_odds, one_host.knot_log_odds, rtol=0, atol=1e-12)


def test_a_forced_calibrator_is_served_and_the_evidence_still_measured():
    m, y, folds = _rows(5_000, lambda m: sigmoid(0.5 * m))
    chosen = choice.choose(list(choice.TWO_CLASS_CANDIDATES[:2]), m, y, folds, 5, _cost(y, 1, 3), 3.0,
                           forced="identity")
    assert chosen.name == "identity" and chosen.forced
    assert isinstance(chosen.calibrator, choice.Identity)
    assert chosen.to_dict()["rule"] == "set by the hyperparameter calibrator"
    assert set(chosen.evidence) == {"identity", "platt"}
    assert chosen.evidence["identity"]["cost_gain_over_default"] < 0  # the evidence disagrees


@pytest.mark.parametrize("calibrator", [choice.Identity(7), Calibrator(0.9, 0.1, ((1e-3, 0), (0, 1e-3)), 9),
                                        choice.Isotonic((-1.0, 0.5, 2.0), (-3.0, 0.0, 0.0), 11)])
def test_every_calibrator_survives_its_json(calibrator):
    saved = json.loads(json.dumps(calibrator.to_dict()))
    again = choice.calibrator_from_dict(saved)
    m = np.linspace(-5, 5, 101)
    assert np.array_equal(again.probability(m), calibrator.probability(m))


@pytest.mark.parametrize("broken, message", [
    ({"method": "spline"}, "unknown calibrator 'spline'"),
    ({"method": "isotonic", "knot_margins": [0, 0], "knot_log_odds": [0, 1]}, "increasing"),
    ({"method": "isotonic", "knot_margins": [0, 1], "knot_log_odds": [1, 0]}, "non-decreasing"),
    ({"method": "isotonic", "knot_margins": [0, 1], "knot_log_odds": [0]}, "as many"),
])
def test_a_broken_calibrator_is_refused_in_one_line(broken, message):
    with pytest.raises(ValueError, match=message):
        choice.calibrator_from_dict(broken)


@pytest.mark.parametrize("classes", [2, 3])
def test_the_fold_average_predicts_the_mean_of_the_fold_models_margins(classes):
    rng = np.random.default_rng(0)
    x = rng.random((600, 4))
    y = (x[:, 0] * classes).astype(int) if classes > 2 else (x[:, 0] > 0.4).astype(int)
    dtrain = xgb.DMatrix(x, label=y)
    params = ({"objective": "multi:softprob", "num_class": 3} if classes > 2 else
              {"objective": "binary:logistic"})
    folds = [xgb.train({**params, "max_depth": 3, "seed": k,
                        **({"base_score": 0.2 + 0.2 * k} if classes == 2 else {})},
                       dtrain.slice(np.flatnonzero(np.arange(600) % 3 != k)), 6)
             for k in range(3)]
    mean = np.mean([b.predict(dtrain, output_margin=True) for b in folds], axis=0)
    model = averaged(folds, classes)
    assert np.allclose(model.predict(dtrain, output_margin=True), mean, atol=1e-5)
    # TreeSHAP's contributions still add up to the averaged margin (reasons read them)
    contributions = model.predict(dtrain, pred_contribs=True)
    assert np.allclose(contributions.sum(axis=-1), mean, atol=1e-4)
    assert model.num_boosted_rounds() == 3 * 6


def test_an_isotonic_step_of_sure_margins_stays_finite_and_survives_its_json():
    """A step whose margins are all far out (sigmoid(m) rounds to 1 from m ~ 37 on) and whose rows
    are all positive: its rate shrunk towards the identity must stay below 1, with a finite
    log-odds, or the saved calibrator (JSON has no infinity) cannot be loaded to serve."""
    from costaware.model.artifact import json_safe

    m = np.r_[np.full(50, 38.0), np.zeros(1000)]
    y = np.r_[np.ones(50), np.arange(1000) % 2].astype(np.int8)
    fitted = choice.fit_isotonic(m, y)
    assert all(np.isfinite(fitted.knot_log_odds))
    assert fitted.knot_log_odds[-1] > 30  # as sure as the identity's log-odds there, nearly
    assert fitted.probability(np.array([38.0]))[0] == pytest.approx(1.0)
    again = choice.calibrator_from_dict(json.loads(json.dumps(json_safe(fitted.to_dict()))))
    assert np.array_equal(again.probability(m), fitted.probability(m))
