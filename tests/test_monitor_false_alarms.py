"""The monitoring checks on per-row means fire at their stated significance when nothing drifted,
also on the skewed figures per-row costs make (most rows cost little, a few missed positives a
lot): windows and baselines drawn from one population, the share of windows flagged."""

import json

import numpy as np
import pytest

from costaware.monitoring import checks
from costaware.monitoring.decided_rows import DecidedRows, UnlabelledSums, mean_and_se

ALPHA = 0.01
BASELINE_ROWS, WINDOW_ROWS, WINDOWS = 2000, 250, 6000


def population(n: int = 200_000, seed: int = 0) -> dict:
    """Rows decided at their own costs by calibrated probabilities: contacting costs 1, a missed
    positive its own cost (at least 1, log-normal); the realized cost and predicted minus
    realized cost per row."""
    rng = np.random.default_rng(seed)
    cost = np.maximum(rng.lognormal(0.0, 1.5, n), 1.0)
    p = rng.beta(1, 7, n)
    y = rng.random(n) < p
    contact = p * cost >= 1
    realized = np.where(contact, 1.0, y * cost)
    expected = np.where(contact, 1.0, p * cost)
    return {"realized_cost": realized, "cost_gap": expected - realized}


def documents(figures: dict, rows: int) -> dict:
    return {"features": [], "costaware": {"scores": [], "unlabelled": {},
                                          "labelled": {"rows": rows, **figures}}}


def test_the_checks_on_skewed_costs_fire_at_their_significance_without_drift():
    values = population()
    constraints = {"features": [], "costaware": {"significance": ALPHA}}
    rng = np.random.default_rng(1)
    fired = {"realized_cost_check": 0, "cost_gap_check": 0}
    for _ in range(WINDOWS):
        # independent draws from the population (with replacement: each row an iid draw)
        rows = rng.integers(0, len(values["cost_gap"]), BASELINE_ROWS + WINDOW_ROWS)
        base, window = rows[:BASELINE_ROWS], rows[BASELINE_ROWS:]
        found = checks.violations(
            documents({k: mean_and_se(v[base]) for k, v in values.items()}, BASELINE_ROWS),
            constraints,
            documents({k: mean_and_se(v[window]) for k, v in values.items()}, WINDOW_ROWS))
        for check in {v["constraint_check_type"] for v in found}:
            fired[check] += 1
    share = {check: n / WINDOWS for check, n in fired.items()}
    # binomial s.e. at 1% over 6,000 windows: 0.13%; the bounds are 4 of them away
    assert all(ALPHA / 2 <= s <= 2 * ALPHA for s in share.values()), share


def test_unlabelled_sums_give_the_mean_se_and_third_moment_of_their_rows():
    rng = np.random.default_rng(2)
    n = 500
    p1 = rng.beta(1, 5, n)
    cost = np.maximum(rng.lognormal(0.0, 1.0, n), 1.0)
    probabilities = np.column_stack([1 - p1, p1])
    costs = np.zeros((n, 2, 2))
    costs[:, 0, 1] = 1.0
    costs[:, 1, 0] = cost
    costs[:, 1, 1] = 1.0
    decided = DecidedRows(probabilities, (p1 * cost >= 1 - p1).astype(np.int64), costs)
    sums = UnlabelledSums(2, (1,))
    sums.add(decided.take(slice(0, 200)))
    sums.add(decided.take(slice(200, n)))
    figures = sums.figures()
    for got, values in ((figures["expected_cost"], decided.chosen_expected_cost()),
                        (figures["base_rate"][1], p1)):
        want = mean_and_se(values)
        assert got["rows"] == want["rows"] == n
        for key in ("value", "se", "m3"):
            assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key


def test_figures_of_huge_costs_stay_json_without_a_third_moment():
    """A cost whose cube overflows leaves m3 out (None) rather than an infinity statistics.json
    cannot hold; the mean and its se are still there."""
    values = np.array([1.0, 2.0, 1e110])
    costs = np.zeros((3, 2, 2))
    costs[:, 1, 0] = values
    costs[:, 0, 1] = 1.0
    decided = DecidedRows(np.column_stack([np.full(3, 0.5), np.full(3, 0.5)]),
                          np.zeros(3, dtype=np.int64), costs)
    sums = UnlabelledSums(2, (1,))
    sums.add(decided)
    for figure in (mean_and_se(values), sums.figures()["expected_cost"]):
        assert figure["m3"] is None and figure["se"] is not None
        json.dumps(figure, allow_nan=False)
