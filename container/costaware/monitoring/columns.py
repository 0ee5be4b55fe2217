"""One numeric column's statistics in Model Monitor's schema, and its drift from a baseline.

A baseline column (:func:`column_statistics`, from all of its values) is Model Monitor's
``numerical_statistics`` (count, missing, mean, sum, standard deviation, min, max, ten equal-width
buckets between min and max, a one-level sketch of :data:`CUTS` quantiles), plus costaware's own
``costaware.cuts`` / ``costaware.cdf``: up to :data:`CUTS` distinct cut points (quantiles of the
values) and the exact share of values ``<= cut`` at each.

A window (:class:`ColumnWindow`) counts its values at the baseline's cut points and buckets, in
constant memory however many rows stream through. Its drift from the baseline is the
Kolmogorov-Smirnov distance evaluated at the cut points,

    D = max_j | F_window(c_j) - F_baseline(c_j) |,

a lower bound of the two-sample statistic (exact for a column with at most :data:`CUTS` distinct
values), compared with the two-sample critical value at significance ``alpha``,

    D_alpha = sqrt(-ln(alpha / 2) / 2) * sqrt((n + m) / (n m)),

``n`` the window's values, ``m`` the baseline's: under no drift ``D > D_alpha`` has probability at
most ``alpha`` (less on the cut points and with ties), whatever the window's size. A floor
(``minimum_distance``) keeps very large windows from flagging differences too small to matter.
"""

from __future__ import annotations

import math

import numpy as np

CUTS = 100  # quantile cut points per column
BUCKETS = 10  # Model Monitor materializes its distributions in ten buckets
KLL_PARAMETERS = {"c": 0.64, "k": 2048}


def column_statistics(name: str, values: np.ndarray) -> dict:
    """A baseline column's entry of statistics.json (module docstring); NaN = missing."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    entry = {"name": name, "inferred_type": inferred_type(present),
             "numerical_statistics": _numerical(present, len(values) - len(present))}
    if len(present):
        cuts = np.unique(np.quantile(present, np.linspace(0, 1, CUTS)))
        cdf = np.searchsorted(np.sort(present), cuts, side="right") / len(present)
        entry["costaware"] = {"cuts": cuts.tolist(), "cdf": cdf.tolist()}
    return entry


def inferred_type(present: np.ndarray) -> str:
    """``Integral`` when every present value is a whole number, else ``Fractional``."""
    if len(present) and np.all(np.isfinite(present)) and np.all(present == np.round(present)):
        return "Integral"
    return "Fractional"


def _numerical(present: np.ndarray, missing: int, buckets: list | None = None,
               sketch: list | None = None) -> dict:
    n = len(present)
    if n == 0:
        return {"common": {"num_present": 0, "num_missing": int(missing)}}
    lo, hi = float(present.min()), float(present.max())
    if buckets is None:
        edges = np.linspace(lo, hi, BUCKETS + 1)
        counts = np.histogram(present, bins=edges)[0]
        buckets = _buckets(edges, counts)
    if sketch is None:
        sketch = np.quantile(present, np.linspace(0, 1, CUTS)).tolist()
    return {
        "common": {"num_present": n, "num_missing": int(missing)},
        "mean": float(present.mean()), "sum": float(present.sum()),
        "std_dev": float(present.std()), "min": lo, "max": hi,
        "distribution": {"kll": {"buckets": buckets,
                                 "sketch": {"parameters": dict(KLL_PARAMETERS), "data": [sketch]}}},
    }


def _buckets(edges: np.ndarray, counts: np.ndarray) -> list[dict]:
    return [{"lower_bound": float(edges[i]), "upper_bound": float(edges[i + 1]),
             "count": int(counts[i])} for i in range(len(counts))]


def ks_bound(n: int, m: int, alpha: float, minimum_distance: float = 0.0) -> float:
    """The largest distance not flagged (module docstring); infinite with no values."""
    if n == 0 or m == 0:
        return math.inf
    critical = math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))
    return max(critical, minimum_distance)


class ColumnWindow:
    """A window's values of one column, counted at a baseline entry's cut points and buckets."""

    def __init__(self, baseline: dict):
        self.name = baseline["name"]
        stats = baseline["numerical_statistics"]
        own = baseline.get("costaware") or {}
        self.cuts = np.asarray(own.get("cuts", []), dtype=np.float64)
        self.baseline_cdf = np.asarray(own.get("cdf", []), dtype=np.float64)
        self.baseline_rows = int(stats["common"]["num_present"])
        buckets = stats.get("distribution", {}).get("kll", {}).get("buckets", [])
        self.edges = np.array([b["lower_bound"] for b in buckets] + [buckets[-1]["upper_bound"]]
                              if buckets else [], dtype=np.float64)
        self.at_cuts = np.zeros(len(self.cuts), dtype=np.int64)  # values <= cut j
        self.in_buckets = np.zeros(max(len(self.edges) - 1, 0), dtype=np.int64)
        self.present = self.missing = self.negative = self.fractional = 0
        # sums of (x - shift): the baseline's mean as the shift keeps the variance exact for
        # columns far from 0 (a plain sum of squares cancels: 1e8 +- 1 gives 0)
        self.shift = float(stats.get("mean") or 0.0)
        self.total = self.squares = 0.0
        self.low, self.high = math.inf, -math.inf

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        missing = np.isnan(values)
        present = values[~missing]
        self.missing += int(missing.sum())
        if not len(present):
            return
        self.present += len(present)
        moved = present - self.shift
        self.total += float(moved.sum())
        self.squares += float(np.square(moved).sum())
        self.low, self.high = min(self.low, float(present.min())), max(self.high, float(present.max()))
        self.negative += int((present < 0).sum())
        self.fractional += int((present != np.round(present)).sum())
        if len(self.cuts):
            self.at_cuts += np.cumsum(np.bincount(np.searchsorted(self.cuts, present, side="left"),
                                                  minlength=len(self.cuts) + 1))[:len(self.cuts)]
        if len(self.in_buckets):  # the outer buckets take what falls outside the baseline's range
            inner = np.searchsorted(self.edges[1:-1], present, side="right")
            self.in_buckets += np.bincount(inner, minlength=len(self.in_buckets))

    def distance(self) -> float | None:
        """The KS distance at the cut points (None without values)."""
        if not self.present or not len(self.cuts):
            return None
        return float(np.max(np.abs(self.at_cuts / self.present - self.baseline_cdf)))

    def statistics(self) -> dict:
        """This window's entry of statistics.json (buckets at the baseline's edges; the sketch
        interpolated from the counts at the cut points)."""
        entry = {"name": self.name,
                 "inferred_type": "Fractional" if self.fractional else "Integral"}
        if not self.present:
            entry["numerical_statistics"] = {"common": {"num_present": 0,
                                                        "num_missing": self.missing}}
            return entry
        n = self.present
        moved_mean = self.total / n
        std = math.sqrt(max(self.squares / n - moved_mean * moved_mean, 0.0))
        mean = self.shift + moved_mean
        sketch = []
        if len(self.cuts):
            share = self.at_cuts / n
            sketch = np.interp(np.linspace(0, 1, CUTS), share, self.cuts).tolist()
        entry["numerical_statistics"] = {
            "common": {"num_present": n, "num_missing": self.missing},
            "mean": mean, "sum": self.total + n * self.shift, "std_dev": std,
            "min": self.low, "max": self.high,
            "distribution": {"kll": {
                "buckets": _buckets(self.edges, self.in_buckets) if len(self.in_buckets) else [],
                "sketch": {"parameters": dict(KLL_PARAMETERS), "data": [sketch]}}},
        }
        entry["costaware"] = {"distance": self.distance(), "negative": self.negative,
                              "fractional": self.fractional}
        return entry
