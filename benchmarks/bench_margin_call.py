"""Where the microseconds of one one-row margin call go (issue #27's multi-model target turns on
them): costaware's ``Model.margin`` and ``DenseMargins`` against XGBoost's C function alone, called
in a tight loop with every argument prepared, on the model and on a one-tree booster of the same
width (the call's fixed cost: what does not depend on the trees), and the C call over ``--copies``
copies of the booster in turn against one of them (the CPU caches: a multi-model endpoint's
requests each go to another model).

    python benchmarks/bench_margin_call.py MODEL_DIR [--copies 100] [--repeat 9]

Each figure is the best of ``--repeat`` timings (microseconds a call). Not a test: the figures
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import timeit

import numpy as np
import xgboost as xgb
from xgboost.core import _LIB

from costaware.model import artifact, dense_margins


def best_us(call, number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    model = artifact.load(args.model_dir, nthread=1)
    width = len(model.feature_names)
    row = np.ascontiguousarray(np.random.default_rng(0).normal(size=(1, width)))
    rng = np.random.default_rng(1)
    one_tree = xgb.train({"max_depth": 4, "nthread": 1},
                         xgb.DMatrix(rng.normal(size=(200, width)), label=rng.random(200)), 1)
    raw = model.booster.save_raw("ubj")
    copies = [xgb.Booster(model_file=bytearray(raw)) for _ in range(args.copies)]
    for booster in copies:
        booster.set_param({"nthread": 1})

    call = dense_margins._thread_call()
    interface = dense_margins._INTERFACE % (row.ctypes.data, 1, width, b"<f8")

    def c_call(handle):  # XGBoost's function alone: every argument made beforehand
        return lambda: _LIB.XGBoosterPredictFromDense(handle, interface,
                                                      dense_margins._MARGIN_CONFIG, call.proxy,
                                                      *call.out)

    kept = dense_margins.DenseMargins(model.booster)
    calls = [c_call(booster.handle) for booster in copies]

    def in_turn():
        for each in calls:
            each()

    def the_first():
        for _ in calls:
            calls[0]()

    n, r, rounds = 20000, args.repeat, max(1, 20000 // len(calls))
    rows = [
        ("Booster.inplace_predict", best_us(lambda: model.booster.inplace_predict(
            row, predict_type="margin", missing=np.nan), n // 4, r)),
        ("Model.margin (float64)", best_us(lambda: model.margin(row), n, r)),
        ("DenseMargins (float32)", best_us(lambda: kept(row), n, r)),
        ("dense_margins.margins (asks the width)",
         best_us(lambda: dense_margins.margins(model.booster, row), n, r)),
        ("the C function alone, this model", best_us(c_call(model.booster.handle), n, r)),
        ("the C function alone, a one-tree booster", best_us(c_call(one_tree.handle), n, r)),
        (f"the C function, {len(calls)} copies in turn",
         best_us(in_turn, rounds, r) / len(calls)),
        (f"the C function, the first copy {len(calls)} times",
         best_us(the_first, rounds, r) / len(calls)),
    ]
    print(f"one row, {model.booster.num_boosted_rounds()} trees, {width} features; load average "
          f"{os.getloadavg()[0]:.2f}; microseconds a call, best of {r}")
    for label, us in rows:
        print(f"  {label:46s} {us:7.2f}")


if __name__ == "__main__":
    main()
