"""Training speed: the cost-weighted custom objective against XGBoost's built-in objective.

All train the same data with the same parameters (``hist``, depth 6, 100 rounds) and the same cost
weights; the built-in runs ``binary:logistic`` with those weights as sample weights. Three ways:

* ``xgb.train`` with the built-in ``binary:logistic`` + weights: the baseline;
* ``xgb.train`` with costaware's objective (``obj=``): the objective alone;
* costaware's boosting loop (:mod:`costaware.training.boosting`) growing the model alone (what ``train``
  runs with ``calibration_data validation``): one booster, gradients from the numpy objective;
  with ``--subsample`` < 1, a booster per round seeded by (seed, round), for exact resumes from
  checkpoints. The per-round held-out metrics, which the built-in has no counterpart for, are left
  out. Target: <= 1.05x the built-in;
* the same loop growing the model and its 5 cross-fitting fold models (the loop
  ``calibration_data cross_fit`` runs below 500,000 fit rows), each fold model on its four fifths
  of the rows: 1 + 5 x 0.8 = 5 models' rows, about 5x the built-in's one model (the price of
  out-of-fold calibration);
* ``training.train``, the whole job but reading files (every round's held-out metric line, the
  calibrator's choice, the rule, every channel's final metrics and contributions): with the
  defaults (from 500,000 fit rows on: 2 folds, their average served, two models' trees), and the
  other ways to cross-fit. Target: the defaults <= 3x the built-in on large data. Each job's
  served model is then scored on 200,000 test rows drawn beside the training rows (AUC, log
  loss): what the cheaper job gives up.

Prints seconds and the ratios to the baseline, best of ``--repeat`` runs each, run in turn so that
a noisy neighbour hurts all alike. ``--profile``, instead: times the objective, shows where the
default job's time goes (cProfile, by step) and times shared quantile cuts for the fold models.

    python benchmarks/bench_training.py [--rows 1000000] [--features 30] [--rounds 100]
"""

import argparse
import time

import numpy as np
import xgboost as xgb
from sklearn.datasets import make_classification
from sklearn.metrics import log_loss, roc_auc_score

from costaware.config import hyperparameters
from costaware.data.channel_files import Dataset
from costaware.decisions.costs import CostMatrix, RowCosts
from costaware.training import pipeline
from costaware.training.boosting import Boosting, Member
from costaware.training.objective import make_objective

# whole jobs (costs 1:20, as the weights above): the defaults (from 500,000 fit rows on: 2 folds
# and their average), and the other ways to cross-fit
JOBS = {"defaults": {},
        "5 folds, refit": {"cross_fit_folds": "5", "served_model": "refit"},
        "5 folds, fold_average (the defaults below 500,000 rows)": {
            "cross_fit_folds": "5", "served_model": "fold_average"},
        "2 folds, refit": {"cross_fit_folds": "2", "served_model": "refit"}}
TEST_ROWS = 200_000  # generated beside the training rows; what each job's model is scored on


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--subsample", type=float, default=1.0,
                        help="row sampling for all three (< 1: costaware grows a booster per round)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the table: time the objective per round, profile the "
                        "default job and time shared quantile cuts")
    args = parser.parse_args()

    x, y = make_classification(n_samples=args.rows + TEST_ROWS, n_features=args.features,
                               n_informative=10, weights=[0.9], random_state=0)
    x = x.astype(np.float32)
    x, y, x_test, y_test = x[:args.rows], y[:args.rows], x[args.rows:], y[args.rows:]
    weight = np.where(y == 1, 20.0, 1.0)
    weight /= weight.mean()
    dtrain = xgb.DMatrix(x, label=y, weight=weight)
    # costaware's DMatrix holds no weights (its objective applies them; weighted hist cuts would
    # follow the labels of held-out rows), as in training
    dours = xgb.DMatrix(x, label=y)
    base = float(np.sum(weight * y) / np.sum(weight))  # the weighted class rate
    params = {"tree_method": "hist", "max_depth": 6, "eta": 0.3, "objective": "binary:logistic",
              "base_score": base, "disable_default_eval_metric": 1, "seed": 0,
              "subsample": args.subsample}
    objective = make_objective(y, weight)
    settings = hyperparameters.parse({"tree_method": "hist", "max_depth": "6", "eta": "0.3",
                                      "seed": "0", "num_round": str(args.rounds),
                                      "subsample": str(args.subsample)})

    def builtin():
        return xgb.train(params, dtrain, args.rounds)

    def custom():
        return xgb.train(params, dours, args.rounds, obj=objective)

    folds = np.arange(len(y)) % 5
    fold_rows = [np.flatnonzero(folds != k) for k in range(5)]  # each trains on its own rows
    fold_members = [Member(make_objective(y[rows], weight[rows]), base, rows) for rows in fold_rows]

    def loop(members):
        def run():
            boosting = Boosting.create(settings.xgboost_params(), settings.seed, dours, members)
            for _ in range(args.rounds):
                boosting.round()
            return boosting
        return run

    model = [Member(objective, base)]
    data = Dataset(x, y.astype(np.int8), [f"f{j}" for j in range(args.features)],
                   RowCosts.constant(CostMatrix(fp=1, fn=20), len(y)), "memory", True)

    def job(name, **more):
        """``training.train``, the whole job but the files: the members, every round's held-out
        metric line, the calibrator's choice, the rule and every channel's final metrics."""
        job_settings = hyperparameters.parse({
            "max_depth": "6", "eta": "0.3", "seed": "0", "num_round": str(args.rounds),
            "subsample": str(args.subsample), "cost_fp": "1", "cost_fn": "20", **more})
        def run():
            result = pipeline.train(job_settings, data, log=lambda line: None)
            p = result.policy.probability(result.booster.inplace_predict(
                x_test, predict_type="margin"))
            quality[name] = (roc_auc_score(y_test, p), log_loss(y_test, p),
                             result.booster.num_boosted_rounds())
        return run

    quality = {}

    if args.profile:
        builtin()  # (warm-up: the sketch)
        start = time.perf_counter()
        builtin()
        baseline = time.perf_counter() - start
        margin = np.zeros(args.rows, dtype=np.float32)
        samples = []
        for _ in range(50):
            start = time.perf_counter()
            objective(margin, None)
            samples.append(time.perf_counter() - start)
        print(f"built-in binary:logistic + weights (xgb.train) {baseline:.2f} s; the objective: "
              f"{1000 * min(samples):.2f} ms per round (best of 50), "
              f"{min(samples) / (baseline / args.rounds):.1%} of a built-in round")
        profile_job(job("defaults"))
        quantile_cuts(x, y, params)
        return

    runs = {"built-in binary:logistic + weights (xgb.train)": builtin,
            "costaware objective in xgb.train": custom,
            "costaware loop, the model alone": loop(model),
            "costaware loop, the model + 5 fold models": loop(model + fold_members),
            **{f"costaware train(), {name}": job(name, **more) for name, more in JOBS.items()}}
    times = {name: [] for name in runs}
    for name, fn in runs.items():  # warm-up: DMatrix quantile sketch, thread pools
        if not name.startswith("costaware train()"):  # (a job builds its own)
            fn()
    for _ in range(args.repeat):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    baseline = next(iter(best.values()))
    for name, seconds in best.items():
        print(f"{name:48s} {seconds:8.2f} s  {seconds / baseline:6.3f}x  (best of {args.repeat}; "
              f"all: {', '.join(f'{t:.2f}' for t in times[name])})")
    print(f"\nthe jobs' served models on {TEST_ROWS:,} test rows drawn beside the training rows:")
    for name, (auc, loss, trees) in quality.items():
        print(f"{name:48s} AUC {auc:.5f}  log loss {loss:.5f}  {trees} trees")
    print(f"target <= 1.05x for the model alone (6 models: ~6x by design); {args.rows:,} rows x "
          f"{args.features} features, {args.rounds} rounds, "
          f"hist, depth 6, subsample {args.subsample:g}, XGBoost {xgb.__version__}")


# where a job's time goes: (label, cProfile's function name, file suffix); cumulative seconds
JOB_STEPS = [
    ("the members' trees (XGBoost's rounds)", "train_one_iter", "xgboost/core.py"),
    ("every round's held-out metrics", "observe", "training/rounds.py"),
    ("the calibrator's cross-validated choice", "choose", "decisions/calibrator_choice.py"),
    ("every channel's final metrics and contributions", "evaluate_channels",
     "training/pipeline.py"),
    ("the matrices and the members", "members", "training/pipeline.py"),
]


def profile_job(run) -> None:
    """The default job under cProfile: the seconds of each step of :data:`JOB_STEPS`."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(run)
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    print(f"\nwhere the default job's {total:.2f} s go (cProfile, which slows Python a little):")
    for label, name, where in JOB_STEPS:
        seconds = sum(entry[3] for (path, _, function), entry in stats.items()
                      if function == name and path.endswith(where))
        print(f"  {label:50s} {seconds:6.2f} s")


def quantile_cuts(x, y, params) -> None:
    """Two fold models' matrices as the job builds them (a ``DMatrix``, its halves sliced, each
    half's quantile sketch in its first round) against cuts shared by both (one
    ``QuantileDMatrix`` of every row, each half's quantised with it as ``ref``)."""
    halves = [np.arange(0, len(y), 2), np.arange(1, len(y), 2)]
    start = time.perf_counter()
    full = xgb.DMatrix(x, label=y)
    for rows in halves:
        xgb.train(params, full.slice(rows), 1)  # the first round sketches
    sliced = time.perf_counter() - start
    start = time.perf_counter()
    shared = xgb.QuantileDMatrix(x, label=y)
    cut = time.perf_counter() - start
    for rows in halves:
        xgb.train(params, xgb.QuantileDMatrix(x[rows], label=y[rows], ref=shared), 1)
    both = time.perf_counter() - start
    print(f"two fold models' matrices and first rounds: sliced and sketched {sliced:.2f} s; "
          f"shared cuts {both:.2f} s (the QuantileDMatrix of every row {cut:.2f} s)")


if __name__ == "__main__":
    main()
