"""Decisions out of sample: costaware's defaults against the peers on real cost-sensitive data.

    python benchmarks/bench_decisions.py [--splits 20] [--datasets breast_cancer,german_credit,bank]
        [--methods ...] [--jobs 2] [--json results.json] [--reuse-peers earlier.json]

For each data set, ``--splits`` random stratified 60/20/20 train/validation/test splits (seeds
0, 1, ...). Every method gets the same rows; a method that holds nothing out trains on train and
validation together (the strongest version of it), a method that calibrates or tunes on held-out
rows uses validation for that (or its own folds of train and validation). XGBoost everywhere with
the same settings: 100 rounds, eta 0.1, depth 4, one thread per process. Every decision is scored
on test at each row's own costs:

    savings = 1 - cost / min(cost of deciding 1 for all, cost of deciding 0 for all)

(0: as good as deciding the same for everyone, which needs no model; 1: every decision right).
Printed per data set and method: mean savings, its standard error over the splits, the mean
difference to the best peer with its paired standard error, the worst split, and the share of
splits below 0.

Data sets:

* ``breast_cancer``: scikit-learn's Wisconsin data, malignant = 1, the custom-loss case study's
  costs per patient: TN 0, FP 1,287.67 (a biopsy), FN 252,000 (a missed cancer), TP 35,280.
* ``german_credit``: South German Credit (``../shared/data``), positive = bad risk, the data set's
  classic matrix: accepting a bad risk (FN) costs 5, refusing a good one (FP) 1.
* ``bank``: the bank telemarketing data bundled with ``empulse`` (``load_upsell_bank_telemarketing``),
  with its documented per-row costs: contacting costs c = 1 (TP, FP), a missed subscriber
  FN_i = max(r d balance_i, c) with r = 0.02463333, d = 0.25, TN 0. Nominal features one-hot.
* also available: ``churn`` (``load_churn_tv_subscriptions``, its four per-row cost columns),
  ``pakdd`` and ``vub`` (``load_credit_scoring_pakdd`` / ``load_vub_credit_scoring``: FN_i = credit
  line x LGD 0.75, FP_i the data set's own), to check beyond the three named data sets.

Methods: ``costaware`` (the defaults; the variants ``costaware:key=value`` change one
hyperparameter) runs the real code path: CSV channel files with the per-row costs in cost columns,
``data.load_channel``, ``training.train``, ``artifact.save``/``load``, then ``inference.predict`` on the
test rows carrying their costs, as a request would (only the SageMaker toolkit and the report are
left out). Peers: ``xgb@0.5`` and ``xgb@bayes`` (plain XGBoost deciding at 0.5, or at each row's
Bayes threshold on its raw probability), ``xgb+platt@bayes`` (trained on train, Platt scaling on
validation with scikit-learn, then each row's Bayes threshold), ``tuned_threshold`` (scikit-learn's
``TunedThresholdClassifierCV``, 5 folds, scored by total cost at each row's costs),
``csboost`` (empulse's ``CSBoostClassifier``, its own rule) and ``csthreshold`` (empulse's
``CSThresholdClassifier``, fitted with the training rows' costs: sigmoid calibration on 3 folds,
then each test row's Bayes threshold at its costs).

``--reuse-peers`` takes the peers' per-split savings from an earlier ``--json`` run on the same
splits (the peers do not depend on costaware's code: it only saves their time; costaware's methods
always run). Not a test: it takes minutes (about 20 with the defaults on two cores) and its
figures depend on the library versions (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from multiprocessing import Pool

import numpy as np
import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data", "south_german_credit.asc")
XGB = {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 4, "n_jobs": 1,
       "tree_method": "hist", "random_state": 0}
COSTAWARE = {"num_round": "100", "eta": "0.1", "max_depth": "4", "nthread": "1", "seed": "0"}
CELLS = ("fp", "fn", "tp", "tn")
DEFAULT_METHODS = ("costaware", "costaware:served_model=refit", "costaware:calibrator=platt",
                   "costaware:cost_weight_exponent=0.15", "costaware:calibration_data=validation",
                   "xgb@0.5", "xgb@bayes", "xgb+platt@bayes", "tuned_threshold", "csboost",
                   "csthreshold")


# --------------------------------------------------------------------------------------------------
# Data sets: features (float), label (0/1), costs (four per-row arrays)


def _onehot(frame: pd.DataFrame) -> pd.DataFrame:
    nominal = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    return pd.get_dummies(frame, columns=nominal, dtype=float).astype(float)


def _full(n: int, value: float) -> np.ndarray:
    return np.full(n, float(value))


def breast_cancer():
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    y = 1 - y  # scikit-learn codes malignant as 0
    n = len(y)
    return x, y, {"tp": _full(n, 35280), "fp": _full(n, 1287.67), "fn": _full(n, 252000),
                  "tn": _full(n, 0)}


def german_credit():
    frame = pd.read_csv(SHARED, sep=r"\s+")
    y = (frame.pop("credit_risk") == 0).astype(int).to_numpy()  # 1 = bad risk
    n = len(y)
    return frame.to_numpy(float), y, {"tp": _full(n, 0), "fp": _full(n, 1), "fn": _full(n, 5),
                                      "tn": _full(n, 0)}


def bank():
    from empulse.datasets import load_upsell_bank_telemarketing

    d = load_upsell_bank_telemarketing(backend=pd)
    y = d.target.to_numpy().astype(int)
    n = len(y)
    balance = np.asarray(d.instance_costs["balance"], float)
    return _onehot(d.data).to_numpy(float), y, {
        "tp": _full(n, 1), "fp": _full(n, 1), "fn": np.maximum(0.02463333 * 0.25 * balance, 1.0),
        "tn": _full(n, 0)}


def churn():
    from empulse.datasets import load_churn_tv_subscriptions

    d = load_churn_tv_subscriptions(backend=pd)
    costs = {k.split("_")[0]: np.asarray(v, float) for k, v in d.instance_costs.items()}
    return _onehot(d.data).to_numpy(float), d.target.to_numpy().astype(int), costs


def _credit(loader):
    d = loader(backend=pd)
    y = d.target.to_numpy().astype(int)
    n = len(y)
    return _onehot(d.data).to_numpy(float), y, {
        "tp": _full(n, 0), "tn": _full(n, 0), "fp": np.asarray(d.instance_costs["fp_cost"], float),
        "fn": np.asarray(d.instance_costs["cl"], float) * 0.75}


def pakdd():
    from empulse.datasets import load_credit_scoring_pakdd
    return _credit(load_credit_scoring_pakdd)


def vub():
    from empulse.datasets import load_vub_credit_scoring
    return _credit(load_vub_credit_scoring)


DATASETS = {"breast_cancer": breast_cancer, "german_credit": german_credit, "bank": bank,
            "churn": churn, "pakdd": pakdd, "vub": vub}


# --------------------------------------------------------------------------------------------------
# Scoring


def realised(y, decision, costs) -> np.ndarray:
    d, yy = np.asarray(decision) == 1, np.asarray(y) == 1
    return np.where(d, np.where(yy, costs["tp"], costs["fp"]), np.where(yy, costs["fn"], costs["tn"]))


def savings(y, decision, costs) -> float:
    n = len(y)
    cheaper = min(realised(y, np.ones(n), costs).sum(), realised(y, np.zeros(n), costs).sum())
    return float(1.0 - realised(y, decision, costs).sum() / cheaper)


def bayes(p, costs) -> np.ndarray:
    """Decide 1 iff p C_TP + (1-p) C_FP <= p C_FN + (1-p) C_TN."""
    return (p * costs["tp"] + (1 - p) * costs["fp"] <= p * costs["fn"] + (1 - p) * costs["tn"]
            ).astype(int)


def _sub(costs: dict, rows) -> dict:
    return {k: v[rows] for k, v in costs.items()}


# --------------------------------------------------------------------------------------------------
# Methods: each takes (x, y, costs) of train, validation and the test features and costs, and
# returns the test decisions


def _xgb():
    from xgboost import XGBClassifier
    return XGBClassifier(**XGB)


def plain(split, rule: str):
    (x_tr, y_tr, c_tr), (x_va, y_va, c_va), (x_te, c_te) = split
    model = _xgb().fit(np.vstack([x_tr, x_va]), np.concatenate([y_tr, y_va]))
    p = model.predict_proba(x_te)[:, 1]
    return (p >= 0.5).astype(int) if rule == "0.5" else bayes(p, c_te)


def platt(split):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    (x_tr, y_tr, c_tr), (x_va, y_va, c_va), (x_te, c_te) = split
    model = _xgb().fit(x_tr, y_tr)
    calibrated = CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid").fit(x_va, y_va)
    return bayes(calibrated.predict_proba(x_te)[:, 1], c_te)


def tuned_threshold(split):
    import sklearn
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import TunedThresholdClassifierCV

    (x_tr, y_tr, c_tr), (x_va, y_va, c_va), (x_te, c_te) = split
    x, y = np.vstack([x_tr, x_va]), np.concatenate([y_tr, y_va])
    costs = {k: np.concatenate([c_tr[k], c_va[k]]) for k in CELLS}

    def negative_cost(y_true, y_pred, fp, fn, tp, tn):
        return -realised(y_true, y_pred, {"fp": fp, "fn": fn, "tp": tp, "tn": tn}).sum()

    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_scorer(negative_cost).set_score_request(fp=True, fn=True, tp=True, tn=True)
        model = TunedThresholdClassifierCV(_xgb(), scoring=scorer, cv=5, random_state=0)
        model.fit(x, y, **costs)
        return model.predict(x_te).astype(int)


def csboost(split):
    from empulse.models import CSBoostClassifier

    (x_tr, y_tr, c_tr), (x_va, y_va, c_va), (x_te, c_te) = split
    x, y = np.vstack([x_tr, x_va]), np.concatenate([y_tr, y_va])
    costs = {f"{k}_cost": np.concatenate([c_tr[k], c_va[k]]) for k in CELLS}
    return CSBoostClassifier(estimator=_xgb()).fit(x, y, **costs).predict(x_te).astype(int)


def csthreshold(split):
    from empulse.models import CSThresholdClassifier

    (x_tr, y_tr, c_tr), (x_va, y_va, c_va), (x_te, c_te) = split
    x, y = np.vstack([x_tr, x_va]), np.concatenate([y_tr, y_va])
    costs = {f"{k}_cost": np.concatenate([c_tr[k], c_va[k]]) for k in CELLS}
    # (fit without costs would skip the calibration: empulse then fits the bare estimator)
    model = CSThresholdClassifier(_xgb(), calibrator="sigmoid", random_state=0).fit(x, y, **costs)
    return model.predict(x_te, **{f"{k}_cost": c_te[k] for k in CELLS}).astype(int)


def costaware(split, overrides: dict, work: str):
    """The real path: channel files with cost columns -> load -> train -> save/load -> predict."""
    sys.path.insert(0, os.path.join(REPO, "container"))
    from costaware.model import artifact
    from costaware.data import channel_files as data
    from costaware.config import hyperparameters
    from costaware.model import inference
    from costaware.training import pipeline as training

    (x_tr, y_tr, c_tr), (x_va, y_va, c_va), (x_te, c_te) = split
    varying = [k for k in CELLS if np.ptp(np.concatenate([c_tr[k], c_va[k], c_te[k]])) > 0]
    constant = {f"cost_{k}": repr(float(c_tr[k][0])) for k in CELLS if k not in varying}
    # class costs for the cells with columns: the rows' mean, which decides rows sent without costs
    means = {f"cost_{k}": repr(float(np.mean(c_tr[k]))) for k in varying}
    hp = {**COSTAWARE, **constant, **means, "label_column": "label",
          **{f"cost_{k}_column": f"cost_{k}" for k in varying}, **overrides}
    if float(hp["cost_fp"]) <= float(hp["cost_tn"]):  # a class matrix must leave something to decide
        hp["cost_fp"] = repr(float(hp["cost_tn"]) + 1e-9)
    if float(hp["cost_fn"]) <= float(hp["cost_tp"]):
        hp["cost_fn"] = repr(float(hp["cost_tp"]) + 1e-9)
    settings = hyperparameters.parse(hp)
    names = [f"x{j}" for j in range(x_tr.shape[1])]
    datasets = {}
    for channel, (x, y, c) in (("train", (x_tr, y_tr, c_tr)), ("validation", (x_va, y_va, c_va))):
        directory = os.path.join(work, channel)
        os.makedirs(directory, exist_ok=True)
        frame = pd.DataFrame(x, columns=names)
        frame.insert(0, "label", y)
        for k in varying:
            frame[f"cost_{k}"] = c[k]
        frame.to_csv(os.path.join(directory, "data.csv"), index=False)
        datasets[channel] = data.load_channel(directory, "text/csv",
                                              data.options_from_settings(settings, "text/csv"))
    result = training.train(settings, datasets["train"], datasets["validation"], log=lambda _: None)
    model_dir = os.path.join(work, "model")
    artifact.save(model_dir, result.booster, result.feature_names, result.policy, {})
    model = artifact.load(model_dir)
    rows = np.column_stack([x_te] + [c_te[k] for k in varying])
    out = inference.predict(model, rows, np.ones(len(rows), dtype=bool) if varying else None)
    return out["decision"].astype(int)


def run_method(name: str, split, work: str):
    if name.startswith("costaware"):
        overrides = dict(part.split("=", 1) for part in name.split(":")[1:])
        return costaware(split, overrides, work)
    if name == "xgb@0.5":
        return plain(split, "0.5")
    if name == "xgb@bayes":
        return plain(split, "bayes")
    if name == "xgb+platt@bayes":
        return platt(split)
    return {"tuned_threshold": tuned_threshold, "csboost": csboost,
            "csthreshold": csthreshold}[name](split)


def one_split(job) -> tuple[str, int, dict]:
    import warnings

    from sklearn.model_selection import train_test_split

    warnings.filterwarnings("ignore")
    dataset, seed, methods, reused = job
    x, y, costs = DATASETS[dataset]()
    rows = np.arange(len(y))
    train, rest = train_test_split(rows, test_size=0.4, stratify=y, random_state=seed)
    valid, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    split = ((x[train], y[train], _sub(costs, train)), (x[valid], y[valid], _sub(costs, valid)),
             (x[test], _sub(costs, test)))
    out = dict(reused)
    y_te, c_te = y[test], _sub(costs, test)
    for name in [m for m in methods if m not in reused]:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-decisions-") as work:
            decision = run_method(name, split, work)
        out[name] = {"savings": savings(y_te, decision, c_te), "seconds": time.perf_counter() - t0}
    out["decide 1 for all"] = {"savings": savings(y_te, np.ones(len(test)), c_te), "seconds": 0}
    out["decide 0 for all"] = {"savings": savings(y_te, np.zeros(len(test)), c_te), "seconds": 0}
    return dataset, seed, out


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def summarise(dataset: str, rows: list[dict], methods: list[str]) -> list[dict]:
    names = list(methods) + ["decide 1 for all", "decide 0 for all"]
    values = {m: np.array([r[m]["savings"] for r in rows]) for m in names}
    peers = [m for m in methods if not m.startswith("costaware")]
    best_peer = max(peers, key=lambda m: values[m].mean()) if peers else None
    table = []
    for m in names:
        v = values[m]
        entry = {"dataset": dataset, "method": m, "mean": float(v.mean()), "se": _se(v),
                 "worst": float(v.min()), "below_0": float(np.mean(v < -1e-12)),
                 "seconds": float(np.mean([r[m]["seconds"] for r in rows]))}
        if best_peer is not None:
            diff = v - values[best_peer]
            entry.update(best_peer=best_peer, vs_best_peer=float(diff.mean()), paired_se=_se(diff))
        table.append(entry)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--datasets", default="breast_cancer,german_credit,bank")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="write every split's savings here")
    parser.add_argument("--reuse-peers", metavar="JSON",
                        help="take the peers' savings per split from an earlier --json run (the "
                             "same splits; costaware's methods always run): peers do not depend "
                             "on costaware's code, so this only saves their time")
    args = parser.parse_args()
    datasets = args.datasets.split(",")
    methods = args.methods.split(",")
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {sorted(DATASETS)}")
    import empulse
    import sklearn
    import xgboost
    print(f"xgboost {xgboost.__version__}, scikit-learn {sklearn.__version__}, empulse "
          f"{empulse.__version__}; {args.splits} splits per data set, {args.jobs} processes")
    earlier = {}
    if args.reuse_peers:
        with open(args.reuse_peers, encoding="utf-8") as handle:
            for split in json.load(handle)["splits"]:
                earlier[split["dataset"], split["seed"]] = {
                    m: split[m] for m in methods if m in split and not m.startswith("costaware")}
    jobs = [(d, s, methods, earlier.get((d, s), {})) for d in datasets
            for s in range(args.splits)]
    t0 = time.perf_counter()
    with Pool(args.jobs) as pool:
        results = pool.map(one_split, jobs, chunksize=1)
    tables = []
    for dataset in datasets:
        rows = [r for d, _, r in sorted(results, key=lambda t: t[1]) if d == dataset]
        table = summarise(dataset, rows, methods)
        tables += table
        peer = table[0].get("best_peer")
        print(f"\n{dataset}: savings on test over {len(rows)} splits (best peer: {peer})")
        print("| method | mean savings | s.e. | vs best peer (paired s.e.) | worst split | "
              "splits < 0 | s per split |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for e in table:
            vs = (f"{e['vs_best_peer']:+.4f} ({e['paired_se']:.4f})" if "vs_best_peer" in e
                  else "")
            print(f"| {e['method']} | {e['mean']:.4f} | {e['se']:.4f} | {vs} | {e['worst']:.4f} | "
                  f"{e['below_0']:.0%} | {e['seconds']:.1f} |")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"summary": tables, "splits": [{"dataset": d, "seed": s, **r}
                                                     for d, s, r in results]}, handle, indent=1)


if __name__ == "__main__":
    main()
