"""Training speed: the cost-weighted custom objective against XGBoost's built-in objective.

Both train the same data with the same parameters (``hist``, 100 rounds) and the same cost weights;
the built-in runs ``binary:logistic`` with those weights as sample weights. Prints seconds and the
ratio (target: custom / built-in <= 1.05), best of ``--repeat`` runs each, alternating, so that a
noisy neighbour hurts both sides alike.

    python benchmarks/bench_training.py [--rows 1000000] [--features 30] [--rounds 100]
"""

import argparse
import time

import numpy as np
import xgboost as xgb
from sklearn.datasets import make_classification

from costaware.objective import intercept, make_objective


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    x, y = make_classification(n_samples=args.rows, n_features=args.features, n_informative=10,
                               weights=[0.9], random_state=0)
    x = x.astype(np.float32)
    weight = np.where(y == 1, 20.0, 1.0)
    weight /= weight.mean()
    dtrain = xgb.DMatrix(x, label=y, weight=weight)
    base = 1 / (1 + np.exp(-intercept(y, weight)))
    params = {"tree_method": "hist", "max_depth": 6, "eta": 0.3, "objective": "binary:logistic",
              "base_score": base, "disable_default_eval_metric": 1, "seed": 0}
    objective = make_objective(y, weight)

    def builtin():
        return xgb.train(params, dtrain, args.rounds)

    def custom():
        return xgb.train(params, dtrain, args.rounds, obj=objective)

    times = {"built-in binary:logistic + weights": [], "costaware cost-weighted objective": []}
    builtin(), custom()  # warm-up: DMatrix quantile sketch, thread pools
    for _ in range(args.repeat):
        for name, fn in zip(times, (builtin, custom)):
            start = time.perf_counter()
            booster = fn()
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    for name, seconds in best.items():
        print(f"{name:40s} {seconds:8.2f} s  (best of {args.repeat})")
    ratio = best["costaware cost-weighted objective"] / best["built-in binary:logistic + weights"]
    print(f"ratio custom / built-in: {ratio:.3f}  (target <= 1.05; {args.rows:,} rows x "
          f"{args.features} features, {args.rounds} rounds, hist, {xgb.__version__})")


if __name__ == "__main__":
    main()
