"""Is a challenger that is cheaper overall worse for a protected group? The cost difference per
facet, and the change in Clarify's post-training bias of the decisions (pure numpy).

* Per facet (``a``: the others, ``d``: the sensitive facet): the difference of
  :mod:`costaware.comparison.difference` on that facet's labelled decisions alone (paired on the
  same requests, else unpaired).
* Per Clarify metric ``M`` (DPPL, DI, DCA, ... of :func:`costaware.metrics.clarify.post_training_bias_of`,
  favourable = the model's favourable classes): its distance from parity ``|M - fair|``
  (``fair`` = 1 for the ratio DI, 0 for the others) for each model, and the change
  ``|M_challenger - fair| - |M_champion - fair|`` with a 95% percentile interval from
  :data:`BOOTSTRAP` Poisson-bootstrap resamples (the same weights for both models' rows of one
  request when paired; independent weights when not).

A challenger is **flagged** when it is cheaper overall (``Delta < 0``) and either its difference in
a facet has an interval above zero (costlier there), or a metric moved away from parity with an
interval above zero (the metric named).
"""

from __future__ import annotations

import math

import numpy as np

from ..metrics import clarify
from .difference import compared, over_time

BOOTSTRAP = 400
FAIR_AT_ONE = {"DI"}  # ratio metrics, fair at 1
FACETS = (("a", False), ("d", True))


def facet_differences(champion_cost: np.ndarray, challenger_cost: np.ndarray,
                      champion_sensitive: np.ndarray, challenger_sensitive: np.ndarray,
                      paired: bool, times: tuple | None = None) -> dict:
    """``{"a": difference, "d": difference}`` on each facet's decisions alone (paired: the
    champion's facet for both); with ``times`` (the champion's and the challenger's decision
    times), each also with its difference over time (``over_time``)."""
    out = {}
    for name, sensitive in FACETS:
        a = champion_sensitive == sensitive
        b = a if paired else challenger_sensitive == sensitive
        out[name] = compared(champion_cost[a], challenger_cost[b], paired)
        if times is not None:
            out[name]["over_time"] = over_time(times[0][a], champion_cost[a], times[1][b],
                                               challenger_cost[b], paired)
    return out


def _distances(table: np.ndarray) -> dict:
    values = clarify.post_training_bias_of(table, on_error="nan")
    return {name: abs(value - (1.0 if name in FAIR_AT_ONE else 0.0))
            for name, value in values.items()}, values


def bias_changes(champion_cells: np.ndarray, challenger_cells: np.ndarray, paired: bool,
                 seed: int = 0, level: float = 0.95) -> dict:
    """Each metric's value for both models and the change in its distance from parity with its
    percentile interval (module docstring). ``*_cells``: :func:`bias_cells` of each model's
    labelled decisions (row ``i`` of both the same request when ``paired``)."""
    champion_table = np.bincount(champion_cells, minlength=8)
    challenger_table = np.bincount(challenger_cells, minlength=8)
    champion_far, champion_values = _distances(champion_table)
    challenger_far, challenger_values = _distances(challenger_table)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in champion_far}
    for _ in range(BOOTSTRAP):
        weights = rng.poisson(1.0, len(champion_cells))
        other = weights if paired else rng.poisson(1.0, len(challenger_cells))
        before, _ = _distances(np.bincount(champion_cells, weights=weights, minlength=8))
        after, _ = _distances(np.bincount(challenger_cells, weights=other, minlength=8))
        for name in draws:
            draws[name].append(after[name] - before[name])
    tail = (1 - level) / 2 * 100
    out = {}
    for name in champion_far:
        change = challenger_far[name] - champion_far[name]
        sample = np.asarray(draws[name], dtype=np.float64)
        sample = sample[np.isfinite(sample)]
        known = math.isfinite(change) and len(sample) >= BOOTSTRAP // 2
        out[name] = {
            "champion": _number(champion_values[name]),
            "challenger": _number(challenger_values[name]),
            "fair": 1.0 if name in FAIR_AT_ONE else 0.0,
            "change_in_distance": _number(change),
            "interval": ([float(np.percentile(sample, tail)),
                          float(np.percentile(sample, 100 - tail))] if known else None),
        }
    return out


def _number(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def flags(overall: dict, per_facet: dict, bias: dict | None) -> list[str]:
    """What a reader must know before promoting a challenger that is cheaper overall (module
    docstring); empty when it is not cheaper overall or nothing moved."""
    delta = overall.get("difference")
    if delta is None or delta >= 0:
        return []
    found = []
    for name, result in per_facet.items():
        interval = result.get("interval")
        if interval is not None and interval[0] > 0:
            found.append(f"cheaper overall but costlier for facet {name}: "
                         f"{result['difference']:+.4g} per decision (95% interval "
                         f"[{interval[0]:.4g}, {interval[1]:.4g}])")
    for name, change in (bias or {}).items():
        interval = change["interval"]
        if interval is not None and interval[0] > 0:
            found.append(f"{name} moved away from parity: {change['champion']:.4g} -> "
                         f"{change['challenger']:.4g} (distance {change['change_in_distance']:+.4g}"
                         f", 95% interval [{interval[0]:.4g}, {interval[1]:.4g}])")
    return found
