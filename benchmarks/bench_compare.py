"""Champion or challenger, simulated: does ``compare``'s 95% interval cover the true difference in
realized cost per decision, and how many labelled decisions does its recommendation need, for a
shadow variant (paired) against split traffic (unpaired)? Issue #25's "Show".

    python benchmarks/bench_compare.py [--runs 200] [--quick] [--datasets german_credit,churn]
        [--json PATH]

**Data and models.** Two real data sets loaded by ``bench_decisions.py`` with its costs:
South German Credit (the classic matrix: accepting a bad risk 5, refusing a good one 1) and
empulse's TV-subscription churn (``load_churn_tv_subscriptions``, its four per-row cost columns;
skewed: most decisions cost 0, a missed churner 857 to 3,000). Each is
split once (stratified, seed 0) into a training half and the **population**, the other half. Two
XGBoost models of different strength are trained on the training half; each decides every
population row at its Bayes rule at that row's costs (``bench_decisions.bayes``), so each
population row has a realized cost per model, ``C_i[y_i, d_i]`` (``bench_decisions.realised``):
exactly what the ``compare`` job computes from captures and ground truth before it calls
``comparison.difference``. The **true difference** is the population mean of (challenger's cost -
champion's). The pairs were chosen for a modest true difference (it takes thousands of labelled
decisions to settle, not 20), and they differ by data set because the same recipe gives no modest
difference on both: on German credit 30 stumps against 100 trees of depth 4 (the weak one refuses
too many good risks); on churn, where depth 4 overfits (it is worse than depth 2), 100 trees of
depth 2 on the strong model's most important feature alone against 100 trees of depth 2 on all.
Both directions are run: the challenger is the strong model (the right answer is **promote**) or
the weak one (**keep**).

**Traffic.** A run draws requests from the population with replacement, each with its label
(every decision's outcome is seen: for churn, where ``--replay`` is valid, as it is; for credit an
idealisation, since a refused applicant's outcome is never seen and the job then judges each
variant on the decisions whose outcome was seen, with a caveat).
Shadow (paired): both models decide every request; ``comparison.difference.paired_difference``.
Split traffic (unpaired): each request goes to one variant at 50/50, so at ``n`` labelled decisions
each variant has about ``n / 2``; Welch's ``unpaired_difference``. ``recommend`` (``min_saving``
0) is asked at every look of a grid of ``n``, ``250 * 2^(k/4)``: four looks per doubling, 8 to
1,024,000 (a schedule asking every hour looks as often as this or more, and from the first few
labels on).

**Measured**, over ``--runs`` runs (200) per data set, design and direction:

* coverage: the share of runs whose one-look 95% interval at ``n`` = 250, 1,000, 4,000 contains
  the true difference (goal >= 90%), with its binomial standard error (and, in the JSON, on which
  side it missed); beside it the share whose anytime-valid confidence sequence (the one
  ``recommend`` uses) contains it at every look;
* labels needed: the smallest look from which on (at that look and every later one)
  ``recommend`` gives the right action in >= 95% of runs, paired against unpaired, and the same
  for the one-look interval used as the rule at every look (promote if its upper end < 0, keep if
  its lower end > 0);
* wrong actions: the share of runs in which a wrong action (promote a worse challenger, keep a
  better one) was taken at any look, by ``recommend`` and by the one-look rule. With a true
  difference that is not small this is rare for either; the A/A rows (split traffic, the strong
  model against a copy of itself: true difference 0) show what looking again and again does to a
  one-look interval: the share of runs that promote a challenger that saves nothing.

Both the sequence's coverage and the wrong actions are also given leaving out the looks at which
the paired differences (or one variant's costs) were all equal so far: there the sample standard
deviation is 0, so is the sequence's radius (``recommend`` waits there: it asks for
``max(MIN_LABELS, 25 g1^2)`` labelled decisions first, see the docs).

**How it is fast.** Only a run's running count, sum, sum of squares and sum of cubes (for the
skewness) matter at a look, and a
block of ``m`` requests drawn with replacement adds, for each distinct cost value, a count that is
multinomial: per look the benchmark draws ``runs x values`` counts (split traffic: the values of
both variants, each at half its population frequency, so the 50/50 routing is drawn with the
rows) instead of ``runs x m`` rows, which makes a million labels per run as cheap as a thousand.
The means, standard deviations, intervals and actions of every run and look are computed at once
from these sums; before the simulation the benchmark asserts, on explicit samples of a few runs,
that they equal what ``paired_difference``/``unpaired_difference`` and ``recommend`` return
(the confidence sequence's radius is ``difference.sequence_radius`` itself).

Not a test: a few seconds (most of it training the four models); ``--quick`` (40 runs, looks up
to 4,000) is a smoke run, ``--runs 4000`` narrows the shares' standard errors to 0.3-0.5%.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "container"))

import bench_decisions  # noqa: E402  (the data sets' loaders, their costs, the Bayes rule)
from costaware.comparison import difference  # noqa: E402

SEED = 0
COVERAGE_AT = (250, 1000, 4000)
LOOKS_PER_DOUBLING = 4
LOOK_BASE, FIRST_K, LAST_K = 250, -20, 48  # looks 250 * 2^(k / 4): 8 ... 1,024,000
QUICK_LAST_K = 16  # 4,000
QUICK_RUNS = 40
RIGHT_SHARE = 0.95  # "the recommendation is right in >= 95% of runs"
MIN_SAVING = 0.0
ALPHA = 1 - difference.LEVEL
DESIGNS = ("paired", "unpaired")
PROMOTE, WAIT, KEEP = 1, 0, -1
ACTIONS = {PROMOTE: "promote", WAIT: "wait", KEEP: "keep"}

# (name, XGBoost settings, how many of the strong model's most important features; None: all)
MODELS = {
    "german_credit": {
        "weak": ("30 stumps", {**bench_decisions.XGB, "max_depth": 1, "n_estimators": 30}, None),
        "strong": ("100 trees of depth 4", dict(bench_decisions.XGB), None)},
    "churn": {
        "weak": ("100 trees of depth 2, one feature", {**bench_decisions.XGB, "max_depth": 2}, 1),
        "strong": ("100 trees of depth 2", {**bench_decisions.XGB, "max_depth": 2}, None)},
}


# --------------------------------------------------------------------------------------------------
# The population: each model's realized cost on each held-out row


def population(dataset: str) -> dict:
    """Train the weak and the strong model on half the rows; their realized costs on the other."""
    import warnings

    from sklearn.model_selection import train_test_split
    from xgboost import XGBClassifier

    warnings.filterwarnings("ignore")
    x, y, costs = bench_decisions.DATASETS[dataset]()
    train, held = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y,
                                   random_state=SEED)
    held_costs = bench_decisions._sub(costs, held)
    spec = MODELS[dataset]
    strong = XGBClassifier(**spec["strong"][1]).fit(x[train], y[train])
    ranked = np.argsort(-strong.feature_importances_)
    out = {"dataset": dataset, "rows": int(len(held)), "train_rows": int(len(train))}
    for role, (name, settings, features) in spec.items():
        columns = ranked[:features] if features else np.arange(x.shape[1])
        model = (strong if role == "strong" else
                 XGBClassifier(**settings).fit(x[train][:, columns], y[train]))
        p = model.predict_proba(x[held][:, columns])[:, 1]
        cost = bench_decisions.realised(y[held], bench_decisions.bayes(p, held_costs), held_costs)
        out[role] = {"name": name, "cost": cost.astype(np.float64)}
    return out


# --------------------------------------------------------------------------------------------------
# Runs: the running sums at every look, drawn as multinomial counts of distinct values


def looks(last_k: int = LAST_K) -> np.ndarray:
    """The labelled decisions at each look: ``250 * 2^(k / 4)``, rounded, ``FIRST_K <= k <=
    last_k`` (250, 1,000 and 4,000 among them)."""
    k = np.arange(FIRST_K, last_k + 1)
    return np.unique(np.round(LOOK_BASE * 2.0 ** (k / LOOKS_PER_DOUBLING)).astype(np.int64))


def _distribution(values: np.ndarray, weight: float = 1.0):
    unique, counts = np.unique(values, return_counts=True)
    return unique, counts / counts.sum() * weight


def running_sums(groups: list[np.ndarray], grid: np.ndarray, runs: int, rng) -> list[dict]:
    """For requests drawn with replacement and sent to group ``g`` with probability 1/len(groups)
    (a group: one variant's costs, or the paired differences), each group's count ``n``, ``sum``,
    ``sum of squares`` and ``sum of cubes`` after ``grid[j]`` requests: arrays
    ``(runs, len(grid))``."""
    parts = [_distribution(values, 1 / len(groups)) for values in groups]
    values = np.concatenate([v for v, _ in parts])
    probability = np.concatenate([p for _, p in parts])
    probability /= probability.sum()  # exactly 1 for numpy
    edges = np.cumsum([0] + [len(v) for v, _ in parts])
    out = [{key: np.zeros((runs, len(grid))) for key in ("n", "s1", "s2", "s3")}
           for _ in groups]
    totals = [np.zeros((4, runs)) for _ in groups]
    previous = 0
    for j, n in enumerate(grid):
        counts = rng.multinomial(int(n - previous), probability, size=runs).astype(np.float64)
        previous = n
        for g, total in enumerate(totals):
            block, v = counts[:, edges[g]:edges[g + 1]], values[edges[g]:edges[g + 1]]
            total += np.stack([block.sum(axis=1), block @ v, block @ (v * v), block @ v ** 3])
            out[g]["n"][:, j], out[g]["s1"][:, j], out[g]["s2"][:, j], out[g]["s3"][:, j] = total
    return out


# --------------------------------------------------------------------------------------------------
# difference.py's figures from the running sums, for every run and look at once


def _mean_sd(sums: dict):
    n = sums["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums["s1"] / n
        sd = np.sqrt(np.maximum(sums["s2"] - sums["s1"] * mean, 0.0) / (n - 1))
    return n, mean, np.where(n > 1, sd, np.nan)


_radius = np.vectorize(difference.sequence_radius, otypes=[np.float64])


def _too_few(sums: dict) -> np.ndarray:
    """Where a group's labelled decisions are fewer than ``difference.labels_for_normal_mean``
    of their skewness ``g1 = m3 / m2^1.5`` (central moments from the running sums)."""
    n = sums["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums["s1"] / n
        m2 = sums["s2"] / n - mean * mean
        m3 = sums["s3"] / n - 3 * mean * sums["s2"] / n + 2 * mean ** 3
        g1 = np.where(m2 > 1e-12 * np.maximum(sums["s2"] / n, 1e-300), m3 / m2 ** 1.5, 0.0)
    need = np.maximum(difference.MIN_LABELS, np.ceil(25 * g1 * g1))
    return ~(n >= need)


def figures(design: str, sums: list[dict]) -> dict:
    """The difference, its one-look 95% interval, the confidence sequence's radius and
    ``recommend``'s action (``PROMOTE``/``WAIT``/``KEEP``) from the running sums, as
    ``difference.paired_difference``/``unpaired_difference`` and ``recommend`` compute them;
    ``constant``: the looks at which the paired differences, or one variant's costs, were all
    equal so far (a sample standard deviation of 0, which makes the sequence's radius 0)."""
    if design == "paired":
        n, delta, sd = _mean_sd(sums[0])
        se, df = sd / np.sqrt(n), n - 1
        radius = sd * _radius(n, 1.0, ALPHA)  # r(t) is proportional to sd
        constant = sd == 0
        too_few = _too_few(sums[0])
    else:
        (na, ma, sa), (nb, mb, sb) = _mean_sd(sums[0]), _mean_sd(sums[1])
        delta = mb - ma
        va, vb = sa * sa / na, sb * sb / nb
        se = np.sqrt(va + vb)
        with np.errstate(invalid="ignore", divide="ignore"):
            welch = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))
        df = np.where(se > 0, welch, na + nb - 2)
        known = np.isfinite(se)
        radius = np.full(se.shape, np.nan)
        total = na + nb
        radius[known] = se[known] * np.sqrt(total[known]) * _radius(total[known], 1.0, ALPHA)
        constant = (sa == 0) | (sb == 0)
        too_few = _too_few(sums[0]) | _too_few(sums[1])
    half = np.where(se > 0, stats.t.ppf(0.5 + difference.LEVEL / 2, np.where(se > 0, df, 1.0)),
                    0.0) * se
    boundary = -MIN_SAVING
    action = np.where(delta + radius < boundary, PROMOTE,
                      np.where(delta - radius >= boundary, KEEP, WAIT))
    # too few labels (for an interval, or for a near-normal mean): recommend waits
    action = np.where(np.isfinite(se) & ~too_few, action, WAIT)
    one_look = np.where(delta + half < 0, PROMOTE, np.where(delta - half > 0, KEEP, WAIT))
    return {"difference": delta, "low": delta - half, "high": delta + half, "radius": radius,
            "action": action, "one_look_action": np.where(np.isfinite(se), one_look, WAIT),
            "constant": constant, "too_few": too_few}


def assert_as_difference(champion: np.ndarray, challenger: np.ndarray, design: str) -> bool:
    """Assert that :func:`figures` on these labelled decisions' costs (paired: row ``i`` of both)
    gives what ``difference.py`` gives; False if too few for an interval (the action still
    checked)."""
    if design == "paired":
        expected = difference.paired_difference(champion, challenger)
        groups = [challenger - champion]
    else:
        expected = difference.unpaired_difference(champion, challenger)
        groups = [champion, challenger]
    sums = [{"n": np.array([[len(g)]], float), "s1": np.array([[g.sum()]]),
             "s2": np.array([[(g * g).sum()]]), "s3": np.array([[(g ** 3).sum()]])}
            for g in groups]
    got = {k: v[0, 0] for k, v in figures(design, sums).items()}
    advice = difference.recommend(expected, MIN_SAVING)
    assert ACTIONS[int(got["action"])] == advice["action"], (design, got, advice)
    if expected["se"] is None:
        return False
    assert np.isclose(got["difference"], expected["difference"], rtol=1e-9, atol=1e-9)
    assert np.allclose([got["low"], got["high"]], expected["interval"], rtol=1e-7, atol=1e-9)
    assert np.isclose(got["radius"], difference.difference_radius(expected), rtol=1e-7, atol=1e-9)
    return True


def check_against_difference(champion: np.ndarray, challenger: np.ndarray, rng,
                             runs: int = 3, sizes=(8, 31, 250, 1000)) -> int:
    """:func:`assert_as_difference` on explicit samples of the population (paired, and split
    50/50); how many samples were compared."""
    checked = 0
    for _ in range(runs):
        for size in sizes:
            rows = rng.integers(len(champion), size=size)
            to_challenger = rng.random(size) < 0.5
            a, b = champion[rows], challenger[rows]
            checked += assert_as_difference(a, b, "paired")
            checked += assert_as_difference(a[~to_challenger], b[to_challenger], "unpaired")
    return checked


# --------------------------------------------------------------------------------------------------
# Scenarios


def _share(hits: np.ndarray) -> dict:
    p = float(np.mean(hits))
    return {"share": p, "se": float(np.sqrt(p * (1 - p) / len(hits)))}


def _needed(right: np.ndarray, grid: np.ndarray) -> int | None:
    """The smallest look from which on the share of runs right stays >= RIGHT_SHARE."""
    below = np.nonzero(right.mean(axis=0) < RIGHT_SHARE)[0]
    last_below = below[-1] if len(below) else -1
    return None if last_below == len(grid) - 1 else int(grid[last_below + 1])


def scenario(pop: dict, design: str, champion: str, challenger: str, grid: np.ndarray,
             runs: int, seed) -> dict:
    a, b = pop[champion]["cost"], pop[challenger]["cost"]
    truth = float(np.mean(b - a))
    rng = np.random.default_rng(seed)
    groups = [b - a] if design == "paired" else [a, b]
    f = figures(design, running_sums(groups, grid, runs, rng))
    covered = (f["low"] <= truth) & (truth <= f["high"])
    # (no radius: too few labels for any claim, so none that misses)
    in_sequence = (np.abs(f["difference"] - truth) <= f["radius"]) | ~np.isfinite(f["radius"])
    varied = ~f["constant"]
    # (A/A, truth 0: the challenger saves nothing; keeping is right, promoting wrong)
    right = PROMOTE if truth < -MIN_SAVING else KEEP
    wrong_action = KEEP if right == PROMOTE else PROMOTE
    out = {"design": design, "champion": champion, "challenger": challenger,
           "true_difference": truth, "runs": runs,
           "right_action": ACTIONS[right],
           "coverage": {int(n): {**_share(covered[:, j]),
                                 "true_below_interval": float(np.mean(truth < f["low"][:, j])),
                                 "true_above_interval": float(np.mean(truth > f["high"][:, j]))}
                        for j, n in enumerate(grid) if n in COVERAGE_AT},
           "sequence_covers_at_every_look": _share(np.all(in_sequence, axis=1)),
           "sequence_covers_at_every_varied_look": _share(np.all(in_sequence | ~varied, axis=1)),
           # the looks at which recommend may act: labels >= max(MIN_LABELS, 25 g1^2)
           "sequence_covers_where_recommend_acts": _share(np.all(in_sequence | f["too_few"],
                                                                 axis=1))}
    for rule, actions in (("recommend", f["action"]), ("one_look", f["one_look_action"])):
        is_right = actions == right
        wrong = actions == wrong_action
        out[rule] = {"labels_needed": _needed(is_right, grid),
                     "right_share_by_look": {int(n): float(s)
                                             for n, s in zip(grid, is_right.mean(axis=0))},
                     "wrong_at_any_look": _share(np.any(wrong, axis=1)),
                     "wrong_at_any_varied_look": _share(np.any(wrong & varied, axis=1))}
    return out


def simulate(pop: dict, grid: np.ndarray, runs: int, index: int) -> list[dict]:
    out = []
    for d, design in enumerate(DESIGNS):
        for k, (champion, challenger) in enumerate((("weak", "strong"), ("strong", "weak"))):
            out.append(scenario(pop, design, champion, challenger, grid, runs,
                                [SEED, index, d, k]))
    out.append(scenario(pop, "unpaired", "strong", "strong", grid, runs, [SEED, index, 9, 9]))
    return out


# --------------------------------------------------------------------------------------------------
# Report


def _pct(s: dict) -> str:
    return f"{s['share']:.1%} ± {s['se']:.1%}"


def _n(n: int | None, last: int) -> str:
    return f"> {last:,}" if n is None else f"{n:,}"


def _challenger(r: dict) -> str:
    if r["champion"] == r["challenger"]:
        return "A/A (itself)"
    return "better" if r["right_action"] == "promote" else "worse"


def report(pops: list[dict], results: dict, grid: np.ndarray) -> None:
    first, last = int(grid[0]), int(grid[-1])
    print("\n**Population and models** (realized cost per decision on the held-out half)\n")
    print("| data set | rows | weak model | its cost | strong model | its cost | true difference "
          "(weak - strong) | paired differences: sd, skewness, non-zero | sd weak, strong |")
    print("| --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for pop in pops:
        w, s = pop["weak"]["cost"], pop["strong"]["cost"]
        print(f"| {pop['dataset']} | {pop['rows']:,} | {pop['weak']['name']} | {w.mean():.4g} | "
              f"{pop['strong']['name']} | {s.mean():.4g} | {np.mean(w - s):+.4g} | "
              f"{np.std(w - s, ddof=1):.4g}, {stats.skew(w - s):+.2f}, {np.mean(w != s):.0%} | "
              f"{np.std(w, ddof=1):.4g}, {np.std(s, ddof=1):.4g} |")
    runs = next(iter(results.values()))[0]["runs"]
    shown = [n for n in COVERAGE_AT if n <= last]
    print(f"\n**Coverage** of the one-look 95% interval ({runs} runs per cell; goal >= 90%), and "
          f"of the confidence sequence at every look {first}–{last:,} (in brackets: leaving out "
          "the looks at which the paired differences, or one variant's costs, were all equal so "
          "far), and at every look at which `recommend` may act (labels >= max(100, 25 g1^2))\n")
    print("| data set | design | challenger | " + " | ".join(f"n = {n:,}" for n in shown)
          + " | sequence, every look | sequence, where recommend acts |")
    print("| --- | --- | --- | " + " | ".join("---:" for _ in shown) + " | ---: | ---: |")
    for dataset, scenarios in results.items():
        for r in scenarios:
            print(f"| {dataset} | {r['design']} | {_challenger(r)} | "
                  + " | ".join(_pct(r["coverage"][n]) for n in shown)
                  + f" | {_pct(r['sequence_covers_at_every_look'])} "
                  f"({_pct(r['sequence_covers_at_every_varied_look'])}) | "
                  f"{_pct(r['sequence_covers_where_recommend_acts'])} |")
    print(f"\n**Labels needed** (the smallest look from which on >= {RIGHT_SHARE:.0%} of runs "
          "get the right action) and **runs with a wrong action at any look** (in brackets: "
          "leaving out those looks)\n")
    print("| data set | challenger (right action) | true difference | design | recommend: labels "
          "needed | one-look rule: labels needed | wrong action: recommend | wrong action: "
          "one-look rule |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for dataset, scenarios in results.items():
        for r in scenarios:
            same = r["champion"] == r["challenger"]
            needed = ["–" if same else _n(r[rule]["labels_needed"], last)
                      for rule in ("recommend", "one_look")]
            wrong = [f"{_pct(r[rule]['wrong_at_any_look'])} "
                     f"({_pct(r[rule]['wrong_at_any_varied_look'])})"
                     for rule in ("recommend", "one_look")]
            print(f"| {dataset} | {_challenger(r)} ({r['right_action']}) | "
                  f"{r['true_difference']:+.4g} | {r['design']} | {needed[0]} | {needed[1]} | "
                  f"{wrong[0]} | {wrong[1]} |")
    print("\n**Paired against unpaired**: the labelled decisions `recommend` needs\n")
    print("| data set | challenger | paired (shadow) | unpaired (split traffic) | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for dataset, scenarios in results.items():
        for right in ("promote", "keep"):
            by = {r["design"]: r["recommend"]["labels_needed"] for r in scenarios
                  if r["right_action"] == right and r["champion"] != r["challenger"]}
            ratio = (f"{by['unpaired'] / by['paired']:.1f}×" if None not in by.values()
                     else "–")
            print(f"| {dataset} | {'better' if right == 'promote' else 'worse'} | "
                  f"{_n(by['paired'], last)} | {_n(by['unpaired'], last)} | {ratio} |")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_RUNS} runs, looks up to 4,000")
    parser.add_argument("--datasets", default=",".join(MODELS))
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args(argv)
    datasets = args.datasets.split(",")
    unknown = [d for d in datasets if d not in MODELS]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {sorted(MODELS)}")
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    runs = min(args.runs, QUICK_RUNS) if args.quick else args.runs
    grid = looks(QUICK_LAST_K if args.quick else LAST_K)
    import scipy
    import xgboost
    print(f"xgboost {xgboost.__version__}, numpy {np.__version__}, scipy {scipy.__version__}; "
          f"{runs} runs per cell, {len(grid)} looks from {grid[0]} to {grid[-1]:,}")
    t0 = time.perf_counter()
    pops = [population(d) for d in datasets]
    t_models = time.perf_counter() - t0
    checked = sum(check_against_difference(p["weak"]["cost"], p["strong"]["cost"],
                                           np.random.default_rng([SEED, 99, i]))
                  for i, p in enumerate(pops))
    print(f"vectorised figures equal difference.py's on {checked} explicit samples")
    results = {p["dataset"]: simulate(p, grid, runs, i) for i, p in enumerate(pops)}
    t_all = time.perf_counter() - t0
    report(pops, results, grid)
    print(f"\n{t_models:.0f} s to train the models, {t_all - t_models:.0f} s to simulate")
    summary = {"runs": runs, "looks": [int(n) for n in grid], "seconds": t_all,
               "populations": [{"dataset": p["dataset"], "rows": p["rows"],
                                **{role: {"name": p[role]["name"],
                                          "mean_cost": float(p[role]["cost"].mean())}
                                   for role in ("weak", "strong")}} for p in pops],
               "results": results}
    if args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(summary, handle, indent=1)
        except OSError as error:
            parser.error(f"--json {args.json}: {error.strerror}")
    return summary


if __name__ == "__main__":
    main()
