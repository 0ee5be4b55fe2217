"""The ``monitor`` job's reading speed and memory: records per second over ``--records`` data-capture
records (default one million) against ``pandas.read_json(path, lines=True)`` of the same files
(the baseline: what reading the JSON Lines costs at all), and its peak memory at three window sizes.

The records are an endpoint's: the demo's breast-cancer model is trained (``costaware train``,
``report=false``, ``--rounds`` rounds), each of the data set's 569 rows is sent as a one-row CSV
request with each of the three Accept types and answered by the server's own code
(:func:`costaware.serving.invocation.respond`, as ``costaware predict`` does), and these distinct
request/answer pairs are cycled, with fresh ids and times, into SageMaker's capture format and layout
(``{endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl``) by the server's own capture writer
(:mod:`costaware.data_capture`: CSV and JSON bodies as text). The ground truth (every record's real label, Model Monitor's merge format) is written too.

Each measurement runs in a fresh process; its peak is the resident memory's high-water mark
(``VmHWM``) from after the imports (reset there through ``/proc/self/clear_refs``) to the end:

* ``pandas``: ``pandas.read_json(path, lines=True)`` of every capture file in turn;
* ``monitor``: :func:`costaware.monitoring.job.run_monitor` with Model Monitor's environment over
  the whole capture, without ground truth, then with every record's label;
* ``monitor`` without labels over windows of 10%, 30% and 100% of the records (100k, 300k, 1M): the
  reader holds a batch at a time, so the peak should not grow with the window (target: the largest
  window's peak within 20% of the smallest one's).

    python benchmarks/bench_monitor.py [--records 1000000] [--rounds 20] [--repeat 3] [--keep DIR]

Each figure is the best of ``--repeat`` runs (wall time; CPU time beside it, steadier on a shared
machine); the peak is the highest. Target: the monitor's time per record at most 3x pandas'
(``ratio <= 3``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

ENDPOINT, VARIANT = "costaware-bench", "AllTraffic"
ACCEPTS = ("application/jsonlines", "application/json", "text/csv")
START = datetime(2026, 12, 1, tzinfo=timezone.utc)
STEP = timedelta(milliseconds=36)  # a million records span ten hours (ten hour directories)
FILE_RECORDS = 10_000  # records per capture file (SageMaker starts a new file every few minutes)
RATIO_TARGET = 3.0
FLAT_TARGET = 1.2
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


# ------------------------------------------------------------------ the capture, as an endpoint's

def costaware_command() -> list[str]:
    beside = os.path.join(os.path.dirname(sys.executable), "costaware")
    return [beside if os.path.exists(beside) else "costaware"]


def train(tree: str, rounds: int) -> None:
    if os.path.isfile(os.path.join(tree, "model", "baseline", "constraints.json")):
        return  # --keep: the model of an earlier run
    subprocess.run([sys.executable, os.path.join(REPO, "local_test", "prepare_breast_cancer.py"),
                    tree], check=True, capture_output=True)
    path = os.path.join(tree, "input", "config", "hyperparameters.json")
    with open(path, encoding="utf-8") as handle:
        settings = json.load(handle)
    settings.update(num_round=str(rounds), report="false")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(settings, handle)
    result = subprocess.run(costaware_command() + ["train", "--base-dir", tree],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"costaware train failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def distinct_exchanges(model_dir: str) -> list[tuple]:
    """(request, its type, answer, its type, label) for every breast-cancer row and Accept type,
    answered by the server's code."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    from costaware.model.artifact import load
    from costaware.serving.invocation import Invocations, respond

    features, label = load_breast_cancer(return_X_y=True)
    label = 1 - label  # as the demo trains it: malignant = 1
    invocations = Invocations(load(model_dir))
    out = []
    for row, y in zip(features, label):
        body = (",".join("%.10g" % v for v in row)).encode("ascii")
        for accept in ACCEPTS:
            reply = respond(invocations, body, "text/csv", accept, None)
            if reply.status != 200:
                raise SystemExit(f"the server refused a demo row: {reply.body[:300]!r}")
            out.append((body, "text/csv", reply.body, reply.headers["Content-Type"], int(y)))
    np.random.default_rng(0).shuffle(out)
    return out


def write_capture(root: str, records: int, exchanges: list[tuple]) -> list[tuple[str, int]]:
    """Capture files under ``root/capture`` and ground truth under ``root/ground_truth``; returns
    each capture file with its record count, in time order."""
    from costaware import data_capture

    files: list[tuple[str, int]] = []
    handle = truth = None
    current = None
    for i in range(records):
        when = START + i * STEP
        hour = when.strftime("%Y/%m/%d/%H")
        if current != hour or files[-1][1] >= FILE_RECORDS:
            for h in (handle, truth):
                if h is not None:
                    h.close()
            name = when.strftime("%M-%S-%f") + f"-{i:07d}.jsonl"
            directory = os.path.join(root, "capture", ENDPOINT, VARIANT, hour)
            os.makedirs(directory, exist_ok=True)
            handle = open(os.path.join(directory, name), "w", encoding="utf-8")
            gt_directory = os.path.join(root, "ground_truth", hour)
            os.makedirs(gt_directory, exist_ok=True)
            truth = open(os.path.join(gt_directory, name), "w", encoding="utf-8")
            files.append((handle.name, 0))
            current = hour
        request, request_type, answer, answer_type, label = exchanges[i % len(exchanges)]
        event_id = str(uuid.UUID(int=i + 1))  # unique, and the same in every run
        inference_id = f"request-{i}" if i % 2 else None  # half the requests name their own id
        record = data_capture.record(request_type, request, answer_type, answer,
                                     when.timestamp(), inference_id, event_id)
        handle.write(data_capture.to_line(record).decode("utf-8"))
        truth.write(json.dumps({"groundTruthData": {"data": str(label), "encoding": "CSV"},
                                "eventMetadata": {"eventId": inference_id or event_id},
                                "eventVersion": "0"}, separators=(",", ":")) + "\n")
        files[-1] = (files[-1][0], files[-1][1] + 1)
    for h in (handle, truth):
        if h is not None:
            h.close()
    return files


def window_directory(root: str, files: list[tuple[str, int]], records: int) -> str:
    """A capture directory holding the first files up to ``records`` records (hard links)."""
    target = os.path.join(root, f"window-{records}")
    capture = os.path.join(root, "capture")
    total = 0
    for path, n in files:
        if total >= records:
            break
        link = os.path.join(target, os.path.relpath(path, capture))
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.link(path, link)
        total += n
    return target


# ------------------------------------------------------------------ the measurements (children)

def reset_peak_rss() -> float:
    """This process's resident memory now (MiB), and its high-water mark reset to it (Linux's
    ``clear_refs``), so that the peak measured next is the read's, not the imports'."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:  # not Linux, or not allowed: the peak then includes the imports'
        pass
    return _status("VmRSS") or peak_rss_mib()


def peak_rss_mib() -> float:
    return _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def child_pandas(capture: str) -> dict:
    import pandas as pd

    paths = []
    for directory, dirs, names in os.walk(capture):
        dirs.sort()
        paths.extend(os.path.join(directory, n) for n in sorted(names) if n.endswith(".jsonl"))
    before = reset_peak_rss()
    start, cpu = time.perf_counter(), time.process_time()
    records = 0
    for path in paths:
        records += len(pd.read_json(path, lines=True))
    return {"records": records, "seconds": time.perf_counter() - start,
            "cpu": time.process_time() - cpu, "rss_before": before, "peak_rss": peak_rss_mib()}


def child_monitor(capture: str, baseline: str, output: str, ground_truth: str | None) -> dict:
    from costaware.monitoring import cloudwatch, job, report  # noqa: F401 (imported before the reset)

    env = {"dataset_source": capture, "output_path": output,
           "baseline_statistics": os.path.join(baseline, "statistics.json"),
           "baseline_constraints": os.path.join(baseline, "constraints.json"),
           "ground_truth_source": ground_truth or "",
           "dataset_format": '{"sagemakerCaptureJson": {}}', job.BASE_DIR_VARIABLE: output}
    before = reset_peak_rss()
    start, cpu = time.perf_counter(), time.process_time()
    result = job.run_monitor(env)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    counts = result["counts"]["counts"]
    return {"records": counts.get("capture records in the window", 0), "rows": result["rows"],
            "seconds": seconds, "cpu": cpu, "rss_before": before, "peak_rss": peak_rss_mib(),
            "counts": counts}


def measure(repeat: int, *args: str) -> dict:
    """The child's best of ``repeat`` runs: the least wall and CPU time, the highest peak RSS."""
    runs = [measure_once(*args) for _ in range(repeat)]
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["cpu"] = min(r["cpu"] for r in runs)
    best["peak_rss"] = max(r["peak_rss"] for r in runs)
    return best


def measure_once(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(REPO, "container")] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20, help="boosting rounds of the demo model")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement (best kept)")
    parser.add_argument("--keep", help="work in this directory and keep it (else a temporary "
                        "one); a model trained there before is used again")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        if kind == "pandas":
            out = child_pandas(rest[0])
        else:
            out = child_monitor(rest[0], rest[1], rest[2], rest[3] if len(rest) > 3 else None)
        print(json.dumps(out))
        return 0

    root = args.keep or tempfile.mkdtemp(prefix="bench-monitor-")
    os.makedirs(root, exist_ok=True)
    try:
        return run(root, args.records, args.rounds, args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def run(root: str, records: int, rounds: int, repeat: int) -> int:
    tree = os.path.join(root, "bc")
    t0 = time.perf_counter()
    train(tree, rounds)
    exchanges = distinct_exchanges(os.path.join(tree, "model"))
    t1 = time.perf_counter()
    for old in os.listdir(root):
        if old != "bc":
            shutil.rmtree(os.path.join(root, old))
    files = write_capture(root, records, exchanges)
    t2 = time.perf_counter()
    capture = os.path.join(root, "capture")
    size = sum(os.path.getsize(p) for p, _ in files) / 2**20
    print(f"model ready and {len(exchanges):,} distinct requests answered in {t1 - t0:.1f} s; "
          f"{records:,} capture records written in {t2 - t1:.1f} s ({len(files)} files, "
          f"{size:,.0f} MiB)")
    baseline = os.path.join(tree, "model", "baseline")

    pandas = measure(repeat, "pandas", capture)
    plain = measure(repeat, "monitor", capture, baseline, os.path.join(root, "out-plain"))
    labelled = measure(repeat, "monitor", capture, baseline, os.path.join(root, "out-labels"),
                       os.path.join(root, "ground_truth"))
    for name, result in (("pandas", pandas), ("monitor", plain), ("monitor with labels", labelled)):
        if result["records"] != records:
            raise SystemExit(f"{name} read {result['records']} records of {records}")
    matched = labelled["counts"].get("capture rows matched to ground truth", 0)
    if matched != records:
        raise SystemExit(f"{matched} of {records} rows matched to ground truth: {labelled['counts']}")

    rate = lambda r: r["records"] / r["seconds"]  # noqa: E731
    print(f"\n{'read (best of ' + str(repeat) + ')':28s} {'records/s':>10s} {'seconds':>8s} "
          f"{'ratio':>6s} {'CPU s':>6s} {'ratio':>6s} {'RSS at start MiB':>16s} {'peak MiB':>9s}")
    for name, result in (("pandas.read_json(lines=True)", pandas), ("monitor, no labels", plain),
                         ("monitor, every row labelled", labelled)):
        print(f"{name:28s} {rate(result):10,.0f} {result['seconds']:8.2f} "
              f"{result['seconds'] / pandas['seconds']:5.2f}x {result['cpu']:6.2f} "
              f"{result['cpu'] / pandas['cpu']:5.2f}x {result['rss_before']:16.0f} "
              f"{result['peak_rss']:9.0f}")

    sizes = sorted({max(FILE_RECORDS, round(records * f / FILE_RECORDS) * FILE_RECORDS)
                    for f in (0.1, 0.3)} | {records}) if records >= 10 * FILE_RECORDS else [records]
    peaks = {}
    for size_ in sizes:
        if size_ == records:
            peaks[size_] = plain
            continue
        directory = window_directory(root, files, size_)
        peaks[size_] = measure(repeat, "monitor", directory, baseline,
                               os.path.join(root, f"out-{size_}"))
        if peaks[size_]["records"] != size_:
            raise SystemExit(f"window {size_}: {peaks[size_]['records']} records read")
    smallest = peaks[sizes[0]]["peak_rss"]
    print(f"\n{'window (records)':>16s} {'peak RSS MiB':>13s} {'vs smallest':>12s} {'records/s':>10s}")
    for size_ in sizes:
        r = peaks[size_]
        print(f"{size_:16,d} {r['peak_rss']:13.0f} {r['peak_rss'] / smallest:11.2f}x "
              f"{rate(r):10,.0f}")

    ratio = plain["seconds"] / pandas["seconds"]
    growth = peaks[sizes[-1]]["peak_rss"] / smallest
    print(f"\ntarget: monitor <= {RATIO_TARGET:g}x pandas: {ratio:.2f}x "
          f"{'MET' if ratio <= RATIO_TARGET else 'MISSED'}; peak memory flat (largest window "
          f"<= {FLAT_TARGET:g}x smallest): {growth:.2f}x "
          f"{'MET' if growth <= FLAT_TARGET else 'MISSED'}")
    return 0 if ratio <= RATIO_TARGET and growth <= FLAT_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
