"""How much cheaper is the challenger? The difference in realized cost per decision between two
models, its intervals, and the recommendation (pure numpy).

Each labelled decision ``i`` of a model costs ``c_i = C_i[y_i, d_i]`` (its cost matrix at its label
and decision). ``Delta = mean(challenger) - mean(champion)``: negative when the challenger is
cheaper.

* **Paired** (a shadow variant, or a replay: both models decided the same requests):
  ``delta_i = c_i(challenger) - c_i(champion)``, ``Delta = mean(delta)``,
  ``se = sd(delta) / sqrt(n)``, ``df = n - 1``.
* **Unpaired** (split traffic: each request went to one variant): Welch's
  ``se = sqrt(s_a^2 / n_a + s_b^2 / n_b)`` with Welch-Satterthwaite's ``df``.

The 95% interval is ``Delta +- t_{df, 0.975} se`` (valid at one look). The probability that the
challenger is cheaper is ``P(Delta_true < 0) = F_t(-Delta / se; df)``: the posterior under a flat
prior on the difference, normal (Student) approximation.

The **recommendation** is meant to be asked again and again (a schedule runs it every hour), and an
interval valid at one look is wrong far more often than 5% when looked at repeatedly. So it uses an
anytime-valid 95% confidence sequence: the asymptotic one of Waudby-Smith, Arbour, Sinha, Kennedy
and Ramdas (2021, "Time-uniform central limit theory and asymptotic confidence sequences"),
a normal mixture whose radius for a mean of ``t`` rows with standard deviation ``s`` is

    r(t) = s * sqrt(2 (t rho^2 + 1) / (t^2 rho^2) * log(sqrt(t rho^2 + 1) / alpha)),
    rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / t*

(``t*``: the number of labels at which it is tightest, fixed in advance: :data:`PLANNED_LABELS`).
Paired: ``r(n)`` with ``s = sd(delta)``. Unpaired: ``r(n)`` over all ``n = n_a + n_b`` labelled
decisions with ``s = sqrt(n) se`` (Welch's ``se``): with each request sent to the challenger at a
fixed share ``w``, the difference of means is the mean of ``n`` independent terms
``psi_i = Z_i (c_i - m) / w - (1 - Z_i) (c_i - m) / (1 - w)`` (``Z_i``: sent to the challenger;
``m``: the pooled mean, which leaves the mean of ``psi`` unchanged), whose variance is
``n se^2`` to first order. (A sequence per variant at ``alpha / 2`` with the radii added, a union
bound, needed 1.7-2 times the labels in ``benchmarks/bench_compare.py``.) Then, with ``m`` the
smallest saving per decision worth a switch (0 by default):

* **promote** when the sequence's upper end ``Delta + r < -m`` (the challenger saves more than
  ``m``);
* **keep** when its lower end ``Delta - r >= -m`` (it does not);
* otherwise **wait**, for the labelled decisions that would make ``r < |Delta + m|`` if the
  estimates held (:func:`labels_needed`; unpaired, split as so far).

No recommendation rests on fewer labelled decisions (pairs, or per variant) than
``max(MIN_LABELS, 25 g1^2)``: the sequence is asymptotic, a few decisions alike have no spread at
all, and a mean of values with skewness ``g1 = m3 / s^3`` is near normal only from about
``25 g1^2`` of them (Cochran's rule; rare, large cost differences are that skewed). Below it the
one-look interval may be too narrow, which the job states.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.95
PLANNED_LABELS = 2000  # t*: where the confidence sequence is tightest
# Below this many labelled decisions (pairs; or per variant, unpaired) the costs' spread is not
# known yet: eight pairs decided alike have a standard deviation of 0 and a radius of 0, and the
# sequence (an asymptotic one) would keep with no doubt left (benchmarks/bench_compare.py).
MIN_LABELS = 100
MOST_LABELS = 10 ** 9  # beyond this many labels a difference is not worth waiting for


def skewness(values: np.ndarray) -> float:
    """``g1 = mean((x - mean)^3) / mean((x - mean)^2)^(3/2)``; 0 without spread."""
    if len(values) < 2:
        return 0.0
    centred = values - values.mean()
    m2 = float(np.mean(centred ** 2))
    return float(np.mean(centred ** 3)) / m2 ** 1.5 if m2 > 0 else 0.0


def labels_for_normal_mean(g1: float) -> int:
    """Labelled decisions a recommendation needs: ``max(MIN_LABELS, 25 g1^2)``."""
    return max(MIN_LABELS, int(math.ceil(25 * g1 * g1)))


def _moments(values: np.ndarray) -> tuple[int, float, float | None]:
    n = len(values)
    mean = float(np.mean(values)) if n else math.nan
    sd = float(np.std(values, ddof=1)) if n > 1 else None
    return n, mean, sd


def cost_summary(values: np.ndarray) -> dict:
    """A model's realized cost per decision: ``{"rows", "mean", "se", "skewness"}``."""
    values = np.asarray(values, dtype=np.float64)
    n, mean, sd = _moments(values)
    return {"rows": n, "mean": mean if n else None,
            "se": None if sd is None else sd / math.sqrt(n), "skewness": skewness(values)}


def paired_difference(champion: np.ndarray, challenger: np.ndarray, level: float = LEVEL) -> dict:
    """``Delta`` of the same decisions' costs, row ``i`` of both (module docstring)."""
    champion = np.asarray(champion, dtype=np.float64)
    challenger = np.asarray(challenger, dtype=np.float64)
    differences = challenger - champion
    n, delta, sd = _moments(differences)
    out = {"design": "paired", "rows": n, "champion": cost_summary(champion),
           "challenger": cost_summary(challenger), "skewness": skewness(differences)}
    if sd is None:
        return {**out, **_undecided(delta if n else None)}
    return {**out, **_interval(delta, sd / math.sqrt(n), n - 1, level), "sd": sd}


def unpaired_difference(champion: np.ndarray, challenger: np.ndarray,
                        level: float = LEVEL) -> dict:
    """``Delta`` of two samples of decisions (Welch; module docstring)."""
    a = cost_summary(champion)
    b = cost_summary(challenger)
    out = {"design": "unpaired", "rows": a["rows"] + b["rows"], "champion": a, "challenger": b}
    if a["se"] is None or b["se"] is None:
        known = a["mean"] is not None and b["mean"] is not None
        return {**out, **_undecided(b["mean"] - a["mean"] if known else None)}
    va, vb = a["se"] ** 2, b["se"] ** 2
    se = math.sqrt(va + vb)
    if se > 0:
        df = (va + vb) ** 2 / (va ** 2 / (a["rows"] - 1) + vb ** 2 / (b["rows"] - 1))
    else:
        df = a["rows"] + b["rows"] - 2
    return {**out, **_interval(b["mean"] - a["mean"], se, df, level)}


def compared(champion: np.ndarray, challenger: np.ndarray, paired: bool) -> dict:
    """:func:`paired_difference` (row ``i`` of both the same request) or
    :func:`unpaired_difference`."""
    return (paired_difference if paired else unpaired_difference)(champion, challenger)


def _undecided(delta) -> dict:
    return {"difference": delta, "se": None, "df": None, "interval": None,
            "probability_challenger_cheaper": None}


def _interval(delta: float, se: float, df: float, level: float) -> dict:
    if se == 0:  # every decision cost the same difference: no doubt left
        cheaper = 1.0 if delta < 0 else 0.0 if delta > 0 else 0.5
        return {"difference": delta, "se": 0.0, "df": df, "interval": [delta, delta],
                "probability_challenger_cheaper": cheaper}
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return {"difference": delta, "se": se, "df": df, "interval": [delta - half, delta + half],
            "probability_challenger_cheaper": float(stats.t.cdf(-delta / se, df))}


def sequence_radius(rows: float, sd: float, alpha: float = 1 - LEVEL,
                    planned: int = PLANNED_LABELS) -> float:
    """The confidence sequence's radius ``r(t)`` for a mean of ``rows`` values of standard
    deviation ``sd`` (module docstring); infinite for no rows."""
    if rows <= 0:
        return math.inf
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / planned
    grown = rows * rho2 + 1
    return sd * math.sqrt(2 * grown / (rows * rows * rho2) * math.log(math.sqrt(grown) / alpha))


def difference_radius(result: dict, alpha: float = 1 - LEVEL, rows_scale: float = 1.0) -> float:
    """The confidence sequence's radius of ``result``'s difference (paired or unpaired), with
    every variant's labelled rows multiplied by ``rows_scale`` (the estimates held)."""
    if result["design"] == "paired":
        return sequence_radius(result["rows"] * rows_scale, result["sd"], alpha)
    rows = result["rows"]  # unpaired: one sequence over both variants' decisions (module docstring)
    return sequence_radius(rows * rows_scale, result["se"] * math.sqrt(rows), alpha)


def labels_needed(result: dict, target: float, alpha: float = 1 - LEVEL) -> int | None:
    """The labelled decisions (all variants') at which the sequence's radius falls below
    ``target`` if the estimates held; None beyond :data:`MOST_LABELS`."""
    if target <= 0:
        return None
    rows = result["rows"]
    if difference_radius(result, alpha) < target:
        return rows
    low, high = 1.0, 2.0
    while difference_radius(result, alpha, high) >= target:
        low, high = high, high * 2
        if rows * low > MOST_LABELS:
            return None
    for _ in range(60):  # the radius falls with the rows: bisect the scale
        middle = (low + high) / 2
        if difference_radius(result, alpha, middle) < target:
            high = middle
        else:
            low = middle
    return int(math.ceil(rows * high))


def labels_short(result: dict) -> tuple[int, int, str, float] | None:
    """``(have, need, what, g1)`` when the pairs, or a variant's decisions, are fewer than
    :func:`labels_for_normal_mean` of their skewness (unpaired: the variant furthest from it,
    ``need / have`` largest, as the labels grow in proportion); else None."""
    if result["design"] == "paired":
        sides = [(result["rows"], result.get("skewness", 0.0), "pairs")]
    else:
        sides = [(result[name]["rows"], result[name].get("skewness", 0.0), f"{name} decisions")
                 for name in ("champion", "challenger")]
    short = [(have, labels_for_normal_mean(g1), what, g1) for have, g1, what in sides]
    short = [side for side in short if side[0] < side[1]]
    return max(short, key=lambda side: side[1] / side[0]) if short else None


def recommend(result: dict, min_saving: float = 0.0, level: float = LEVEL) -> dict:
    """promote, keep or wait (module docstring), with the anytime-valid interval it rests on and,
    to wait, how many more labelled decisions the estimates say are needed."""
    alpha = 1 - level
    if result.get("se") is None:
        return {"action": "wait", "sequence_interval": None, "more_labels": None,
                "reason": "too few labelled decisions to compare (two per variant at least)"}
    delta, boundary = result["difference"], -min_saving
    radius = difference_radius(result, alpha)
    interval = [delta - radius, delta + radius]
    base = {"sequence_interval": interval, "min_saving": min_saving}
    short = labels_short(result)
    if short is not None:
        have, need, what, g1 = short
        needed = labels_needed(result, abs(delta - boundary), alpha)
        floor = int(math.ceil(result["rows"] * need / have))
        more = max(needed or 0, floor) - result["rows"]
        why = ("the costs' spread is not known yet" if need == MIN_LABELS else
               f"25 g1^2 for costs this skewed, g1 = {g1:.2f}: below it their mean is not near "
               "normal")
        return {"action": "wait", **base, "more_labels": more,
                "reason": (f"about {more} more labelled decisions: {have} {what} so far, and "
                           f"no recommendation rests on fewer than {need} ({why})")}
    if interval[1] < boundary:
        return {"action": "promote", **base, "more_labels": 0,
                "reason": (f"the challenger saves {-delta:.4g} per decision; even the interval's "
                           f"least saving, {-interval[1]:.4g}, is more than {min_saving:.4g}")}
    if interval[0] >= boundary:  # (equal: both decided alike throughout)
        return {"action": "keep", **base, "more_labels": 0,
                "reason": (f"the challenger's saving per decision is below {min_saving:.4g} "
                           f"(at most {-interval[0] + 0.0:.4g})")}  # + 0.0: no "-0"
    needed = labels_needed(result, abs(delta - boundary), alpha)
    more = None if needed is None else max(needed - result["rows"], 1)
    if more is None:
        reason = (f"the difference, {delta:.4g} per decision, is too close to {boundary:.4g} to "
                  f"settle within {MOST_LABELS:.0e} labelled decisions")
    else:
        reason = (f"about {more} more labelled decisions (if the difference stays "
                  f"{delta:.4g} per decision and the traffic split stays as it is)")
    return {"action": "wait", **base, "more_labels": more, "reason": reason}


def over_time(champion_times: np.ndarray, champion: np.ndarray, challenger_times: np.ndarray,
              challenger: np.ndarray, paired: bool, points: int = 24) -> list[dict]:
    """The difference on the decisions made up to each of ``points`` times (the quantiles of the
    decisions' times), with its one-look interval and the confidence sequence's interval (which
    holds at every one of them at once). Paired (row ``i`` of both the same request): a pair's
    time is its champion decision's, else its twin's. Decisions without a time are left out."""
    if paired:
        champion_times = np.where(np.isfinite(champion_times), champion_times, challenger_times)
        challenger_times = champion_times
    known = np.concatenate([champion_times, challenger_times])
    known = known[np.isfinite(known)]
    if len(known) == 0:
        return []
    cuts = np.unique(np.quantile(known, np.linspace(0, 1, points + 1)[1:]))
    out = []
    for cut in cuts:
        a, b = champion_times <= cut, challenger_times <= cut
        result = compared(champion[a], challenger[b], paired)  # (paired: b is a)
        radius = difference_radius(result) if result.get("se") is not None else None
        out.append({"time": float(cut), "rows": result["rows"],
                    "difference": result["difference"], "interval": result["interval"],
                    "sequence_interval": (None if radius is None else
                                          [result["difference"] - radius,
                                           result["difference"] + radius])})
    return out
