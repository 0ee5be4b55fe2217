"""A window's statistics against the baseline's: one violation per constraint broken, in Model
Monitor's format (``feature_name``, ``constraint_check_type``, ``description``), each with the
figure (``value``) and the bound it broke (``bound``).

Every check is a test at the constraints' ``significance`` alpha (0.01 by default): under no
drift it fires with probability at most alpha (nearly, for the normal approximations), whatever
the window's size.

| check | fires when |
| --- | --- |
| ``completeness_check`` | the window's missing share exceeds the baseline's (at least 1/2m) by ``z_a sqrt(p0 (1 - p0) / n)`` |
| ``data_type_check`` | an Integral column has more than ``datatype_check_threshold`` fractional values |
| ``non_negative_check`` | a column never negative in the baseline has negative values |
| ``baseline_drift_check`` (features), ``cost_drift_check`` (per-row cost columns), ``score_drift_check`` | the KS distance at the cut points exceeds its bound (:mod:`costaware.monitoring.columns`) |
| ``base_rate_drift_check`` | the mean probability of a class (and, with labels, its observed share) moved beyond its two-sided bounds at ``z_(a/2)`` (a mean of rows, below) |
| ``expected_cost_check`` | the expected cost per decision rose beyond its bound at ``z_a`` (a mean of rows) |
| ``bias_drift_check`` | \\|DPPL\\| of the decisions rose by more than ``z_a sqrt(se_b^2 + se_w^2)`` |
| ``realized_cost_check`` | (labels) the realized cost per decision rose beyond its bound at ``z_a`` (a mean of rows) |
| ``savings_check`` | (labels) the decisions cost more than deciding the same for everyone: ``mean(c - c_trivial) > z_a se`` |
| ``cost_gap_check`` | (labels) predicted minus realized cost moved beyond its two-sided bounds at ``z_(a/2)`` (a mean of rows): the calibration has drifted |
| ``log_loss_check`` | (labels) the log loss rose beyond its bound at ``z_a`` (a mean of rows) |
| ``auc_check`` | (labels) the AUC fell by more than ``z_a sqrt(se_b^2 + se_w^2)`` |

A figure that is a mean of rows (it carries ``rows`` and ``m3``:
:func:`~costaware.monitoring.decided_rows.mean_and_se`) is compared by the two-sample test of its
null hypothesis, no drift: the window's ``n`` rows and the baseline's ``m`` come from one
distribution. So their variance is
pooled, ``s^2 = ((m - 1) s_b^2 + (n - 1) s_w^2) / (m + n - 2)``, ``se = s sqrt(1/m + 1/n)``, and
``delta = window - baseline`` is compared with the first-order Cornish-Fisher quantiles
``(+-z + (z^2 - 1) g / 6) se``, ``g = m3 (1/n^2 - 1/m^2) / se^3`` the skewness of ``delta``, ``m3``
the pooled third central moment ``(m m3_b + n m3_w) / (m + n)`` (``g`` capped at 1 in size, where
the expansion still puts a bound on each side of zero; 0 for a baseline without ``m3``). Why:
per-row costs are skewed (most rows cost little, a few missed positives a lot). A window's own
standard error is too small exactly when its few rows miss the rare large values, and the normal
quantile ignores the skew of their mean: with ``sqrt(se_b^2 + se_w^2)`` and ``z``, on the bank
telemarketing data (``benchmarks/bench_monitor_drift.py``, windows of 250 rows, 60 seeds)
``cost_gap_check`` fired in 3.2% of the 1,200 windows without drift at alpha 1%, and
``realized_cost_check`` in 0.2% (less power than stated). AUC and DPPL, not means of rows,
keep ``sqrt(se_b^2 + se_w^2)`` and the normal quantile.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from .columns import ks_bound

SKEW_CAP = 1.0  # the largest skewness the Cornish-Fisher bounds use (module docstring)

CHECKS = ("completeness_check", "data_type_check", "non_negative_check", "baseline_drift_check",
          "cost_drift_check", "score_drift_check", "base_rate_drift_check", "expected_cost_check",
          "bias_drift_check", "realized_cost_check", "savings_check", "cost_gap_check",
          "log_loss_check", "auc_check")


def violations(baseline: dict, constraints: dict, window: dict) -> list[dict]:
    """The violations of ``window`` (its statistics.json) against the baseline's statistics.json
    and constraints.json."""
    config = constraints.get("monitoring_config", {})
    if config.get("evaluate_constraints", "Enabled") != "Enabled":
        return []
    alpha = float(constraints["costaware"]["significance"])
    z1, z2 = NormalDist().inv_cdf(1 - alpha), NormalDist().inv_cdf(1 - alpha / 2)
    found: list[dict] = []
    add = (lambda name, check, value, bound, text:
           found.append({"feature_name": name, "constraint_check_type": check,
                         "description": text, "value": value, "bound": bound}))
    cost_names = {c["name"] for c in constraints["features"]
                  if c.get("costaware", {}).get("role") == "cost"}
    _column_checks(baseline["features"], constraints, window["features"], cost_names, alpha, z1, add)
    _distribution_checks(baseline["costaware"]["scores"], window["costaware"]["scores"],
                         "score_drift_check", constraints, alpha, add)
    _figure_checks(baseline["costaware"], window["costaware"], z1, z2, add)
    return found


def _column_checks(base: list, constraints: dict, window: list, cost_names: set, alpha: float,
                   z1: float, add) -> None:
    config = constraints.get("monitoring_config", {})
    by_name = {c["name"]: c for c in constraints["features"]}
    for b, w in zip(base, window):
        name = b["name"]
        rule = by_name.get(name, {})
        common_b = b["numerical_statistics"]["common"]
        common_w = w["numerical_statistics"]["common"]
        m = common_b["num_present"] + common_b["num_missing"]
        n = common_w["num_present"] + common_w["num_missing"]
        if n and name not in cost_names and "completeness" in rule:
            p0 = max(1.0 - rule["completeness"], 0.5 / max(m, 1))
            share = common_w["num_missing"] / n
            bound = p0 + z1 * math.sqrt(p0 * (1 - p0) / n)
            if share > bound:
                add(name, "completeness_check", 1 - share, 1 - bound,
                    f"{name}: {common_w['num_missing']} of {n} values missing "
                    f"(completeness {1 - share:.4f}; the baseline's {rule['completeness']:.4f}, "
                    f"bound {1 - bound:.4f})")
        own = w.get("costaware", {})
        present = common_w["num_present"]
        if present and rule.get("inferred_type") == "Integral" and w["inferred_type"] != "Integral":
            threshold = float(config.get("datatype_check_threshold", 0.1))
            fractional = _fractional_share(w)
            if fractional is not None and fractional > threshold:
                add(name, "data_type_check", fractional, threshold,
                    f"{name}: {fractional:.1%} of the values are fractional; the baseline's are "
                    f"Integral (bound {threshold:.1%})")
        if present and rule.get("num_constraints", {}).get("is_non_negative") and own.get("negative"):
            add(name, "non_negative_check", own["negative"], 0,
                f"{name}: {own['negative']} negative values; the baseline has none")
    _distribution_checks(base, window, "baseline_drift_check", constraints, alpha, add,
                         cost_names)


def _fractional_share(entry: dict) -> float | None:
    own = entry.get("costaware", {})
    present = entry["numerical_statistics"]["common"]["num_present"]
    return own.get("fractional", 0) / present if present else None


def _distribution_checks(base: list, window: list, check: str, constraints: dict, alpha: float,
                         add, cost_names: set = frozenset()) -> None:
    spec = constraints.get("monitoring_config", {}).get("distribution_constraints", {})
    if spec.get("perform_comparison", "Enabled") != "Enabled":
        return
    floor = float(spec.get("comparison_threshold", 0.0))
    for b, w in zip(base, window):
        distance = (w.get("costaware") or {}).get("distance")
        if distance is None:
            continue
        n = w["numerical_statistics"]["common"]["num_present"]
        m = b["numerical_statistics"]["common"]["num_present"]
        bound = ks_bound(n, m, alpha, floor)
        kind = "cost_drift_check" if b["name"] in cost_names else check
        if distance > bound:
            add(b["name"], kind, distance, bound,
                f"{b['name']}: distance {distance:.4f} from the baseline's distribution "
                f"(Kolmogorov-Smirnov at the baseline's cut points; {n} values against {m}) "
                f"exceeds {bound:.4f}")


def _bounds(base: dict | None, window: dict | None, z: float) -> tuple[float, float] | None:
    """The baseline's figure plus the lower and upper quantiles of ``delta = window - baseline``
    (the module docstring: pooled, with Cornish-Fisher quantiles, for means of rows; else
    ``+-z sqrt(se_b^2 + se_w^2)``), or None when either lacks a figure."""
    if not isinstance(base, dict) or not isinstance(window, dict) \
            or base.get("value") is None or window.get("value") is None:
        return None
    if base.get("se") is None or window.get("se") is None:
        return None
    m, n = base.get("rows"), window.get("rows")
    g = 0.0
    if not m or not n or m + n <= 2:
        se = math.hypot(base["se"], window["se"])
    else:
        variance = ((m - 1) * m * base["se"] ** 2 + (n - 1) * n * window["se"] ** 2) / (m + n - 2)
        se = math.sqrt(variance * (1 / m + 1 / n))
        if se > 0 and base.get("m3") is not None and window.get("m3") is not None:
            third = (m * base["m3"] + n * window["m3"]) / (m + n)
            g = max(-SKEW_CAP, min(SKEW_CAP, third * (1 / n ** 2 - 1 / m ** 2) / se ** 3))
    shift = (z * z - 1) * g / 6  # Cornish-Fisher, first order
    return base["value"] + (-z + shift) * se, base["value"] + (z + shift) * se


def _figure_checks(base: dict, window: dict, z1: float, z2: float, add) -> None:
    bu, wu = base["unlabelled"], window["unlabelled"]
    rates = list(zip(bu.get("base_rate") or [], wu.get("base_rate") or []))
    for k, (b, w) in enumerate(rates[1:] if len(rates) == 2 else rates, start=1 if len(rates) == 2 else 0):
        _two_sided(f"base_rate_{k}", "base_rate_drift_check", b, w, z2, add,
                   f"the mean probability of class {k}")
    _rise("expected_cost_per_decision", "expected_cost_check", bu.get("expected_cost"),
          wu.get("expected_cost"), z1, add, "the expected cost per decision")
    if bu.get("dppl") and wu.get("dppl") and None not in (bu["dppl"]["value"], wu["dppl"]["value"]):
        b, w = bu["dppl"], wu["dppl"]
        _rise("DPPL", "bias_drift_check", {"value": abs(b["value"]), "se": b["se"]},
              {"value": abs(w["value"]), "se": w["se"]}, z1, add,
              "|DPPL| of the decisions (facet a minus facet d)")
    bl, wl = base["labelled"], window["labelled"]
    if not wl.get("rows"):
        return
    if bl.get("rows"):
        observed = list(zip(bl.get("observed_base_rate") or [], wl.get("observed_base_rate") or []))
        for k, (b, w) in list(enumerate(observed))[1 if len(observed) == 2 else 0:]:
            _two_sided(f"observed_base_rate_{k}", "base_rate_drift_check", b, w, z2, add,
                       f"the observed share of class {k} (labels)")
        _rise("realized_cost_per_decision", "realized_cost_check", bl.get("realized_cost"),
              wl.get("realized_cost"), z1, add, "the realized cost per decision")
        _two_sided("cost_gap", "cost_gap_check", bl.get("cost_gap"), wl.get("cost_gap"), z2, add,
                   "predicted minus realized cost per decision (calibration)")
        _rise("log_loss", "log_loss_check", bl.get("log_loss"), wl.get("log_loss"), z1, add,
              "the log loss")
        b, w = bl.get("auc"), wl.get("auc")
        if b and w and None not in (b.get("value"), w.get("value"), b.get("se"), w.get("se")):
            _rise("auc", "auc_check", {"value": -b["value"], "se": b["se"]},
                  {"value": -w["value"], "se": w["se"]}, z1, add, "the AUC (negated: a fall)")
    over = wl.get("cost_minus_trivial") or {}
    if over.get("value") is not None and over.get("se"):
        bound = z1 * over["se"]
        if over["value"] > bound:
            add("savings", "savings_check", over["value"], bound,
                f"the decisions cost {over['value']:.6g} per decision more than deciding "
                f"class {wl['cheapest_trivial']} for everyone (bound {bound:.6g}"
                + (f"; savings {wl['savings']:.4f})" if wl.get("savings") is not None
                   else "; deciding it costs nothing, so no savings ratio)"))


def _rise(name: str, check: str, base, window, z: float, add, what: str) -> None:
    _compare(name, check, base, window, z, add, what, two_sided=False)


def _two_sided(name: str, check: str, base, window, z: float, add, what: str) -> None:
    _compare(name, check, base, window, z, add, what, two_sided=True)


def _compare(name: str, check: str, base, window, z: float, add, what: str,
             two_sided: bool) -> None:
    """A violation when ``window``'s figure rose above the baseline's upper bound, or (two-sided)
    left the interval between its bounds (:func:`_bounds`)."""
    bounds = _bounds(base, window, z)
    if bounds is None:
        return
    low, high = bounds
    value = window["value"]
    if value > high or (two_sided and value < low):
        add(name, check, value, [low, high] if two_sided else high,
            f"{what}: {value:.6g} against the baseline's {base['value']:.6g} "
            + (f"(bounds {low:.6g} to {high:.6g})" if two_sided else f"(bound {high:.6g})"))
