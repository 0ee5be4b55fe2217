"""Drift detection by ``monitor``: at which record each kind of drift is flagged, and how often a
check fires when nothing drifted, on two real data sets.

    python benchmarks/bench_monitor_drift.py [--seeds 20] [--datasets german_credit,bank]
        [--jobs 2] [--json results.json]

    python benchmarks/bench_monitor_drift.py --seeds 4      # a quick run (under a minute)

Per data set and seed (0, 1, ...), the rows are split at random into train, test and a stream
pool that neither training nor the baseline sees:

* ``german_credit`` (South German Credit, ``../shared/data``; 1,000 rows, bad risk = 1, FN 5,
  FP 1): 450 train, 200 test, 350 pool; windows of W = 100 records.
* ``bank`` (empulse's bank telemarketing, 37,931 rows, its per-row cost of a missed subscriber
  ``FN_i`` in a cost column, as ``bench_decisions.py`` loads it): 5,000 train, 2,000 test, the
  other 30,931 the pool; windows of W = 250 records.

A model is trained on the real path: a SageMaker tree (train and test channels, CSV with the
cost column) and :func:`costaware.sagemaker.training_job.run` in-process (``report`` false, 50
rounds, depth 4), which writes ``model/baseline/`` (statistics.json, constraints.json: the train
channel's columns; the test channel's rows scored by the model for scores, costs, calibration).

The stream is records of one row each, answered by the server's own code
(:func:`costaware.serving.invocation.respond`, as ``costaware predict`` does: CSV in, JSON Lines
out). For speed the pool is answered in one batch (and once more with its costs x1.5), and each
record's ``endpointOutput`` is its row's line of that answer; a few rows are checked to get the
same line when answered alone. Records are written as SageMaker data-capture records
(``captureData.endpointInput`` / ``endpointOutput``, ``eventMetadata`` with ``eventId``,
``inferenceId``, ``inferenceTime``, ``eventVersion`` "0") by the server's own record format
(:func:`capture_record`: :func:`costaware.data_capture.record`), with a ground-truth record per
record in Model Monitor's merge format (``groundTruthData.data`` = the label,
``eventMetadata.eventId`` = the inference id).

Every window is W records drawn from the pool without replacement (so a window without drift is
an independent sample of the rows the baseline came from, whatever the pool's size), each window
in its own capture and ground-truth directories, monitored by
:func:`costaware.monitoring.job.run_monitor` with Model Monitor's environment variables.

* Without drift: 20 windows per seed, uniform draws. The false-alarm rate of a constraint type is
  the share of these windows, all seeds pooled, in which it fired for any feature; the worst
  single constraint (one feature's) is shown beside it. Goal: at most 5% per constraint. The
  windows of one seed share a baseline and a pool, so they can fire together: the interval
  resamples whole seeds.
* With drift starting at record R = 4 W (the stream's first four windows are the first four
  windows without drift, then the drifted ones), 10 drifted windows. The record at which a
  drift is flagged is the end of the first window after R in which a check that kind should trip
  fired; a drift not flagged in 10 windows counts as "not by R + 10 W" (the median is then a lower
  bound: shown with ">"). Median and quartiles over the seeds. The kinds:

  1. ``covariate``: rows drawn with weight proportional to the rank of ``age`` (older applicants
     more often; the window's CDF of age is about F^2): ``baseline_drift_check`` on age.
  2. ``base rate x2``: positives drawn with twice the weight of negatives (the odds doubled):
     ``base_rate_drift_check`` or ``score_drift_check`` (no labels needed).
  3. ``costs x1.5`` (bank only; South German Credit has no cost column): every row's cost column
     x1.5, answered by the model at those costs: ``cost_drift_check`` or ``expected_cost_check``.
  4. ``labels flipped 20%``: the ground truth of a random 20% of the rows flipped (the
     probabilities no longer calibrated; the rows and answers unchanged): ``cost_gap_check``,
     ``log_loss_check``, ``auc_check`` or ``realized_cost_check``.

Why these W: a window must hold enough rows for the normal approximations of the mean-based
checks (about 30 positives at bank's 13% base rate in 250 records) and for the KS bound to be
reachable by a real shift (at W = 250 against 5,000 training rows the bound is 0.106); German
credit's pool of 350 rows allows W = 100 drawn without replacement with room for a weighted draw
to shift.

Not a test: it takes about 4 minutes with the defaults on two cores; its figures depend on the
data, the model and the library versions (printed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from multiprocessing import Pool

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "container"))

import bench_decisions  # noqa: E402  (the data sets' loaders)

PRE_WINDOWS = 4  # drift starts at record R = PRE_WINDOWS * W
DRIFT_WINDOWS = 10  # drifted windows monitored
CLEAN_WINDOWS = 20  # windows without drift per seed
FLIP_SHARE = 0.2
COST_GROWTH = 1.5
ROUNDS = {"num_round": "50", "eta": "0.1", "max_depth": "4", "nthread": "1", "report": "false"}
START = datetime(2026, 12, 6, 7, 0, tzinfo=timezone.utc)

DATASETS = {
    # name: (loader, train rows, test rows, window size, the covariate-shift feature)
    "german_credit": (bench_decisions.german_credit, 450, 200, 100, "age"),
    "bank": (bench_decisions.bank, 5000, 2000, 250, "age"),
}

KINDS = {  # kind: the checks it should trip
    "covariate": ("baseline_drift_check",),
    "base rate x2": ("base_rate_drift_check", "score_drift_check"),
    "costs x1.5": ("cost_drift_check", "expected_cost_check"),
    "labels flipped 20%": ("cost_gap_check", "log_loss_check", "auc_check",
                           "realized_cost_check"),
}


def feature_names(dataset: str) -> list[str]:
    """The columns of ``bench_decisions``' feature matrix, in its order."""
    if dataset == "german_credit":
        header = pd.read_csv(bench_decisions.SHARED, sep=r"\s+", nrows=0).columns
        return [c for c in header if c != "credit_risk"]
    from empulse.datasets import load_upsell_bank_telemarketing
    frame = bench_decisions._onehot(load_upsell_bank_telemarketing(backend=pd).data)
    return [str(c) for c in frame.columns]


# --------------------------------------------------------------------------------------------------
# Training on the real path


def train(work: str, seed: int, x, y, costs, names, parts) -> str:
    """A SageMaker tree with train and test channels, trained in-process; the model directory."""
    from costaware.sagemaker import training_job

    varying = [k for k in bench_decisions.CELLS if np.ptp(costs[k]) > 0]
    hp = {**ROUNDS, "seed": str(seed), "label_column": "label"}
    for k in bench_decisions.CELLS:
        hp[f"cost_{k}"] = repr(float(np.mean(costs[k][parts["train"]])) if k in varying
                               else float(costs[k][0]))
    for k in varying:
        hp[f"cost_{k}_column"] = f"cost_{k}"
    config = os.path.join(work, "input", "config")
    os.makedirs(config)
    for name, value in (("hyperparameters.json", hp),
                        ("inputdataconfig.json", {c: {"ContentType": "text/csv"}
                                                  for c in ("train", "test")})):
        with open(os.path.join(config, name), "w", encoding="utf-8") as handle:
            json.dump(value, handle)
    for channel in ("train", "test"):
        rows = parts[channel]
        frame = pd.DataFrame(x[rows], columns=names)
        frame.insert(0, "label", y[rows])
        for k in varying:
            frame[f"cost_{k}"] = costs[k][rows]
        directory = os.path.join(work, "input", "data", channel)
        os.makedirs(directory)
        frame.to_csv(os.path.join(directory, "data.csv"), index=False)
    training_job.run(work, log=lambda *_: None)
    return os.path.join(work, "model")


# --------------------------------------------------------------------------------------------------
# Answers and capture records


def answer_rows(invocations, rows: np.ndarray) -> tuple[list[str], list[str]]:
    """Each row's CSV request line and its JSON Lines answer, from one batch request to the
    server's code."""
    from costaware.serving.invocation import respond

    lines = [",".join(repr(float(v)) for v in row) for row in rows]
    reply = respond(invocations, "\n".join(lines).encode(), "text/csv", "application/jsonlines",
                    None)
    if reply.status != 200:
        raise RuntimeError(f"the server refused the pool: {reply.body[:300]!r}")
    answers = reply.body.decode().splitlines()
    assert len(answers) == len(lines)
    for i in range(min(3, len(lines))):  # alone, a row gets the same answer
        single = respond(invocations, lines[i].encode(), "text/csv", "application/jsonlines", None)
        assert single.body.decode().strip() == answers[i], (single.body, answers[i])
    return lines, answers


def capture_record(request: str, answer: str, inference_id: str, when: datetime) -> dict:
    """One invocation as the server's capture writer records it (:mod:`costaware.data_capture`)."""
    from costaware import data_capture

    return data_capture.record("text/csv", request.encode(), "application/jsonlines",
                               answer.encode(), when.timestamp(), inference_id,
                               f"event-{inference_id}")


def ground_truth_record(label: int, inference_id: str) -> dict:
    """Model Monitor's merge format: the label of the record with that inference id."""
    return {"groundTruthData": {"data": str(int(label)), "encoding": "CSV"},
            "eventMetadata": {"eventId": inference_id}, "eventVersion": "0"}


def write_jsonl(path: str, records) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")


def monitor_window(work: str, number: int, baseline: str, lines, answers, labels,
                   first_record: int) -> list[dict]:
    """Write one window's capture and ground truth, run ``monitor`` on it; its violations."""
    from costaware.monitoring.job import run_monitor

    root = os.path.join(work, f"window-{number}")
    hour = (START + timedelta(hours=number)).strftime("%Y/%m/%d/%H")
    ids = [f"r{first_record + i}" for i in range(len(lines))]
    times = [START + timedelta(hours=number, seconds=i) for i in range(len(lines))]
    write_jsonl(os.path.join(root, "capture", "bench", "AllTraffic", hour, "capture.jsonl"),
                (capture_record(q, a, i, t) for q, a, i, t in zip(lines, answers, ids, times)))
    write_jsonl(os.path.join(root, "ground-truth", hour, "labels.jsonl"),
                (ground_truth_record(label, i) for label, i in zip(labels, ids)))
    env = {"dataset_source": os.path.join(root, "capture"),
           "ground_truth_source": os.path.join(root, "ground-truth"),
           "output_path": os.path.join(root, "output"),
           "baseline_statistics": os.path.join(baseline, "statistics.json"),
           "baseline_constraints": os.path.join(baseline, "constraints.json"),
           "dataset_format": json.dumps({"sagemakerCaptureJson": {}}),
           "SAGEMAKER_BASE_DIR": os.path.join(work, "opt-ml")}
    result = run_monitor(env)
    counts = result["counts"]["counts"]
    if counts.get("capture rows matched to ground truth") != len(lines):
        raise RuntimeError(f"window {number}: not every record was read and labelled: {counts}")
    return result["violations"]


# --------------------------------------------------------------------------------------------------
# One seed


def one_seed(job) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    from costaware.model.artifact import load
    from costaware.serving.invocation import Invocations

    dataset, seed = job
    loader, n_train, n_test, w, shifted = DATASETS[dataset]
    x, y, costs = loader()
    names = feature_names(dataset)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    parts = {"train": order[:n_train], "test": order[n_train:n_train + n_test],
             "pool": order[n_train + n_test:]}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as work:
        model_dir = train(os.path.join(work, "tree"), seed, x, y, costs, names, parts)
        baseline = os.path.join(model_dir, "baseline")
        invocations = Invocations(load(model_dir))
        pool = parts["pool"]
        varying = [k for k in bench_decisions.CELLS if np.ptp(costs[k]) > 0]
        rows = np.column_stack([x[pool]] + [costs[k][pool] for k in varying])
        lines, answers = answer_rows(invocations, rows)
        grown = None
        if varying:
            scaled = rows.copy()
            scaled[:, x.shape[1]:] *= COST_GROWTH
            grown = answer_rows(invocations, scaled)
        labels = y[pool]
        trained_s = time.perf_counter() - t0

        counter = itertools.count()

        def monitor(pick, flipped=None, answered=(lines, answers)) -> list[dict]:
            number = next(counter)
            lab = labels[pick] if flipped is None else np.where(flipped, 1 - labels[pick],
                                                                labels[pick])
            return monitor_window(work, number, baseline, [answered[0][i] for i in pick],
                                  [answered[1][i] for i in pick], lab, number * w)

        clean_picks = [rng.choice(len(pool), w, replace=False) for _ in range(CLEAN_WINDOWS)]
        clean = [monitor(pick) for pick in clean_picks]

        rank = pd.Series(x[pool, names.index(shifted)]).rank().to_numpy()
        positive = labels == 1
        weights = {"covariate": rank / rank.sum(),
                   "base rate x2": np.where(positive, 2.0, 1.0) / (2 * positive.sum()
                                                                   + (~positive).sum())}
        detected = {}
        for kind, expected in KINDS.items():
            if kind == "costs x1.5" and grown is None:
                continue
            windows = []  # each drifted window's violations: (check, feature)
            for _ in range(DRIFT_WINDOWS):
                pick = rng.choice(len(pool), w, replace=False, p=weights.get(kind))
                found = monitor(pick,
                                flipped=(rng.random(w) < FLIP_SHARE
                                         if kind.startswith("labels") else None),
                                answered=grown if kind == "costs x1.5" else (lines, answers))
                windows.append([(v["constraint_check_type"], v["feature_name"]) for v in found])
            detected[kind] = windows
    return {"dataset": dataset, "seed": seed, "window": w, "pool": len(pool),
            "clean": [[(v["constraint_check_type"], v["feature_name"]) for v in found]
                      for found in clean],
            "detected": detected, "train_seconds": trained_s,
            "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------------
# Tables


def seed_interval(per_seed: np.ndarray, draws: int = 2000) -> tuple[float, float]:
    """A 95% percentile interval of the share of windows that fired, resampling whole seeds (a
    seed's windows share its baseline and pool, so they are not independent of each other)."""
    rng = np.random.default_rng(0)
    means = per_seed[rng.integers(0, len(per_seed), (draws, len(per_seed)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def first_flag(windows: list, w: int, wanted) -> tuple[float, list[str]]:
    """The record ending the first drifted window with a violation ``wanted`` accepts (inf:
    none), and the checks that fired in that window."""
    for j, found in enumerate(windows):
        if any(wanted(check, feature) for check, feature in found):
            return (PRE_WINDOWS + j + 1) * w, sorted({check for check, _ in found})
    return math.inf, []


def detection_table(dataset: str, results: list[dict]) -> list[str]:
    w = results[0]["window"]
    shifted = DATASETS[dataset][4]
    horizon = (PRE_WINDOWS + DRIFT_WINDOWS) * w
    show = (lambda v: f">{horizon:,}" if math.isinf(v) else f"{int(v):,}")
    out = [f"\n{dataset}: drift from record R = {PRE_WINDOWS * w:,} (windows of {w} records; "
           f"{len(results)} seeds; pool {results[0]['pool']:,} rows)",
           "| drift | checks that should fire | flagged (seeds) | record flagged: median "
           "(quartiles) | checks that fired in the flagging window (seeds) | first violation of "
           "any check: median |",
           "| --- | --- | --- | --- | --- | --- |"]
    for kind, expected in KINDS.items():
        runs = [r["detected"][kind] for r in results if kind in r["detected"]]
        if not runs:
            continue
        wanted = (lambda c, f, e=expected, k=kind: c in e and (k != "covariate" or f == shifted))
        flags = [first_flag(windows, w, wanted) for windows in runs]
        records = np.array([record for record, _ in flags])
        anything = np.array([first_flag(windows, w, lambda c, f: True)[0] for windows in runs])
        q1, med, q3 = np.percentile(records, [25, 50, 75], method="lower")
        fired: dict[str, int] = {}
        for _, checks in flags:
            for check in checks:
                fired[check] = fired.get(check, 0) + 1
        listed = ", ".join(f"{c} {n}" for c, n in sorted(fired.items(), key=lambda t: -t[1]))
        target = " or ".join(expected) + (f" ({shifted})" if kind == "covariate" else "")
        out.append(f"| {kind} | {target} | {int(np.isfinite(records).sum())}/{len(runs)} | "
                   f"{show(med)} ({show(q1)}, {show(q3)}) | {listed} | "
                   f"{show(np.percentile(anything, 50, method='lower'))} |")
    return out


def false_alarm_table(dataset: str, results: list[dict]) -> list[str]:
    from costaware.monitoring.checks import CHECKS

    windows = [found for r in results for found in r["clean"]]
    n = len(windows)
    out = [f"\n{dataset}: false alarms in {n} windows without drift ({len(results)} seeds x "
           f"{CLEAN_WINDOWS})",
           "| constraint type | windows fired (any feature) | share (95%, seeds resampled) | "
           "worst single constraint: share |", "| --- | --- | --- | --- |"]
    for check in CHECKS:
        per_seed = np.array([np.mean([any(c == check for c, _ in found) for found in r["clean"]])
                             for r in results])
        fired = int(round(per_seed.sum() * CLEAN_WINDOWS))
        per_feature: dict[str, int] = {}
        for found in windows:
            for name in {f for c, f in found if c == check}:
                per_feature[name] = per_feature.get(name, 0) + 1
        worst = max(per_feature.items(), key=lambda t: t[1]) if per_feature else None
        lo, hi = seed_interval(per_seed)
        out.append(f"| {check} | {fired} | {fired / n:.1%} ({lo:.1%}-{hi:.1%}) | "
                   + (f"{worst[1] / n:.1%} ({worst[0]})" if worst else "-") + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--datasets", default="german_credit,bank")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="write every seed's results here")
    args = parser.parse_args()
    datasets = args.datasets.split(",")
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {sorted(DATASETS)}")
    import xgboost
    print(f"xgboost {xgboost.__version__}, numpy {np.__version__}; {args.seeds} seeds per data "
          f"set, {args.jobs} processes")
    jobs = [(d, s) for s in range(args.seeds) for d in reversed(datasets)]  # the big ones first
    t0 = time.perf_counter()
    with Pool(args.jobs) as pool:
        results = pool.map(one_seed, jobs, chunksize=1)
    if args.json:  # before the tables, so that the run is kept whatever happens to them
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"seeds": results}, handle, indent=1)
    for dataset in datasets:
        mine = sorted((r for r in results if r["dataset"] == dataset), key=lambda r: r["seed"])
        print("\n".join(detection_table(dataset, mine)))
        print("\n".join(false_alarm_table(dataset, mine)))
        print(f"({np.mean([r['seconds'] for r in mine]):.0f} s per seed, of which "
              f"{np.mean([r['train_seconds'] for r in mine]):.0f} s training and answering)")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
