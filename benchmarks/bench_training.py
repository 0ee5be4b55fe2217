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

``--memory``, instead: the peak resident memory of the real ``costaware train --base-dir`` (a
child process, its ``VmHWM`` polled) on generated CSV channels (issue #28's job:
2,000,000 train rows, 311 MiB, and 200,000 validation rows, 35 MiB, of a 0/1 label and
20 features; 40 rounds, depth 6, everything else the defaults, so cross-fitting on), beside two
baselines from the same run: the float32 matrix of every row's 21 values, and the peak of a child
that only imports what ``train`` imports. Goal: peak <= 3x (matrix + imports); figures in
docs/benchmarks.md.

    python benchmarks/bench_training.py [--rows 1000000] [--features 30] [--rounds 100]
    python benchmarks/bench_training.py --memory [--rows 2200000] [--features 20] [--rounds 40]

``--evaluation-memory``, instead (issue #28): the peak memory (``tracemalloc``) of K >= 3's
steps after the trees on ``--rows`` held-out rows of K = ``--classes`` classes (2,000,000 and 4:
their probabilities alone are 61 MiB), a cost cell read per row and a facet with the bounded rule
(``max_abs_dppl`` 0.1): the calibrator's fit and probabilities from float32 margins, the end of
training's metrics (``bayes_metrics``: every round's metrics, on
every held-out row), the calibrator choice's realised cost (``bayes_cost``), the rule's fit
(``policy``) and the channel's evaluation (``evaluate``), each above the arrays it is given.

    python benchmarks/bench_training.py --evaluation-memory [--rows 2000000] [--classes 4]

``--external``, instead (issue #28): training from external memory against training in memory.

1. The trees alone: costaware's boosting loop (the model alone, the custom objective) on an
   in-memory ``DMatrix`` and on an ``ExtMemQuantileDMatrix`` fed the same rows in batches of
   ``BATCH_ROWS`` from memory (the pages cached on disk, the page cache warm): rows x rounds per
   second and the ratio (goal <= 2x).
2. The whole job (the real ``costaware train``, generated CSV channels train, validation and test,
   ``calibration_data validation`` so that both hold out the same rows) at each of ``--sizes``
   rows: peak resident memory in memory and from external memory, and per row (resident, and
   anonymous: what a memory limit cannot reclaim, where the resident pages of files, XGBoost's
   pages on disk among them, are the kernel's to drop); beside them the
   baseline, XGBoost alone from external memory on as many rows, generated batch by batch (its
   built-in objective, the same rounds and depth: ``RAW_EXTERNAL``), and the bytes each row more
   costs each; then at the first size with each of ``--widths`` features (the data grown by
   its columns instead).
3. With ``--limit MiB``: the largest size again from external memory inside a memory cgroup of
   that limit (as root; cgroup v1 or v2), beside XGBoost alone from external memory (a numpy
   objective, as many generated rows) inside the same limit and the in-memory job without a
   limit: peak, the cgroup's own peak, and the two models on the test channel (AUC; decisions
   agreeing).

    python benchmarks/bench_training.py --external [--rows 2000000] [--features 20] [--rounds 40]
        [--sizes 500000,2000000] [--widths 20,80]
        [--limit 768 [--limit-rows 6400000] [--limit-only]]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import xgboost as xgb
from sklearn.datasets import make_classification
from sklearn.metrics import log_loss, roc_auc_score

from costaware.cluster import SOLO
from costaware.config import hyperparameters
from costaware.data.channel_files import Dataset
from costaware.decisions.costs import CostMatrix, RowCosts
from costaware.training import pipeline
from costaware.training.boosting import Boosting, Member, sliced
from costaware.training.objective import make_objective

# whole jobs (costs 1:20, as the weights above): the defaults (from 500,000 fit rows on: 2 folds
# and their average), and the other ways to cross-fit
JOBS = {"defaults": {},
        "5 folds, refit": {"cross_fit_folds": "5", "served_model": "refit"},
        "5 folds, fold_average (the defaults below 500,000 rows)": {
            "cross_fit_folds": "5", "served_model": "fold_average"},
        "2 folds, refit": {"cross_fit_folds": "2", "served_model": "refit"}}
TEST_ROWS = 200_000  # generated beside the training rows; what each job's model is scored on
TABLE_DEFAULTS = {"rows": 1_000_000, "features": 30, "rounds": 100}
# issue #28's in-memory job: 2.2M rows x 21 values (a 176 MiB float32 matrix), 40 rounds
MEMORY_DEFAULTS = {"rows": 2_200_000, "features": 20, "rounds": 40}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, help="1,000,000 (--memory: 2,200,000, a tenth of them "
                        "the validation channel's)")
    parser.add_argument("--features", type=int, help="30 (--memory: 20)")
    parser.add_argument("--rounds", type=int, help="100 (--memory: 40)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--subsample", type=float, default=1.0,
                        help="row sampling for all three (< 1: costaware grows a booster per round)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the table: time the objective per round, profile the "
                        "default job and time shared quantile cuts")
    parser.add_argument("--external", action="store_true",
                        help="instead of the table: external memory against in memory (the "
                        "trees' speed; whole jobs' peak memory at --sizes; --limit)")
    parser.add_argument("--sizes", default="500000,2000000",
                        help="--external: the whole job's train rows, comma-separated")
    parser.add_argument("--widths", default="20,80",
                        help="--external: features of the whole job at the first of --sizes rows, "
                        "comma-separated (the data grown by columns, not rows)")
    parser.add_argument("--limit", type=int, default=0,
                        help="--external: MiB of a memory cgroup a job of --limit-rows runs in")
    parser.add_argument("--limit-rows", type=int, default=6_400_000,
                        help="--external --limit: train rows (6,400,000 x 21 values: 1 GB of CSV)")
    parser.add_argument("--limit-only", action="store_true",
                        help="--external: only the job inside the cgroup")
    parser.add_argument("--evaluation-memory", action="store_true",
                        help="instead of the table: the peak memory of K >= 3's metrics, rule "
                        "and decisions on --rows held-out rows (2,000,000) of --classes classes")
    parser.add_argument("--classes", type=int, default=4, help="--evaluation-memory: K (4)")
    parser.add_argument("--memory", action="store_true",
                        help="instead of the table: the peak resident memory of `costaware train` "
                        "on generated CSV channels, against the float32 matrix and the imports")
    args = parser.parse_args()
    if args.evaluation_memory:
        evaluation_memory(args.rows or 2_000_000, args.classes)
        return
    defaults = MEMORY_DEFAULTS if args.memory else TABLE_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.memory:
        memory(args.rows, args.features, args.rounds)
        return
    if args.external:
        external(args.rows, args.features, args.rounds,
                 [int(size) for size in args.sizes.split(",")],
                 [int(width) for width in args.widths.split(",")], args.limit, args.limit_rows,
                 args.limit_only)
        return

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
            boosting = Boosting.create(settings.xgboost_params(), settings.seed,
                                       sliced(dours, members), members)
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


# what the image's `train` imports before and while it trains: its entry point (XGBoost without
# scikit-learn), the toolkit's `train`, the training module, scikit-learn's isotonic regression
# (a calibrator candidate), the report's modules (matplotlib) and the monitoring baseline's
TRAIN_IMPORTS = ("from costaware.lean_imports import xgboost_without_sklearn; "
                 "xgboost_without_sklearn(); "
                 "import sagemaker_training.cli.train, costaware.sagemaker.entry, "
                 "costaware.sagemaker.training_job, scipy.optimize, costaware.report.html, "
                 "costaware.monitoring.baseline, threadpoolctl")
# The baseline of external memory's bytes a row: XGBoost itself from external memory, the rows
# generated a batch of 65,536 at a time (no reader: a reader's own memory is not XGBoost's; pyarrow's
# streaming CSV reader grew by about 225 bytes a row here), its built-in binary:logistic, depth 6,
# the given rounds: what XGBoost keeps a row (label, margins, gradients, row indices); with
# "custom", the same loss as a numpy objective (what any custom loss adds: the margins and
# gradients handed between XGBoost and Python every round). Arguments: rows, features, rounds
# [custom]; or "imports" alone: import only.
RAW_EXTERNAL = """
import sys, tempfile
import numpy as np, xgboost as xgb
if sys.argv[1] != "imports":
    rows, features, rounds = (int(value) for value in sys.argv[1:4])

    class Batches(xgb.DataIter):
        def __init__(self, cache):
            self.start = 0
            super().__init__(cache_prefix=cache)

        def reset(self):
            self.start = 0

        def next(self, input_data):
            if self.start >= rows:
                return False
            n = min(65536, rows - self.start)
            x = np.random.default_rng(self.start).normal(size=(n, features)).astype(np.float32)
            input_data(data=x, label=(x[:, 0] > 0).astype(np.float32))
            self.start += n
            return True

    def logistic(margin, matrix):  # ("custom": the same loss as a numpy objective, float32)
        p = 1.0 / (1.0 + np.exp(-margin))
        return p - matrix.get_label(), p * (1.0 - p)

    with tempfile.TemporaryDirectory() as cache:
        matrix = xgb.ExtMemQuantileDMatrix(Batches(cache + "/x"), max_bin=256)
        xgb.train({"tree_method": "hist", "max_depth": 6, "objective": "binary:logistic"},
                  matrix, rounds, obj=logistic if sys.argv[4:] == ["custom"] else None)
        del matrix
"""
# The job at sys.argv[1] again, in this process, its resident memory read every 10 ms: the peak and
# the end of each step (a step ends at a log line; the rounds' lines are one step), in MiB.
MEMORY_STEPS = """
import sys, threading, time
from costaware.lean_imports import xgboost_without_sklearn
xgboost_without_sklearn()  # (as the train entry point does)
from costaware.sagemaker import training_job

def resident():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))

samples, marks, done = [], [], threading.Event()

def sample():
    while not done.is_set():
        samples.append((time.perf_counter(), resident()))
        time.sleep(0.01)

def log(line):
    step = "the rounds" if line.startswith("[") and not line.startswith("[final]") else line
    marks.append((time.perf_counter(), step.replace("\t", " ").split(";")[0].split(":")[0][:60]))

threading.Thread(target=sample, daemon=True).start()
marks.append((time.perf_counter(), "start"))
training_job.run(sys.argv[1], log=log)
marks.append((time.perf_counter(), "the end"))
done.set()
steps = []
for (begin, _), (end, name) in zip(marks, marks[1:]):
    inside = [value for at, value in samples if begin <= at <= end]
    if not inside:
        continue
    if steps and steps[-1][0] == name:
        steps[-1][1] = max(steps[-1][1], max(inside))
        steps[-1][2] = inside[-1]
    else:
        steps.append([name, max(inside), inside[-1]])
for name, peak, last in steps:
    print(f"    {peak:8.1f} peak {last:8.1f} at the end   up to: {name}")
"""
MEMORY_GOAL = 3.0  # issue #28: peak <= 3x (the float32 matrix + the imports)


def memory(rows: int, features: int, rounds: int) -> None:
    """The peak resident memory of the real ``costaware train --base-dir`` on generated CSV
    channels (a tenth of ``rows`` the validation channel's), of a child that only imports what
    ``train`` imports, and of the same job on 1,000 rows (:func:`peak_rss`)."""
    with tempfile.TemporaryDirectory(prefix="bench-training-memory-") as scratch:
        big = os.path.join(scratch, "job")
        sizes = write_job(big, rows, features, rounds)
        tiny = os.path.join(scratch, "tiny")
        write_job(tiny, 1_000, features, rounds)
        imports = peak_rss([sys.executable, "-c", TRAIN_IMPORTS])
        tiny_peak = peak_rss(train_command(tiny))
        start = time.perf_counter()
        peak = peak_rss(train_command(big))
        seconds = time.perf_counter() - start
        steps = subprocess.run([sys.executable, "-c", MEMORY_STEPS, big], capture_output=True,
                               text=True, check=True).stdout
    matrix = rows * (features + 1) * 4  # every row's label and features, float32
    mib = 2.0 ** 20
    print(f"{rows:,} rows x {features + 1} values (train {sizes['train'] / mib:.1f} MiB, "
          f"validation {sizes['validation'] / mib:.1f} MiB of CSV), {rounds} rounds, depth 6, "
          f"the other hyperparameters their defaults; XGBoost {xgb.__version__}")
    print(f"  the float32 matrix                        {matrix / mib:8.1f} MiB")
    print(f"  a process importing what train imports    {imports / mib:8.1f} MiB  (peak RSS)")
    print(f"  costaware train, 1,000 rows               {tiny_peak / mib:8.1f} MiB  (peak RSS)")
    print(f"  costaware train, {rows:,} rows          {peak / mib:8.1f} MiB  (peak RSS; "
          f"{seconds:.1f} s)")
    ratio = peak / (matrix + imports)
    print(f"peak / (matrix + imports) = {ratio:.2f}x, goal <= {MEMORY_GOAL:g}x: "
          f"{'met' if ratio <= MEMORY_GOAL else 'MISSED'}; (peak - imports) / matrix = "
          f"{(peak - imports) / matrix:.2f}x")
    print("where it goes (the same job again, in one process that reads its own resident memory "
          "every 10 ms: the peak and the end of each step, a step ending at a log line):")
    print(steps, end="")


def write_job(base: str, rows: int, features: int, rounds: int, test: int = 0,
              hyperparameters: dict | None = None, validation: int | None = None) -> dict:
    """A SageMaker-shaped tree at ``base``: CSV channels train (nine tenths of ``rows``) and
    validation (a tenth) without a header, a 0/1 label (``P(y = 1) = sigmoid(x . beta - 1)``)
    and ``features`` standard normal features (5 decimals, the last quarter 4); seeded; ``test``
    rows more in a test channel; ``validation``: that many validation rows beside ``rows`` train
    rows instead. Returns each channel's bytes."""
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    config = os.path.join(base, "input", "config")
    os.makedirs(config)
    held = rows // 10 if validation is None else validation
    channels = {"train": rows - (held if validation is None else 0), "validation": held,
                **({"test": test} if test else {})}
    for name, content in (
            ("hyperparameters.json", {"num_round": str(rounds), "max_depth": "6",
                                      **(hyperparameters or {})}),
            ("inputdataconfig.json", {name: {"ContentType": "text/csv"} for name in channels}),
            ("resourceconfig.json", {"current_host": "algo-1", "hosts": ["algo-1"]})):
        with open(os.path.join(config, name), "w", encoding="utf-8") as handle:
            json.dump(content, handle)
    rng = np.random.default_rng(0)
    beta = np.linspace(1.5, -1.0, features)
    decimals = np.where(np.arange(features) < features - features // 4, 5, 4)
    sizes = {}
    for name, count in channels.items():
        directory = os.path.join(base, "input", "data", name)
        os.makedirs(directory)
        path = os.path.join(directory, f"{name}.csv")
        schema = pa.schema([("label", pa.int8())]
                           + [(f"f{j}", pa.float64()) for j in range(features)])
        options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
        with pa_csv.CSVWriter(path, schema, write_options=options) as writer:
            for start in range(0, count, 100_000):
                n = min(100_000, count - start)
                x = np.stack([np.round(rng.normal(size=n), d) for d in decimals], axis=1)
                y = (rng.random(n) < 1 / (1 + np.exp(-(x @ beta - 1.0)))).astype(np.int8)
                writer.write_batch(pa.record_batch([y, *x.T], schema=schema))
        sizes[name] = os.path.getsize(path)
    return sizes


def external(rows: int, features: int, rounds: int, sizes: list[int], widths: list[int],
             limit_mib: int, limit_rows: int, limit_only: bool) -> None:
    """``--external``: see the module docstring."""
    if limit_only:
        with tempfile.TemporaryDirectory(prefix="bench-training-external-") as scratch:
            limited_job(scratch, limit_rows, features, rounds, limit_mib)
        return
    from costaware.data.external_features import BATCH_ROWS
    from costaware.training.external_memory import FeatureBatches, PageCache

    print(f"1. the trees: {rows:,} rows x {features} features, {rounds} rounds, depth 6, "
          f"costaware's loop and objective; XGBoost {xgb.__version__}")
    x, y = make_classification(n_samples=rows, n_features=features, n_informative=10,
                               weights=[0.9], random_state=0)
    x = x.astype(np.float32)
    weight = np.where(y == 1, 20.0, 1.0)
    weight /= weight.mean()
    settings = hyperparameters.parse({"max_depth": "6", "eta": "0.3", "seed": "0",
                                      "num_round": str(rounds)})
    base = float(np.sum(weight * y) / np.sum(weight))

    class InMemoryBatches:  # (the rows in BATCH_ROWS slices, as the external path reads them)
        def __init__(self):
            self.shape = x.shape

        def batches(self):
            for start in range(0, rows, BATCH_ROWS):
                yield x[start:start + BATCH_ROWS]

    def grow(matrix) -> float:
        members = [Member(make_objective(y, weight), base)]
        return timed_rounds(Boosting.create(settings.xgboost_params(), 0,
                                            sliced(matrix, members), members), rounds)

    pages = PageCache()
    try:
        timings = {"in memory (DMatrix)": [], "external memory (ExtMemQuantileDMatrix)": []}
        in_memory = xgb.DMatrix(x, label=y)
        on_disk = pages.holds(xgb.ExtMemQuantileDMatrix(
            FeatureBatches(InMemoryBatches(), y, pages.prefix("bench")), max_bin=256))
        for _ in range(2):  # in turn: a noisy neighbour hurts both alike; best of 2
            timings["in memory (DMatrix)"].append(grow(in_memory))
            timings["external memory (ExtMemQuantileDMatrix)"].append(grow(on_disk))
    finally:
        pages.close()
    best = {name: min(t) for name, t in timings.items()}
    baseline = best["in memory (DMatrix)"]
    for name, seconds in best.items():
        print(f"  {name:42s} {seconds:7.2f} s  {rows * rounds / seconds / 1e6:6.2f}M row-rounds/s"
              f"  {seconds / baseline:5.2f}x")
    ratio = best["external memory (ExtMemQuantileDMatrix)"] / baseline
    print(f"  external / in memory = {ratio:.2f}x, goal <= 2x: {'met' if ratio <= 2 else 'MISSED'}")
    cross_fitting_from_disk(x, y, weight, base, settings, rounds, baseline)

    mib = 2.0 ** 20
    print(f"\n2. the whole job (costaware train; calibration_data validation; {rounds} rounds, "
          f"depth 6; {features} features): peak resident memory")
    with tempfile.TemporaryDirectory(prefix="bench-training-external-") as scratch:
        imports = peak_rss([sys.executable, "-c", TRAIN_IMPORTS])
        raw_imports = peak_rss([sys.executable, "-c", RAW_EXTERNAL, "imports"])
        print(f"  a process importing what train imports: {imports / mib:.1f} MiB; importing "
              f"xgboost alone: {raw_imports / mib:.1f} MiB")
        peaks_of = {}
        for size in sizes:
            peaks_of[size] = {}
            for mode in ("false", "true", "xgboost", "xgboost-custom"):
                job = os.path.join(scratch, f"{size}-{mode}")
                if mode in ("false", "true"):
                    channel_sizes = write_job(job, size, features, rounds, hyperparameters={
                        "calibration_data": "validation", "external_memory": mode})
                    command = train_command(job)
                else:  # (XGBoost alone generates its rows)
                    command = ([sys.executable, "-c", RAW_EXTERNAL, str(size), str(features),
                                str(rounds)] + (["custom"] if mode == "xgboost-custom" else []))
                start = time.perf_counter()
                peaks_of[size][mode] = peaks(command), time.perf_counter() - start
                shutil.rmtree(job, ignore_errors=True)
            total = sum(channel_sizes.values())
            shown = {mode: f"{rss / mib:7.1f} MiB, anonymous {anonymous / mib:6.1f} "
                           f"({seconds:5.1f} s)"
                     for mode, ((rss, anonymous), seconds) in peaks_of[size].items()}
            print(f"  {size:>10,} rows ({total / mib:7.1f} MiB of CSV): in memory "
                  f"{shown['false']}; external {shown['true']}; XGBoost alone from external "
                  f"memory (as many rows, generated) {shown['xgboost']}; with a numpy objective "
                  f"{shown['xgboost-custom']}")
        if len(sizes) > 1:
            low, high = sizes[0], sizes[-1]
            for which, name in ((0, "resident"), (1, "anonymous")):
                slope = {mode: (peaks_of[high][mode][0][which] - peaks_of[low][mode][0][which])
                         / (high - low) for mode in peaks_of[high]}
                print(f"  each row more ({low:,} to {high:,} rows), {name}: in memory "
                      f"{slope['false']:.0f} bytes, external {slope['true']:.0f} bytes, XGBoost "
                      f"alone {slope['xgboost']:.0f} bytes, with a numpy objective "
                      f"{slope['xgboost-custom']:.0f} bytes")
        if len(widths) > 1:
            by_width(scratch, sizes[0], widths, rounds)
        if limit_mib:
            limited_job(scratch, limit_rows, features, rounds, limit_mib)


def by_width(scratch: str, rows: int, widths: list[int], rounds: int) -> None:
    """The whole job's peak memory at ``rows`` train rows of each of ``widths`` features, in
    memory and from external memory, beside XGBoost alone from external memory on as many
    generated rows (a numpy objective): the data grown by its columns, which external memory
    keeps in the files and XGBoost's pages on disk, not by its rows (whose per-row state XGBoost
    itself keeps)."""
    mib = 2.0 ** 20
    found = {}
    for width in widths:
        found[width] = {}
        for mode in ("false", "true"):
            job = os.path.join(scratch, f"width-{width}-{mode}")
            channel_sizes = write_job(job, rows, width, rounds, hyperparameters={
                "calibration_data": "validation", "external_memory": mode})
            found[width][mode] = peaks(train_command(job))
            shutil.rmtree(job, ignore_errors=True)
        # the real limit beside them: XGBoost alone from external memory, a numpy objective
        found[width]["xgboost"] = peaks([sys.executable, "-c", RAW_EXTERNAL, str(rows),
                                         str(width), str(rounds), "custom"])
        found[width]["csv"] = sum(channel_sizes.values())
        shown = {mode: f"{found[width][mode][0] / mib:7.1f} MiB (anonymous "
                       f"{found[width][mode][1] / mib:6.1f})"
                 for mode in ("false", "true", "xgboost")}
        print(f"  {rows:>10,} rows x {width:3d} features ({found[width]['csv'] / mib:7.1f} MiB of "
              f"CSV): in memory {shown['false']}, external {shown['true']}; XGBoost alone from "
              f"external memory with a numpy objective {shown['xgboost']}")
    low, high = widths[0], widths[-1]

    def grown(mode):
        return (f"{(found[high][mode][0] - found[low][mode][0]) / mib:+.1f} MiB (anonymous "
                f"{(found[high][mode][1] - found[low][mode][1]) / mib:+.1f})")

    print(f"  from {low} to {high} features "
          f"({(found[high]['csv'] - found[low]['csv']) / mib:+.1f} MiB of CSV): in memory "
          f"{grown('false')}, external {grown('true')}, XGBoost alone {grown('xgboost')}")


def timed_rounds(boosting, rounds: int) -> float:
    """Seconds ``boosting`` takes to grow ``rounds`` rounds."""
    start = time.perf_counter()
    for _ in range(rounds):
        boosting.round()
    return time.perf_counter() - start


def cross_fitting_from_disk(x, y, weight, base: float, settings, rounds: int,
                            one_model: float) -> None:
    """What cross-fitting would cost from external memory (issue #28 asks it measured; the
    external path holds a share out instead): two fold models, each on half the rows (the
    other half its held-out rows), grown in lockstep, each on its own pages (external memory's
    matrices cannot be sliced, so each fold's rows are quantised from the batches again), against
    the same two in memory (each on a ``QuantileDMatrix`` of its rows, as the in-memory path
    grows them) and against one model on every row in memory (``one_model`` seconds)."""
    from costaware.data.external_features import BATCH_ROWS
    from costaware.training.external_memory import FeatureBatches, PageCache

    half = np.arange(len(y)) % 2

    class HalfBatches:  # (fold k's training rows of each batch of rows)
        def __init__(self, k):
            self.k = k
            self.shape = (int((half == k).sum()), x.shape[1])

        def batches(self):
            for start in range(0, len(y), BATCH_ROWS):
                yield x[start:start + BATCH_ROWS][half[start:start + BATCH_ROWS] == self.k]

    def grow(matrices) -> float:
        members = [Member(make_objective(y[half == k], weight[half == k]), base) for k in (0, 1)]
        return timed_rounds(Boosting.create(settings.xgboost_params(), 0,
                                            [(matrix, None) for matrix in matrices], members),
                            rounds)

    pages = PageCache()
    try:
        start = time.perf_counter()
        on_disk = [pages.holds(xgb.ExtMemQuantileDMatrix(
            FeatureBatches(HalfBatches(k), y[half == k], pages.prefix(f"half-{k}")),
            max_bin=256)) for k in (0, 1)]
        paging = time.perf_counter() - start
        in_memory = [xgb.QuantileDMatrix(x[half == k], label=y[half == k], max_bin=256)
                     for k in (0, 1)]
        times = {"memory": [], "disk": []}
        for _ in range(2):  # in turn; best of 2
            times["memory"].append(grow(in_memory))
            times["disk"].append(grow(on_disk))
    finally:
        pages.close()
    memory, disk = min(times["memory"]), min(times["disk"])
    print(f"  cross-fitting's trees (2 fold models, each on half the rows): in memory "
          f"{memory:.2f} s, from external memory {disk:.2f} s ({disk / memory:.2f}x; "
          f"{disk / one_model:.2f}x one model on every row in memory), its pages built in "
          f"{paging:.2f} s")


def failure(exc: SystemExit) -> str:
    """The line of :func:`peak_rss`'s message that says how a command ended (a script given with
    ``-c`` would otherwise fill the first line)."""
    lines = str(exc).splitlines()
    return next((line.strip() for line in lines if "exited with" in line), lines[0])[-120:]


def limited_job(scratch: str, rows: int, features: int, rounds: int, limit_mib: int) -> None:
    """The job (``rows`` train rows, 200,000 validation and test rows) from external memory
    inside a memory cgroup of ``limit_mib``, then in memory inside the same limit (expected to
    fail: the point of external memory) and without a limit; both models scored on the test
    channel."""
    from costaware.model import artifact

    mib = 2.0 ** 20
    test_rows = 200_000
    jobs = {}
    for mode in ("true", "false"):
        jobs[mode] = os.path.join(scratch, f"limited-{mode}")
        sizes = write_job(jobs[mode], rows, features, rounds, test=test_rows, hyperparameters={
            "calibration_data": "validation", "external_memory": mode, "report": "false"},
            validation=200_000)
    total = sum(sizes.values())
    print(f"\n3. {rows:,} rows ({total / mib:,.0f} MiB of CSV: train "
          f"{sizes['train'] / mib:,.0f}, validation {sizes['validation'] / mib:,.0f}, test "
          f"{sizes['test'] / mib:,.0f}); external memory inside a {limit_mib} MiB memory cgroup:")
    start = time.perf_counter()
    try:
        peak, cgroup_peak = peak_in_cgroup(train_command(jobs["true"]), limit_mib * 2**20)
        print(f"  from external memory: finished in {time.perf_counter() - start:.0f} s, peak "
              f"RSS {peak / mib:.1f} MiB, the cgroup's peak (with the page cache it may "
              f"reclaim) {cgroup_peak / mib:.1f} MiB")
        finished = True
    except SystemExit as exc:
        print(f"  from external memory: failed after {time.perf_counter() - start:.0f} s "
              f"({failure(exc)})")
        finished = False
    # the real limit beside it: XGBoost alone from external memory on as many rows, generated (no
    # reader), with the same loss as a numpy objective, in the same cgroup
    try:
        start = time.perf_counter()
        peak, cgroup_peak = peak_in_cgroup(
            [sys.executable, "-c", RAW_EXTERNAL, str(rows), str(features), str(rounds), "custom"],
            limit_mib * 2**20)
        print(f"  XGBoost alone from external memory (a numpy objective, generated rows) inside "
              f"the same limit: finished in {time.perf_counter() - start:.0f} s, peak RSS "
              f"{peak / mib:.1f} MiB, the cgroup's peak {cgroup_peak / mib:.1f} MiB")
    except SystemExit as exc:
        print(f"  XGBoost alone from external memory (a numpy objective, generated rows) inside "
              f"the same limit: failed ({failure(exc)})")
    try:
        peak_in_cgroup(train_command(jobs["false"]), limit_mib * 2**20)
        print(f"  in memory inside the same limit: finished")
    except SystemExit as exc:
        print(f"  in memory inside the same limit: failed ({failure(exc)})")
    start = time.perf_counter()
    peak = peak_rss(train_command(jobs["false"]))
    print(f"  in memory, no limit: {time.perf_counter() - start:.0f} s, peak RSS {peak / mib:.1f} MiB")
    if not finished:
        return
    test = np.loadtxt(os.path.join(jobs["true"], "input", "data", "test", "test.csv"),
                      delimiter=",", dtype=np.float64)
    label, x = test[:, 0].astype(np.int8), test[:, 1:].astype(np.float32)
    decided = {}
    for mode, name in (("true", "external"), ("false", "in memory")):
        model = artifact.load(os.path.join(jobs[mode], "model"))
        p = model.policy.probability(model.margin(x))
        decided[name] = model.policy.decide(p, RowCosts.constant(model.policy.costs, len(p)))[0]
        print(f"  {name:10s} test AUC {roc_auc_score(label, p):.5f}")
    agree = np.mean(decided["external"] == decided["in memory"])
    print(f"  decisions agreeing on the {len(label):,} test rows: {agree:.4%} (goal >= 99.9%)")


def peak_in_cgroup(command: list[str], limit: int) -> tuple[int, int]:
    """Run ``command`` in a new memory cgroup of ``limit`` bytes below this process's own (v1
    ``memory.limit_in_bytes`` or v2 ``memory.max``; needs root): ``(peak RSS, the cgroup's peak
    usage)``. A job killed by the limit raises."""
    own = open("/proc/self/cgroup", encoding="ascii").read().splitlines()
    v1 = next((line.split(":", 2)[2] for line in own if ":memory:" in line), None)
    if v1 is not None:
        group = f"/sys/fs/cgroup/memory{v1.rstrip('/')}/costaware-bench-{os.getpid()}"
        limit_file, peak_file = "memory.limit_in_bytes", "memory.max_usage_in_bytes"
    else:
        v2 = next(line.split(":", 2)[2] for line in own if line.startswith("0::"))
        group = f"/sys/fs/cgroup{v2.rstrip('/')}/costaware-bench-{os.getpid()}"
        limit_file, peak_file = "memory.max", "memory.peak"
    os.makedirs(group)
    try:
        with open(os.path.join(group, limit_file), "w", encoding="ascii") as handle:
            handle.write(str(limit))
        procs = os.path.join(group, "cgroup.procs")

        def enter():
            with open(procs, "w", encoding="ascii") as handle:
                handle.write(str(os.getpid()))
        peak = peak_rss(command, preexec_fn=enter)
        with open(os.path.join(group, peak_file), encoding="ascii") as handle:
            return peak, int(handle.read())
    finally:
        os.rmdir(group)


def train_command(base: str) -> list[str]:
    return [sys.executable, "-m", "costaware.cli", "train", "--base-dir", base]


def evaluation_memory(rows: int, classes: int) -> None:
    """Peak ``tracemalloc`` bytes of each K >= 3 step after the trees (module docstring) above
    the arrays it is given, and per row; and its seconds (a run without ``tracemalloc``)."""
    import tracemalloc

    from costaware.decisions.multiclass import fit_temperature
    from costaware.training.channels import Channel
    from costaware.training.class_kinds import ManyClasses

    k = classes
    matrix = [[0 if i == j else 1 + (i + 2 * j) % 5 for j in range(k)] for i in range(k)]
    matrix[k - 1][0] = "loss_given_default"  # one cell read per row
    settings = hyperparameters.parse({
        "classes": json.dumps([f"c{i}" for i in range(k)]), "cost_matrix": json.dumps(matrix),
        "facet_column": "f", "facet_values_or_threshold": "[1]",
        "label_values_or_threshold": '["c0"]', "max_abs_dppl": "0.1",
        "fairness_metrics": "DPPL,DI"})
    rng = np.random.default_rng(0)
    label = rng.integers(0, k, rows).astype(np.int8)
    margins = (1.5 * np.eye(k)[label] + rng.normal(0, 1.5, (rows, k))).astype(np.float32)
    sensitive = rng.random(rows) < 0.3
    data = Dataset(np.zeros((rows, 1), np.float32), label, ["x"],
                   RowCosts.constant(CostMatrix(fp=1, fn=1), rows), "generated", False,
                   facet=sensitive.astype(np.float64),
                   cell_costs={(k - 1, 0): rng.lognormal(1, 1, rows)})
    channel = Channel("validation", data, sensitive)
    kind = ManyClasses(settings)
    calibrator = fit_temperature(margins, label)
    p = calibrator.probability(margins)
    every = np.ones(rows, dtype=bool)
    policy = kind.policy(channel, p, calibrator, data, SOLO, lambda line: None)
    steps = {
        "fit_temperature (the calibrator)": lambda: fit_temperature(margins, label),
        "probability (calibrated softmax)": lambda: calibrator.probability(margins),
        "bayes_metrics (a round's metrics)": lambda: kind.bayes_metrics(channel, p, 0, SOLO),
        "bayes_cost (calibrator choice)": lambda: kind.bayes_cost(channel, p, every),
        "policy (the bounded rule's fit)": lambda: kind.policy(channel, p, calibrator, data, SOLO,
                                                               lambda line: None),
        "evaluate (served and Bayes rules)": lambda: kind.evaluate(channel, p, policy, 0,
                                                                  SOLO, "model", []),
    }
    mib = 2**20
    print(f"{rows:,} held-out rows x K = {k} (the probabilities {p.nbytes / mib:.1f} MiB), a cost "
          "cell per row, a facet, max_abs_dppl 0.1: peak tracemalloc above the inputs, seconds")
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
        tracemalloc.start()
        result = step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        kept = f"  (its result {result.nbytes / mib:.1f} MiB)" if hasattr(result, "nbytes") else ""
        print(f"  {name:36s} {peak / mib:8.1f} MiB  {peak / rows:6.1f} bytes a row  "
              f"{seconds:6.2f} s{kept}")


def peak_rss(command: list[str], preexec_fn=None) -> int:
    """:func:`peaks`' peak resident bytes."""
    return peaks(command, preexec_fn)[0]


def peaks(command: list[str], preexec_fn=None) -> tuple[int, int]:
    """Run ``command`` (output discarded; a failure raises): ``(peak resident bytes, peak
    anonymous bytes)``. The first is the ``VmHWM`` of ``/proc/<pid>/status``, read every 10 ms
    until it exits (the last 10 ms may be missed); not ``wait4``'s ``ru_maxrss``: a child forked
    from this process starts with this process's high-water mark, which would hide a smaller
    child's. The second is the largest ``RssAnon`` seen at those reads: memory that only the
    process can give back, where the resident pages of files (shared libraries, XGBoost's page
    cache mapped from disk) are the kernel's to reclaim under a memory limit."""
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr,
                                 preexec_fn=preexec_fn)
        peak = anonymous = 0
        while child.poll() is None:
            now = resident(child.pid)
            peak, anonymous = max(peak, now["VmHWM"]), max(anonymous, now["RssAnon"])
            time.sleep(0.01)
        if child.returncode != 0:
            stderr.seek(0)
            raise SystemExit(f"{' '.join(command[:4])}... exited with {child.returncode}:\n"
                             + stderr.read().decode(errors="replace")[-2000:])
    return peak, anonymous


def resident(pid: int) -> dict:
    """A process's ``VmHWM`` (peak resident bytes so far) and ``RssAnon`` (0 once it has
    exited)."""
    found = {"VmHWM": 0, "RssAnon": 0}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                name = line.split(":", 1)[0]
                if name in found:
                    found[name] = int(line.split()[1]) * 1024  # (kB)
    except OSError:
        pass
    return found


if __name__ == "__main__":
    main()
