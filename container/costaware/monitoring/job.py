"""The image's ``monitor`` (a Model Monitor bring-your-own container) and ``suggest-baseline``
(a processing job) commands, and the baseline training writes beside the model.

``monitor`` reads Model Monitor's environment (``dataset_source``, ``output_path``, ``start_time``,
``end_time``, ``baseline_statistics``, ``baseline_constraints``, ``publish_cloudwatch_metrics``,
``sagemaker_endpoint_name``, ``sagemaker_monitoring_schedule_name``, ``dataset_format``; and
costaware's ``ground_truth_source``: a directory of ground-truth records), and writes into
``output_path``: ``statistics.json`` (the window's, Model Monitor's schema plus costaware's
section), ``constraints.json`` (the baseline's, as evaluated), ``constraint_violations.json`` and
``report.html``; with ``publish_cloudwatch_metrics=Enabled`` the metrics in
``/opt/ml/output/metrics/cloudwatch/``. A job that cannot run writes one line to
``/opt/ml/output/message`` (the processing job's ExitMessage) and stderr, and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tarfile
import tempfile
import zlib
from datetime import datetime, timezone

from .. import storage
from ..errors import InputError
from . import checks
from .baseline import CONSTRAINTS_FILE, STATISTICS_FILE, documents
from .capture import CaptureReader, Counts, jsonl_files, parse_time, read_ground_truth
from .model_spec import ModelSpec
from .window import Window

VIOLATIONS_FILE = "constraint_violations.json"
REPORT_FILE = "report.html"
BASE_DIR_VARIABLE = "SAGEMAKER_BASE_DIR"  # as for training: moves /opt/ml (local runs, tests)
CAPTURE_FORMAT = "sagemakerCaptureJson"


class JobError(InputError):
    """A monitoring or baseline job that cannot run; the message is its one-line reason."""


def base_dir(env) -> str:
    return env.get(BASE_DIR_VARIABLE) or "/opt/ml"


def fail(env, reason: str) -> int:
    """One line on stderr and in ``output/message`` (the processing job's ExitMessage); 1."""
    print(f"costaware: {reason}", file=sys.stderr)
    message = os.path.join(base_dir(env), "output", "message")
    try:
        os.makedirs(os.path.dirname(message), exist_ok=True)
        storage.atomic_write(message, reason.encode("utf-8")[:1024])
    except OSError as exc:
        print(f"costaware: the reason could not be written to {message}: "
              f"{storage.reason(exc, storage.PROCESSING_VOLUME)}",
              file=sys.stderr)
    return 1


def failed(env, command: str, exc: Exception) -> int:
    """:func:`fail` with a processing job's one-line reason for ``exc`` (a full volume named as
    a processing job configures it)."""
    why = storage.reason(exc, storage.PROCESSING_VOLUME) if isinstance(exc, OSError) else exc
    return fail(env, f"{command}: {why}")


def read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise JobError(f"{what} {path}: {storage.reason(exc)}") from None
    except ValueError as exc:
        raise JobError(f"{what} {path} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise JobError(f"{what} {path} does not hold a JSON object")
    return document


def write_json(directory: str, name: str, document) -> str:
    path = os.path.join(directory, name)
    storage.atomic_write(path, (json.dumps(document, indent=2, allow_nan=False) + "\n")
                         .encode("utf-8"))
    return path


def _required(env, name: str) -> str:
    value = env.get(name)
    if not value:
        raise JobError(f"environment variable {name} is not set (Model Monitor sets it for a "
                       "monitoring schedule; set it to run the job yourself)")
    return value


def window_time(text: str | None, what: str) -> datetime | None:
    """A window's bound (None when not given), or the job's one-line reason naming ``what``."""
    if not text:
        return None
    when = parse_time(text)
    if when is None:
        raise JobError(f"{what} {text!r} is not an ISO 8601 time (e.g. 2026-12-01T15:00:00Z)")
    return when


def _check_format(env) -> None:
    text = env.get("dataset_format")
    if not text:
        return
    try:
        document = json.loads(text)
    except ValueError:
        raise JobError(f"environment variable dataset_format is not JSON: {text[:200]}") from None
    keys = {k.lower() for k in document} if isinstance(document, dict) else set()
    if CAPTURE_FORMAT.lower() not in keys:
        raise JobError(f"dataset_format {text[:200]}: costaware monitors an endpoint's data "
                       f"capture ({CAPTURE_FORMAT}); batch transform datasets are not supported")


def load_baseline(env) -> tuple[dict, dict, ModelSpec]:
    statistics = read_json(_required(env, "baseline_statistics"), "baseline_statistics")
    path = _required(env, "baseline_constraints")
    constraints = read_json(path, "baseline_constraints")
    try:
        spec = ModelSpec.from_dict(constraints["costaware"]["model"])
        _ = statistics["features"], statistics["costaware"]["scores"]  # costaware's statistics
    except (KeyError, TypeError, ValueError) as exc:
        raise JobError(f"baseline_constraints {path} is not a costaware baseline (missing "
                       f"{exc}); use the baseline training wrote beside the model "
                       "(baseline/constraints.json) or suggest-baseline's") from None
    return statistics, constraints, spec


@contextlib.contextmanager
def _baseline_as_read(env):
    """A baseline file that parses but lacks what the monitor reads (hand-edited, or from
    another version) is the job's one-line reason, never a traceback."""
    try:
        yield
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise JobError(f"baseline_statistics {env.get('baseline_statistics')} and "
                       f"baseline_constraints {env.get('baseline_constraints')} do not hold what "
                       f"this costaware's monitor reads ({type(exc).__name__}: {exc}); write them "
                       "again with this version (training, or suggest-baseline)") from None


def run_monitor(env) -> dict:
    """The monitoring job (module docstring); returns what it wrote (paths and figures)."""
    _check_format(env)
    source = _required(env, "dataset_source")
    output = _required(env, "output_path")
    if not os.path.isdir(source):
        raise JobError(f"dataset_source {source} is not a directory")
    start = window_time(env.get("start_time"), "environment variable start_time:")
    end = window_time(env.get("end_time"), "environment variable end_time:")
    baseline, constraints, spec = load_baseline(env)
    truth = env.get("ground_truth_source")
    if truth and not os.path.isdir(truth):
        raise JobError(f"ground_truth_source {truth} is not a directory")
    counts = Counts()
    labels = read_ground_truth(truth, spec, counts)
    with _baseline_as_read(env):
        window = Window(baseline, spec)
        reader = CaptureReader(spec, labels, counts, start, end)
    files = jsonl_files(source, counts)
    counts.add("capture files", n=len(files))
    for rows, has_costs, decided in reader.batches(files):
        window.add(rows, has_costs, decided)
    if labels:
        counts.add("ground truth records without a capture record in the window",
                   n=reader.unmatched_ground_truth())
    statistics = window.statistics(counts.to_dict())
    statistics["costaware"]["window"] = {"start_time": env.get("start_time"),
                                         "end_time": env.get("end_time")}
    with _baseline_as_read(env):
        found = checks.violations(baseline, constraints, statistics) if window.rows else [
            no_data(counts, env)]
    os.makedirs(output, exist_ok=True)
    written = {
        "statistics": write_json(output, STATISTICS_FILE, statistics),
        "constraints": write_json(output, CONSTRAINTS_FILE, constraints),
        "violations": write_json(output, VIOLATIONS_FILE, {"violations": found}),
    }
    from .report import render
    with _baseline_as_read(env):
        page = render(baseline, statistics, found, spec)
    storage.atomic_write(os.path.join(output, REPORT_FILE), page.encode("utf-8"))
    written["report"] = os.path.join(output, REPORT_FILE)
    if env.get("publish_cloudwatch_metrics", "").lower() == "enabled":
        from .cloudwatch import write_metrics
        written["cloudwatch"] = write_metrics(
            os.path.join(base_dir(env), "output", "metrics", "cloudwatch"), statistics, found,
            env, end or datetime.now(timezone.utc))
    return {"written": written, "rows": window.rows, "violations": found,
            "counts": counts.to_dict()}


def no_data(counts: Counts, env) -> dict:
    """Model Monitor's own case, a window without data, as a violation (never a silent pass)."""
    seen = ", ".join(f"{k}: {v}" for k, v in sorted(counts.seen.items())) or "no capture files"
    window = f"[{env.get('start_time') or '-'}, {env.get('end_time') or '-'})"
    return {"feature_name": "dataset", "constraint_check_type": "no_data_check",
            "description": f"no captured rows to monitor in the window {window} ({seen})",
            "value": 0, "bound": 1}


def monitor_main(argv=None, env=None) -> int:
    """The image's ``monitor``: Model Monitor's environment (module docstring)."""
    env = os.environ if env is None else env
    try:
        result = run_monitor(env)
    except (InputError, OSError) as exc:
        return failed(env, "monitor", exc)
    found = result["violations"]
    print(f"costaware monitor: {result['rows']} rows; {len(found)} violation"
          f"{'s' if len(found) != 1 else ''}" + "".join(
              f"\n  {v['constraint_check_type']}: {v['description']}" for v in found))
    for reason, n in result["counts"]["counts"].items():
        print(f"  {reason}: {n}")
    return 0


# ----------------------------------------------------------------------- suggest-baseline

PROCESSING = "/opt/ml/processing"


def suggest_baseline(model_dir: str, data_dir: str, output: str, content_type: str,
                     log=print) -> tuple[str, str]:
    """The baseline of ``model_dir``'s model from the data set in ``data_dir`` (a channel's
    files, with labels, as training reads them): statistics.json and constraints.json in
    ``output``."""
    from ..config import hyperparameters
    from ..data import channel_files as data
    from ..data.channel_batches import read_in_batches
    from ..data.external_features import BATCH_ROWS
    from ..model.artifact import load

    with _model_directory(model_dir) as directory:
        model = load(directory)
    spec = ModelSpec.of_metadata(model.metadata)
    settings = hyperparameters.parse_saved(model.metadata.get("hyperparameters") or {})
    options = data.options_from_settings(settings, content_type)
    # (a batch at a time and joined, as training reads a channel: not pandas' whole files)
    dataset = read_in_batches(data_dir, content_type, options, BATCH_ROWS, log)
    reference = data.Dataset.empty(model.feature_names, options, data_dir)
    dataset = data.align_to(reference, dataset)
    p = model.probability(dataset.features)
    statistics, constraints = documents(
        spec, dataset, dataset, p,
        f"suggest-baseline: {dataset.rows} rows of {data_dir} scored by the model")
    os.makedirs(output, exist_ok=True)
    return (write_json(output, STATISTICS_FILE, statistics),
            write_json(output, CONSTRAINTS_FILE, constraints))


class _model_directory:
    """A model directory, or one holding SageMaker's ``model.tar.gz`` (extracted to a temporary
    directory: only costaware's two files, never a path outside it)."""

    def __init__(self, path: str):
        self.path, self.temp = path, None

    def __enter__(self) -> str:
        archive = os.path.join(self.path, "model.tar.gz")
        if not os.path.isfile(archive):
            return self.path
        self.temp = tempfile.TemporaryDirectory()
        try:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    name = os.path.normpath(member.name)
                    if member.isfile() and name in ("xgboost-model.ubj", "metadata.json"):
                        with tar.extractfile(member) as src, \
                                open(os.path.join(self.temp.name, name), "wb") as dst:
                            dst.write(src.read())
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise JobError(f"{archive} cannot be read: {exc}") from None
        return self.temp.name

    def __exit__(self, *exc) -> None:
        if self.temp is not None:
            self.temp.cleanup()


def suggest_baseline_main(argv=None, env=None) -> int:
    parser = argparse.ArgumentParser(
        prog="suggest-baseline",
        description="A costaware model's monitoring baseline from a labelled data set (a "
                    "processing job: the defaults are its paths).")
    parser.add_argument("--model", default=f"{PROCESSING}/model",
                        help="model directory (or one holding model.tar.gz)")
    parser.add_argument("--data", default=f"{PROCESSING}/input/data",
                        help="the data set: CSV or Parquet files as a training channel holds them")
    parser.add_argument("--output", default=f"{PROCESSING}/output")
    parser.add_argument("--content-type", default="text/csv")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    try:
        paths = suggest_baseline(args.model, args.data, args.output, args.content_type)
    except (InputError, ValueError, OSError) as exc:
        return failed(env, "suggest-baseline", exc)
    print("costaware suggest-baseline: wrote " + " and ".join(paths))
    return 0
