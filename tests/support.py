"""The tests' shared helpers, in one module (no test file imports another; conftest.py holds
pytest's hooks and fixtures): SageMaker-shaped training trees and the image's real ``train``, small
data, the real ``serve`` on 127.0.0.1 and how to read its answers, the reference Clarify metrics,
the wine data of the multi-class tests, the tuner's request checks.

tests/hosts.py (several hosts as processes), tests/union_metrics.py (one host's metrics on all the
rows) and tests/combinations.py (the matrix's oracle, which must not import costaware) stay modules
of their own: scripts outside pytest import the first two (benchmarks/bench_multihost.py,
tests/image/check_multi_host.py), and the oracle's independence is its point.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PAYLOAD_MB = 1  # the test servers' SAGEMAKER_MAX_PAYLOAD_IN_MB


# ------------------------------------------------------------ training trees and the real `train`


def write_tree(base: Path, hyperparameters: dict | None = None, channels: dict | None = None,
               content_types: dict | None = None) -> Path:
    """Lay out ``base`` like ``/opt/ml``. ``channels`` maps a channel to {file name: text or bytes}."""
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters or {}))
    channels = channels or {}
    content_types = content_types or {}
    (config / "inputdataconfig.json").write_text(json.dumps(
        {name: {"ContentType": content_types.get(name, "text/csv")} for name in channels}))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"]}))
    for name, files in channels.items():
        directory = base / "input" / "data" / name
        directory.mkdir(parents=True, exist_ok=True)
        for file_name, content in files.items():
            path = directory / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
    return base


def run_train(base: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the image's real ``train`` console script (costaware's check, then the toolkit) on ``base``."""
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base),
               SAGEMAKER_TRAINING_MODULE="costaware.sagemaker.training_job:main")
    return subprocess.run([str(BIN / "train")], env=env, capture_output=True, text=True,
                          timeout=timeout)


def failure_reason(base: Path) -> str:
    return (base / "output" / "failure").read_text()


def csv_text(label, features, fmt="%.6g") -> str:
    rows = np.column_stack([label, features])
    lines = [",".join(fmt % v for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def synthetic(n: int, d: int = 5, seed: int = 0):
    """A learnable binary problem: ``y = 1`` with probability sigmoid(x . beta)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    beta = np.linspace(1.5, -1.0, d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ beta - 1.0)))).astype(int)
    return x, y


def costaware_cli(*args, timeout=300) -> subprocess.CompletedProcess:
    """``python -m costaware.cli ARGS`` (text output captured)."""
    return subprocess.run([sys.executable, "-m", "costaware.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ the real `serve` on 127.0.0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _terminate_with_parent():
    """In the child before exec: SIGTERM it if pytest dies (killed by a timeout, say), so a server
    never outlives its test run."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - not glibc Linux
        pass


class Server:
    def __init__(self, model_dir: str, log_dir, workers: int = 2, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = os.path.join(log_dir, f"serve-{self.port}.out")
        self.stderr_path = os.path.join(log_dir, f"serve-{self.port}.err")
        full_env = dict(os.environ, COSTAWARE_MODEL_DIR=model_dir, COSTAWARE_BIND_HOST="127.0.0.1",
                        SAGEMAKER_BIND_TO_PORT=str(self.port),
                        SAGEMAKER_MODEL_SERVER_WORKERS=str(workers),
                        SAGEMAKER_MAX_PAYLOAD_IN_MB=str(PAYLOAD_MB), **env)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(["serve"], env=full_env, stdout=out, stderr=err,
                                         preexec_fn=_terminate_with_parent)
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited: {self.stderr()}"
            try:  # the socket listens before a worker has booted: wait for a 200
                if requests.get(self.url + "/ping", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"serve never answered /ping: {self.stderr()}")

    def stderr(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def access_log(self) -> list[dict]:
        with open(self.stdout_path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def workers(self) -> set[int]:
        """The master's live children (a zombie, killed and not yet reaped, is not one)."""
        children = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as handle:
                        stat = handle.read()
                except OSError:
                    continue
                state, parent = stat.rsplit(")", 1)[1].split()[:2]
                # a killed worker stays a zombie child until the master reaps it: not a worker
                if int(parent) == self.pid and state != "Z":
                    children.add(int(entry))
        return children

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()


HEADER = "X-Amzn-SageMaker-Custom-Attributes"


def csv_body(features: np.ndarray) -> bytes:
    """Rows as a CSV request body, NaN as an empty cell."""
    return ("\n".join(",".join("" if math.isnan(v) else repr(v) for v in row)
                      for row in features.tolist()) + "\n").encode()


def parse_response(response, fields=None) -> list[dict]:
    """A binary model's predictions from a JSON, JSON Lines or CSV answer (CSV: ``fields`` in
    order, by default every output field)."""
    from costaware.model import inference

    fields = inference.OUTPUT_FIELDS if fields is None else fields
    kind = response.headers["Content-Type"].split(";")[0]
    if kind == "application/json":
        return response.json()["predictions"]
    if kind == "application/jsonlines":
        return [json.loads(line) for line in response.text.split("\n")]
    assert kind == "text/csv", kind
    out = []
    for line in response.text.split("\n"):
        values = line.split(",")
        assert len(values) == len(fields)
        out.append({f: (int(v) if f == "decision" else v if f in inference.TEXT_FIELDS
                         else float(v)) for f, v in zip(fields, values)})
    return out


def assert_matches(predictions: list[dict], expected: dict, fields=None):
    """Served predictions equal in-process ``inference.predict``'s, field by field."""
    from costaware.model import inference

    fields = inference.OUTPUT_FIELDS if fields is None else fields
    assert len(predictions) == len(expected["score"])
    for i, row in enumerate(predictions):
        assert list(row) == list(fields)
        for field in fields:
            want = expected[field][i]
            want = want.item() if hasattr(want, "item") else want
            if field == "decision" or field in inference.TEXT_FIELDS:
                assert row[field] == want, (i, row, want)
            else:
                assert row[field] == pytest.approx(want, rel=1e-13, abs=1e-300), (i, field)


# ------------------------------------------------- Clarify's metrics, the reference implementation

CLARIFY_TOL = 1e-9  # relative (absolute below 1) agreement with smclarify


@dataclass
class Case:
    """Rows for a bias metric: labels, decisions, the sensitive mask, and optionally a group,
    features and the raw facet column."""

    y: np.ndarray
    yhat: np.ndarray
    s: np.ndarray
    group: np.ndarray | None = None
    x: np.ndarray | None = None
    facet: np.ndarray | None = None     # the raw facet column, passed to Clarify as ``feature``


def same(ours, ref) -> bool:
    """Equal as Clarify's values compare: None, nan and inf alike, else within :data:`CLARIFY_TOL`."""
    if ours is None or ref is None:
        return ours is ref
    ours, ref = float(ours), float(ref)
    if math.isnan(ours) or math.isnan(ref):
        return math.isnan(ours) and math.isnan(ref)
    if math.isinf(ours) or math.isinf(ref):
        return ours == ref
    return abs(ours - ref) <= CLARIFY_TOL * max(1.0, abs(ref))


def clarify(name: str, c: Case):
    """``("value", v)`` or ``("error", message)`` from Clarify's metric, called as its report does."""
    from smclarify.bias import metrics as clarify_metrics

    n = len(c.s)
    facet = pd.Series(c.facet if c.facet is not None else c.s.astype(int))
    x = c.x if c.x is not None else np.zeros((n, 1))
    kwargs = dict(
        df=pd.DataFrame(x),
        feature=facet,
        sensitive_facet_index=pd.Series(c.s, dtype=bool),
        label=pd.Series(c.y, dtype=bool),
        positive_label_index=pd.Series(c.y, dtype=bool),
        predicted_label=pd.Series(c.yhat, dtype=bool),
        positive_predicted_label_index=pd.Series(c.yhat, dtype=bool),
        group_variable=None if c.group is None else pd.Series(c.group),
    )
    try:
        return "value", float(clarify_metrics.call_metric(getattr(clarify_metrics, name), **kwargs))
    except ValueError as error:
        return "error", str(error)


def report_values(report: list) -> dict:
    """Clarify's ``bias_report`` of one facet as ``{metric name: value}`` (nan where undefined)."""
    (facet,) = report
    out = {}
    for metric in facet["metrics"]:
        value = metric["value"]
        out[metric["name"]] = math.nan if value is None else float(
            value.replace("Infinity", "inf") if isinstance(value, str) else value)
    return out


# -------------------------------------------------------- the multi-class tests' data: wine

WINE_CLASSES = ["barolo", "grignolino", "barbera"]
# C[true][decided]: selling a barbera as a barolo is the expensive mistake
WINE_MATRIX = [[0, 2, 3], [2, 0, 1], [12, 3, 0]]


def wine_frame() -> pd.DataFrame:
    """scikit-learn's wine data, the label ``cultivar`` first (a class name), rows shuffled."""
    from sklearn.datasets import load_wine

    data = load_wine()
    frame = pd.DataFrame(data.data, columns=[c.replace("/", "_") for c in data.feature_names])
    frame.insert(0, "cultivar", np.array(WINE_CLASSES, dtype=object)[data.target])
    return frame.sample(frac=1.0, random_state=7).reset_index(drop=True)


# ---------------------------------------------------------- the tuner's SageMaker requests

REALISTIC_TUNER_OPTIONS = dict(
    image_uri="<account>.dkr.ecr.<region>.amazonaws.com/costaware:0.2.0",
    role_arn="arn:aws:iam::123456789012:role/service-role/SageMakerExecution",
    s3_train="s3://my-bucket/german/train/", s3_validation="s3://my-bucket/german/validation/",
    s3_test="s3://my-bucket/german/test/", s3_output="s3://my-bucket/german/tuning/",
    job_name="german-fairness-01",
)


def service_constraint_errors(value, shape, path, errors):
    """What botocore's ParamValidator leaves to the service: max lengths, patterns, enums, upper
    bounds (it checks types, required members and minimums only); each violation appended to
    ``errors``."""
    meta, kind = shape.metadata, shape.type_name
    if kind == "structure":
        for key, item in value.items():
            service_constraint_errors(item, shape.members[key], f"{path}.{key}", errors)
    elif kind == "list":
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} items > {meta['max']}")
        for i, item in enumerate(value):
            service_constraint_errors(item, shape.member, f"{path}[{i}]", errors)
    elif kind == "map":
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} entries > {meta['max']}")
        for key, item in value.items():
            service_constraint_errors(key, shape.key, f"{path} key {key!r}", errors)
            service_constraint_errors(item, shape.value, f"{path}[{key!r}]", errors)
    elif kind == "string":
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: length {len(value)} > {meta['max']}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} not in the enum")
    elif kind in ("integer", "long"):
        if "max" in meta and value > meta["max"]:
            errors.append(f"{path}: {value} > {meta['max']}")


# ------------------------------------------ Model Monitor: capture records and documented schemas


def capture_record(request: bytes, request_type: str, response: bytes, response_type: str,
                   inference_id: str | None, when: str, event_id: str | None = None) -> dict:
    """One SageMaker data-capture record (what ``serve`` writes: :mod:`costaware.data_capture`),
    made at ``when`` (``2026-12-06T06:00:00Z``)."""
    from costaware import data_capture

    return data_capture.record(request_type, request, response_type, response,
                               data_capture.parse_time(when).timestamp(), inference_id,
                               event_id or f"event-{inference_id or when}")


def answered_records(model_dir: str, rows: list[str], accepts=("application/jsonlines",),
                     start: str = "2026-12-06T06:00:00", ids: list[str] | None = None) -> list[dict]:
    """Capture records of ``rows`` (each a CSV request body) answered by the server's own code
    (:func:`costaware.serving.invocation.respond`), one second apart from ``start`` (UTC)."""
    from datetime import datetime, timedelta

    from costaware.model.artifact import load
    from costaware.serving.invocation import Invocations, respond

    invocations = Invocations(load(model_dir, nthread=1))
    first = datetime.fromisoformat(start)
    out = []
    for i, body in enumerate(rows):
        accept = accepts[i % len(accepts)]
        reply = respond(invocations, body.encode(), "text/csv", accept, None)
        assert reply.status == 200, reply.body
        when = (first + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(capture_record(body.encode(), "text/csv", reply.body,
                                  reply.headers["Content-Type"],
                                  ids[i] if ids else f"id-{i}", when))
    return out


def ground_truth_record(key: str, label) -> dict:
    """Model Monitor's ground-truth merge record (model-monitor-model-quality-merge.md)."""
    return {"groundTruthData": {"data": str(label), "encoding": "CSV"},
            "eventMetadata": {"eventId": key}, "eventVersion": "0"}


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# The schemas of the Model Monitor documentation's pages (model-monitor-byoc-statistics.md,
# model-monitor-byoc-constraints.md, model-monitor-interpreting-violations.md,
# model-monitor-byoc-cloudwatch.md), written as JSON Schema: every documented member with its
# type; extra members are allowed, as the pages allow a container's own.
_NUMBER = {"type": "number"}
_COMMON = {"type": "object", "required": ["num_present", "num_missing"],
           "properties": {"num_present": _NUMBER, "num_missing": _NUMBER}}
STATISTICS_SCHEMA = {
    "type": "object", "required": ["version", "dataset", "features"],
    "properties": {
        "version": _NUMBER,
        "dataset": {"type": "object", "required": ["item_count"],
                    "properties": {"item_count": _NUMBER}},
        "features": {"type": "array", "items": {
            "type": "object", "required": ["name", "inferred_type"],
            "properties": {
                "name": {"type": "string"},
                "inferred_type": {"enum": ["Fractional", "Integral", "String", "Unknown"]},
                "numerical_statistics": {
                    "type": "object", "required": ["common"],
                    "properties": {
                        "common": _COMMON, "mean": _NUMBER, "sum": _NUMBER, "std_dev": _NUMBER,
                        "min": _NUMBER, "max": _NUMBER,
                        "distribution": {"type": "object", "properties": {"kll": {
                            "type": "object", "required": ["buckets", "sketch"],
                            "properties": {
                                "buckets": {"type": "array", "items": {
                                    "type": "object",
                                    "required": ["lower_bound", "upper_bound", "count"],
                                    "properties": {"lower_bound": _NUMBER, "upper_bound": _NUMBER,
                                                   "count": _NUMBER}}},
                                "sketch": {"type": "object", "required": ["parameters", "data"],
                                           "properties": {
                                               "parameters": {"type": "object",
                                                              "required": ["c", "k"],
                                                              "properties": {"c": _NUMBER,
                                                                             "k": _NUMBER}},
                                               "data": {"type": "array", "items": {
                                                   "type": "array", "items": _NUMBER}}}}}}}},
                    }},
            }}},
    }}
CONSTRAINTS_SCHEMA = {
    "type": "object", "required": ["version", "features"],
    "properties": {
        "version": _NUMBER,
        "features": {"type": "array", "items": {
            "type": "object", "required": ["name", "inferred_type"],
            "properties": {
                "name": {"type": "string"},
                "inferred_type": {"enum": ["Integral", "Fractional", "String", "Unknown"]},
                "completeness": {"type": "number", "minimum": 0, "maximum": 1},
                "num_constraints": {"type": "object",
                                    "properties": {"is_non_negative": {"type": "boolean"}}},
                "string_constraints": {"type": "object", "properties": {
                    "domains": {"type": "array", "items": {"type": "string"}}}},
                "monitoringConfigOverrides": {"type": "object"}}}},
        "monitoring_config": {"type": "object", "properties": {
            "evaluate_constraints": {"enum": ["Enabled", "Disabled"]},
            "emit_metrics": {"enum": ["Enabled", "Disabled"]},
            "datatype_check_threshold": _NUMBER, "domain_content_threshold": _NUMBER,
            "distribution_constraints": {"type": "object", "properties": {
                "perform_comparison": {"enum": ["Enabled", "Disabled"]},
                "comparison_threshold": _NUMBER,
                "comparison_method": {"enum": ["Simple", "Robust"]}}}}},
    }}
VIOLATIONS_SCHEMA = {
    "type": "object", "required": ["violations"],
    "properties": {"violations": {"type": "array", "items": {
        "type": "object", "required": ["feature_name", "constraint_check_type", "description"],
        "properties": {"feature_name": {"type": "string"},
                       "constraint_check_type": {"type": "string"},
                       "description": {"type": "string"}}}}}}
CLOUDWATCH_METRIC_SCHEMA = {
    "type": "object", "required": ["MetricName", "Timestamp", "Dimensions"],
    "properties": {
        "MetricName": {"type": "string", "minLength": 1},
        "Timestamp": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
        "Dimensions": {"type": "array", "items": {
            "type": "object", "required": ["Name", "Value"],
            "properties": {"Name": {"type": "string"}, "Value": {"type": "string"}}}},
        "Value": _NUMBER,
        "StatisticValues": {"type": "object",
                            "required": ["SampleCount", "Sum", "Minimum", "Maximum"]},
        "Unit": {"type": "string"}},
    "oneOf": [{"required": ["Value"]}, {"required": ["StatisticValues"]}]}


# ------------------------------------------- applicants with a facet and a per-row cost (monitoring)

CREDIT_FEATURES = ["x0", "x1", "x2", "x3", "group"]
CREDIT_HYPERPARAMETERS = {"label_column": "label", "cost_fp": "1", "cost_fn": "5",
                   "cost_fn_column": "amount", "facet_column": "group",
                   "facet_values_or_threshold": "[1]", "facet_is_feature": "true",
                   "num_round": "30", "max_depth": "3", "eta": "0.3", "report": "false",
                   "seed": "1"}


def credit_population(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Applicants: four features, a facet, a loan amount (the cost of refusing a good one ...
    here of missing a positive), the label; ``shift`` moves x0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[:, 0] += shift
    group = (rng.random(n) < 0.3).astype(int)
    logit = 1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.5 * x[:, 2] - 0.4 * group - 1.0
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(np.round(x, 4), columns=CREDIT_FEATURES[:4])
    frame["group"] = group
    frame["amount"] = np.round(rng.lognormal(1.5, 0.5, n), 2)
    frame.insert(0, "label", label)
    return frame


def libsvm_text(label, features: np.ndarray, costs: np.ndarray | None = None,
                first_index: int = 1) -> str:
    """Rows as libsvm lines: ``LABEL`` (left out when ``label`` is None), then ``i:value`` for
    each present value, ``i`` from ``first_index``; ``costs`` follow the features' indices."""
    table = features if costs is None else np.column_stack([features, costs])
    lines = []
    for i, row in enumerate(table.tolist()):
        pairs = [f"{j + first_index}:{v!r}" for j, v in enumerate(row) if not math.isnan(v)]
        lines.append(" ".join(([] if label is None else [str(label[i])]) + pairs))
    return "\n".join(lines) + "\n"


def labelled_csv(label, features: np.ndarray) -> str:
    """Rows as headerless CSV, the label first, NaN an empty cell."""
    return "".join(f"{y}," + ",".join("" if math.isnan(v) else repr(v) for v in row) + "\n"
                   for y, row in zip(label, features.tolist()))


def train_channels(base: Path, settings: dict, channels: dict, content_type: str) -> str:
    """The real ``train`` on ``channels`` (each of ``content_type``); the model directory."""
    write_tree(base, settings, channels, {name: content_type for name in channels})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return str(base / "model")


def post_invocations(srv, body, content_type: str, accept: str | None = None,
                     attributes: str | None = None):
    """``POST /invocations`` to a :class:`Server`, with the headers given."""
    headers = {"Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    if attributes is not None:
        headers[HEADER] = attributes
    return requests.post(srv.url + "/invocations", data=body, headers=headers, timeout=30)


def rows_with_missing(n: int, seed: int, d: int = 6, classes: int = 2, float32: bool = False):
    """``synthetic`` rows with about a fifth of the values missing, each value exact in the
    format it is sent in: float32 (RecordIO's), else printed to 6 significant digits (text);
    with ``classes=3`` a third class where feature 1 is above 0.4."""
    x, y = synthetic(n, d=d, seed=seed)
    x = (x.astype(np.float32).astype(np.float64) if float32
         else np.array([[float(f"{v:.6g}") for v in row] for row in x]))
    rng = np.random.default_rng(seed + 1)
    x[rng.random(x.shape) < 0.2] = np.nan
    if classes == 3:
        y = np.where(np.nan_to_num(x[:, 1]) > 0.4, 2, y)
    return x, y
