"""More than two classes, out of sample: Palmer penguins' species from body measurements.

Data: the ``palmerpenguins`` package's bundled CSV (333 penguins with sex recorded; nothing is
downloaded). Features: bill depth, flipper length, body mass -- the bill length, which all but
separates Adelie from Chinstrap, is withheld, so the two overlap and costs matter.

Costs (``C[true][decided]``, classes Adelie, Chinstrap, Gentoo): a survey counting the Chinstrap,
the rarest here, loses a bird from its count when a Chinstrap is recorded as another species (10);
recording another species as a Chinstrap costs a follow-up check (2); Adelie and Gentoo confused
with each other cost 1:

    [[0, 2, 1], [10, 0, 10], [1, 2, 0]]

Facet (``--facet``): ``sex`` (female is facet d) or ``island`` (Dream is facet d: every Chinstrap
here lives on Dream, so the favourable rate differs by far); coded 1 for d, since a rule with a
shift per facet reads the facet from requests as a number. Not a feature. The favourable decision
is "Chinstrap" (the birds the survey follows up), and the bounded rule keeps |DPPL| of that
decision <= 0.05 on the held-out rows.

Each of ``--splits`` stratified 60/20/20 splits (train / validation / test, the same rows for every
method) scores on its test rows, which nothing was fitted on:

* ``costaware``: the cost-weighted model, calibrated on out-of-fold margins (train + validation),
  Bayes decisions ``argmin(P @ C)``;
* ``costaware argmax``: the same calibrated probabilities, decided by the most probable class;
* ``costaware uncalibrated``: the same model's ``softmax(margin)``, Bayes decisions;
* ``xgb@bayes``: the strongest simple peer, XGBoost's own ``multi:softprob`` (unweighted, early
  stopped on the validation rows' log loss), Bayes decisions on its probabilities;
* ``xgb argmax``: the peer's most probable class;
* ``costaware |DPPL|<=0.05``: costaware's model under the bound.

Prints the mean test cost per penguin (paired standard error of each method against costaware) and
the DPPL of the favourable decision with and without the bound.

    python benchmarks/bench_multiclass.py [--splits 20] [--facet sex|island]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import xgboost as xgb
from palmerpenguins import load_penguins
from sklearn.model_selection import train_test_split

from costaware.config import hyperparameters
from costaware.decisions import multiclass
from costaware.training import pipeline as training
from costaware.decisions.costs import CostMatrix, RowCosts
from costaware.data.channel_files import Dataset

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
MATRIX = [[0, 2, 1], [10, 0, 10], [1, 2, 0]]
FEATURES = ["bill_depth_mm", "flipper_length_mm", "body_mass_g"]
BOUND = 0.05
LEARNING = {"num_round": "400", "eta": "0.05", "max_depth": "3", "early_stopping_rounds": "40"}


FACETS = {"sex": "female", "island": "Dream"}  # facet d


def _dataset(x, y, in_d) -> Dataset:
    return Dataset(x.astype(np.float32), y.astype(np.int8), list(FEATURES),
                   RowCosts.constant(CostMatrix(1.0, 1.0), len(y)), "penguins", True,
                   facet=in_d.astype(np.float64))


def _dppl(decision: np.ndarray, in_d: np.ndarray) -> float:
    chosen = decision == CLASSES.index("Chinstrap")
    return float(chosen[~in_d].mean() - chosen[in_d].mean())


def one_split(seed: int, x, y, in_d, settings, matrix) -> dict:
    rows = np.arange(len(y))
    fit, test = train_test_split(rows, test_size=0.2, stratify=y, random_state=seed)
    train, valid = train_test_split(fit, test_size=0.25, stratify=y[fit], random_state=seed)
    result = training.train(settings, _dataset(x[train], y[train], in_d[train]),
                            _dataset(x[valid], y[valid], in_d[valid]), log=lambda line: None)
    margins = np.asarray(result.booster.inplace_predict(x[test].astype(np.float32),
                                                        predict_type="margin"), float)
    p = result.policy.probability(margins)
    in_d_test = in_d[test]
    served, _ = result.policy.decide(p, in_d_test)
    bayes = multiclass.bayes_decisions(p, matrix)[0]
    uncalibrated = multiclass.bayes_decisions(multiclass.softmax(margins), matrix)[0]

    peer = xgb.train({"objective": "multi:softprob", "num_class": 3, "eta": 0.05, "max_depth": 3,
                      "eval_metric": "mlogloss", "seed": seed, "nthread": 2},
                     xgb.DMatrix(x[train], label=y[train]), 400,
                     evals=[(xgb.DMatrix(x[valid], label=y[valid]), "validation")],
                     early_stopping_rounds=40, verbose_eval=False)
    peer_p = peer.predict(xgb.DMatrix(x[test]), iteration_range=(0, peer.best_iteration + 1))
    truth = y[test]

    def cost(decision):
        return float(matrix[truth, decision].mean())

    return {
        "costaware": cost(bayes), "costaware argmax": cost(p.argmax(axis=1)),
        "costaware uncalibrated": cost(uncalibrated),
        "xgb@bayes": cost(multiclass.bayes_decisions(peer_p, matrix)[0]),
        "xgb argmax": cost(peer_p.argmax(axis=1)),
        f"costaware |DPPL|<={BOUND:g}": cost(served),
        "dppl costaware": _dppl(bayes, in_d_test), "dppl bounded": _dppl(served, in_d_test),
        "logloss calibrated": float(-np.log(p[np.arange(len(truth)), truth]).mean()),
        "logloss uncalibrated": float(-np.log(multiclass.softmax(margins)[np.arange(len(truth)),
                                                                          truth]).mean()),
        "logloss xgb": float(-np.log(peer_p[np.arange(len(truth)), truth]).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--facet", choices=sorted(FACETS), default="sex")
    args = parser.parse_args()
    frame = load_penguins().dropna(subset=FEATURES + ["sex"])
    x = frame[FEATURES].to_numpy(np.float64)
    y = frame["species"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    in_d = frame[args.facet].to_numpy(dtype=object) == FACETS[args.facet]
    matrix = np.array(MATRIX, dtype=np.float64)
    settings = hyperparameters.parse({
        **LEARNING, "classes": json.dumps(CLASSES), "cost_matrix": json.dumps(MATRIX),
        "facet_column": args.facet, "facet_values_or_threshold": "[1]",
        "label_values_or_threshold": '["Chinstrap"]', "max_abs_dppl": str(BOUND),
        "group_thresholds": "true"})
    started = time.monotonic()
    runs = [one_split(seed, x, y, in_d, settings, matrix) for seed in range(args.splits)]
    elapsed = time.monotonic() - started
    methods = ["costaware", "costaware argmax", "costaware uncalibrated", "xgb@bayes",
               "xgb argmax", f"costaware |DPPL|<={BOUND:g}"]
    ours = np.array([r["costaware"] for r in runs])
    print(f"Palmer penguins ({len(y)} birds; {', '.join(FEATURES)}), cost matrix {MATRIX}, "
          f"{args.splits} stratified 60/20/20 splits, test rows only; facet {args.facet} (d: "
          f"{FACETS[args.facet]}) ({elapsed:.0f} s)")
    print(f"{'method':28s} {'cost per bird':>14s} {'vs costaware (paired s.e.)':>28s}")
    for method in methods:
        values = np.array([r[method] for r in runs])
        diff = values - ours
        se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        print(f"{method:28s} {values.mean():14.4f} {diff.mean():+14.4f} ± {se:.4f}")
    for name in ("dppl costaware", "dppl bounded"):
        values = np.array([r[name] for r in runs])
        print(f"{name:28s} mean {values.mean():+.4f}, mean |.| {np.abs(values).mean():.4f}, "
              f"max |.| {np.abs(values).max():.4f}")
    for name in ("logloss calibrated", "logloss uncalibrated", "logloss xgb"):
        print(f"{name:28s} {np.mean([r[name] for r in runs]):.4f}")


if __name__ == "__main__":
    main()
