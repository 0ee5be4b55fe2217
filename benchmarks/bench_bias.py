"""Bias metrics speed: costaware's numpy post-training metrics against smclarify on the same arrays.

One data set of ``--rows`` rows (default 10M): label, predicted label, facet (30% in the sensitive
group d) and a group variable with ``--groups`` values, from a fixed seed. costaware computes every
post-training metric with one call (:func:`costaware.metrics.clarify.post_training_bias`: the confusion
counts once, then DPPL, DI, DCA, DCR, RD, SD, DAR, DRR, AD, CDDPL, TE, GE); smclarify computes each
metric the way its report calls it (``smclarify.bias.metrics.call_metric`` with pandas Series). For
a like-for-like figure costaware also computes each metric on its own, one function call each.
FlipTest (FT) is left out of both: it fits a k-NN on the features, which is not what is compared.

Prints both times and the ratio (target: costaware >= 20x faster), and checks that every value is
equal (relative 1e-9; the script fails otherwise). costaware's time is the best of ``--repeat``;
smclarify runs once (its time is the sum over metrics, tens of seconds on 10M rows).

    python benchmarks/bench_bias.py [--rows 10000000] [--groups 12] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import pandas as pd
from smclarify.bias import metrics as clarify_metrics

from costaware.metrics import clarify as fairness

METRICS = [m for m in fairness.POST_TRAINING_METRICS if m != "FT"]


def same(ours: float, ref: float) -> bool:
    if math.isnan(ours) or math.isnan(ref):
        return math.isnan(ours) and math.isnan(ref)
    if math.isinf(ours) or math.isinf(ref):
        return ours == ref
    return abs(ours - ref) <= 1e-9 * max(1.0, abs(ref))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.rows
    sensitive = rng.random(n) < 0.3
    y = rng.random(n) < np.where(sensitive, 0.25, 0.35)
    yhat = np.where(rng.random(n) < 0.8, y, ~y) & (rng.random(n) < np.where(sensitive, 0.8, 0.95))
    group = rng.integers(0, args.groups, n)

    ours_times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        ours = fairness.post_training_bias(y, yhat, sensitive, group)
        ours_times.append(time.perf_counter() - start)
    assert list(ours) == METRICS, list(ours)
    # like for like with smclarify: each metric on its own (the confusion counts every time)
    one_by_one = {
        "DPPL": lambda: fairness.dppl(yhat, sensitive), "DI": lambda: fairness.di(yhat, sensitive),
        "DCA": lambda: fairness.dca(y, yhat, sensitive), "DCR": lambda: fairness.dcr(y, yhat, sensitive),
        "RD": lambda: fairness.rd(y, yhat, sensitive), "SD": lambda: fairness.sd(y, yhat, sensitive),
        "DAR": lambda: fairness.dar(y, yhat, sensitive), "DRR": lambda: fairness.drr(y, yhat, sensitive),
        "AD": lambda: fairness.ad(y, yhat, sensitive),
        "CDDPL": lambda: fairness.cddpl(yhat, sensitive, group),
        "TE": lambda: fairness.te(y, yhat, sensitive), "GE": lambda: fairness.ge(y, yhat),
    }
    separate_times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        separate = {name: float(f()) for name, f in one_by_one.items()}
        separate_times.append(time.perf_counter() - start)

    # smclarify's arguments as its report builds them; building the Series is not timed
    kwargs = dict(
        df=pd.DataFrame({"x": np.zeros(n, dtype=np.float32)}),
        feature=pd.Series(sensitive.astype(np.int8)),
        sensitive_facet_index=pd.Series(sensitive, dtype=bool),
        label=pd.Series(y, dtype=bool),
        positive_label_index=pd.Series(y, dtype=bool),
        predicted_label=pd.Series(yhat, dtype=bool),
        positive_predicted_label_index=pd.Series(yhat, dtype=bool),
        group_variable=pd.Series(group),
    )
    theirs, their_times = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # smclarify 0.5 on pandas 3: deprecation warnings
        for name in METRICS:
            start = time.perf_counter()
            theirs[name] = float(clarify_metrics.call_metric(getattr(clarify_metrics, name), **kwargs))
            their_times[name] = time.perf_counter() - start

    mismatches = [f"{m}: costaware {ours[m]!r} ({separate[m]!r} alone), smclarify {theirs[m]!r}"
                  for m in METRICS if not (same(ours[m], theirs[m]) and same(separate[m], theirs[m]))]
    best, total = min(ours_times), sum(their_times.values())
    print(f"{n:,} rows, {args.groups} groups, {len(METRICS)} post-training metrics "
          f"({', '.join(METRICS)})")
    print(f"costaware post_training_bias   {best:8.3f} s  (best of {args.repeat}; all: "
          f"{', '.join(f'{t:.3f}' for t in ours_times)})")
    print(f"costaware, metric by metric    {min(separate_times):8.3f} s  (best of {args.repeat})")
    print(f"smclarify, metric by metric    {total:8.3f} s  (slowest: "
          + ", ".join(f"{m} {t:.2f}" for m, t in sorted(their_times.items(), key=lambda kv: -kv[1])[:3])
          + ")")
    print(f"costaware is {total / best:.1f}x faster (metric by metric: "
          f"{total / min(separate_times):.1f}x; target >= 20x); values equal: "
          f"{'all ' + str(len(METRICS)) if not mismatches else 'NO'}")
    if mismatches:
        raise SystemExit("values differ:\n" + "\n".join(mismatches))


if __name__ == "__main__":
    main()
