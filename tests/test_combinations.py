"""Issue #21's matrix of combinations: every training kind (classes, costs, facet and bound, rule,
input format) through every entry point that takes a model or a tree, each cell checked against the
independent oracle of tests/combinations.py, or refused up front with one line.

The axes are the tables below; the cells are their product (served requests: content type x accept
x fields x costs x reasons for every trained kind) or listed (refusals). Each training kind is
trained once, by the real ``costaware train --base-dir`` (two at a time, at the first cell that
needs one); each model is served once by the real ``serve``; the CLI cells' commands run two at a
time in the background meanwhile. At the end the module prints the
matrix's size: cells, how many work, how many are refused and why, how many failed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import io
import json
import math
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from combinations import (CLASSES, FEATURES, INT_CLASSES, MATRIX, ROWS, Kind, SavedModel, auc,
                          channel_frames, realised_cost, write_kind)
import recordio_writer
from support import BIN, HEADER, Server

F = tuple(FEATURES)
VAL = {"calibration_data": "validation"}
# The report only where the kind changes what it draws (a facet, a bound, text labels with a
# comma and quotes in the charts' file names): elsewhere its charts were most of the training.
NO_REPORT = {"report": "false"}

# ------------------------------------------------------------------------------- the axes

TRAINED = [  # every kind trains (and is served, predicted with, configured for tuning)
    Kind("bin_costs_csv", 2, {**VAL, **NO_REPORT, "cost_fp": "1", "cost_fn": "4"}, "csv", header=False),
    Kind("bin_rowcosts_empirical", 2, {**VAL, **NO_REPORT, "label_column": "y", "cost_fn_column": "loss",
         "cost_fp_column": "interest", "decision_rule": "empirical"}, "csv",
         columns=("y", *F, "loss", "interest")),
    Kind("bin_facet_parquet_noval", 2, {"label_column": "y", "facet_column": "grp",
         "facet_values_or_threshold": "[1]", "cross_fit_folds": "3", "reasons_for": "all",
         "cost_fn": "3"}, "parquet", columns=("y", *F, "grp"), validation=False),
    Kind("bin_bound_gzip", 2, {**VAL, "label_column": "y", "facet_column": "grp",
         "facet_values_or_threshold": "[1]", "max_abs_dppl": "0.1", "group_thresholds": "true",
         "cost_fn_column": "loss"}, "gzip", columns=("y", *F, "grp", "loss")),
    Kind("bin_matrix2_csv", 2, {**VAL, **NO_REPORT, "cost_matrix": "[[0, 1], [3, 0]]"}, "csv", header=False),
    Kind("mc_text_header", 3, {**VAL, "label_column": "y", "classes": json.dumps(CLASSES),
         "cost_matrix": json.dumps(MATRIX)}, "csv", labels=tuple(CLASSES)),
    Kind("mc_bound_parquet", 3, {**VAL, "label_column": "y", "classes": json.dumps(CLASSES),
         "cost_matrix": json.dumps(MATRIX), "facet_column": "grp",
         "facet_values_or_threshold": "[1]", "label_values_or_threshold": '["high"]',
         "max_abs_dppl": "0.1", "group_thresholds": "true"}, "parquet",
         columns=("y", *F, "grp"), labels=tuple(CLASSES)),
    Kind("mc_penalty", 3, {**VAL, **NO_REPORT, "label_column": "y", "classes": json.dumps(CLASSES),
         "cost_matrix": json.dumps(MATRIX), "facet_column": "grp",
         "facet_values_or_threshold": "[1]", "label_values_or_threshold": '["high"]',
         "fairness_penalty": "1"}, "csv", columns=("y", *F, "grp"), labels=tuple(CLASSES)),
    Kind("mc_int_gzip", 3, {**NO_REPORT, "classes": json.dumps(INT_CLASSES), "cost_matrix": json.dumps(MATRIX),
         "cross_fit_folds": "3"}, "gzip", header=False, labels=tuple(INT_CLASSES)),
    # the fold models' average served, with each calibrator the choice can make
    Kind("bin_average_isotonic_rowcosts", 2, {**NO_REPORT, "label_column": "y",
         "cost_fn_column": "loss", "served_model": "fold_average", "calibrator": "isotonic",
         "cross_fit_folds": "3", "reasons_for": "all"}, "csv", columns=("y", *F, "loss")),
    Kind("bin_average_identity_facet", 2, {**NO_REPORT, "label_column": "y",
         "served_model": "fold_average", "calibrator": "identity", "cost_fn": "4",
         "facet_column": "grp", "facet_values_or_threshold": "[1]", "max_abs_dppl": "0.1"},
         "parquet", columns=("y", *F, "grp")),
    Kind("mc_average_identity", 3, {**NO_REPORT, "label_column": "y",
         "classes": json.dumps(CLASSES), "cost_matrix": json.dumps(MATRIX),
         "served_model": "fold_average", "calibrator": "identity", "cross_fit_folds": "3",
         "reasons_for": "all"}, "csv", labels=tuple(CLASSES)),
]
REFUSED_TRAININGS = [  # (kind, the one-line reason's distinctive part)
    (Kind("mc_rowcosts", 3, {**VAL, "label_column": "y", "classes": json.dumps(CLASSES),
          "cost_matrix": json.dumps(MATRIX), "cost_fn_column": "loss"}, "csv",
          columns=("y", *F, "loss"), labels=tuple(CLASSES)),
     "name the column in its cell of cost_matrix"),
    (Kind("bin_bound_nofacet", 2, {**VAL, "max_abs_dppl": "0.1"}, "csv", header=False),
     "need 'facet_column'"),
    (Kind("mc_platt", 3, {"label_column": "y", "classes": json.dumps(CLASSES),
          "cost_matrix": json.dumps(MATRIX), "calibrator": "platt"}, "csv", labels=tuple(CLASSES)),
     "platt is for two classes"),
    (Kind("bin_average_validation", 2, {**VAL, "served_model": "fold_average"}, "csv",
          header=False), "with 'validation' there are none"),
]
KINDS = {kind.name: kind for kind in TRAINED}

CONTENT = ("csv", "json", "json_keyed", "jsonlines", "libsvm", "recordio")
ACCEPT = {"json": "application/json", "jsonlines": "application/jsonlines", "csv": "text/csv"}
FIELDS = ("all", "pick")
COSTS = ("model", "override")
REASONS = ("off", "on")
REASONS_K = 2
BINARY_OVERRIDE = "cost_fn=7"
CLASS_OVERRIDE = [[0, 2, 2], [1, 0, 3], [5, 1, 0]]
PICK = {2: ["decision", "score", "costs"], 3: ["expected_costs", "decision"]}
PICK_REASONS = {2: ["reasons"], 3: ["runner_up"]}
ALL = {2: ["score", "decision", "expected_cost_if_1", "expected_cost_if_0", "threshold", "costs",
           "rule"], 3: ["decision", "probabilities", "expected_costs", "costs", "rule"]}
ALL_REASONS = {2: ["reasons", "boundary_log_odds"], 3: ["reasons", "runner_up", "cost_gap"]}

SWEEP = {"bin_costs_csv": "4", "bin_rowcosts_empirical": "2", "bin_matrix2_csv": "3",
         "mc_text_header": "2"}  # kind -> --ratios
SWEEP_REFUSED = {"bin_rowcosts_empirical": "the tree gives per-row costs"}
TUNE = {"bin_costs_csv": "cost", "bin_facet_parquet_noval": "combined", "mc_text_header": "cost"}

def cell(*values, cell_id: str, refused: str | None = None):
    """One cell: ``refused`` is the distinctive part of its one-line refusal (None: it works)."""
    return pytest.param(*values, refused, id=cell_id)


@pytest.fixture(autouse=True)
def _cell_outcome(request, record_property):
    """What the cell is (works, or refused and why), in its report: tests/conftest.py counts the
    matrix from the reports, which reach pytest's main process also when xdist runs the tests."""
    refused = request.node.callspec.params.get("refused")
    record_property("combination", "refused" if refused else "works")
    record_property("refusal", refused or "")


# ------------------------------------------------------------------------------- fixtures


def _train_all(root: Path) -> dict:
    """Every kind (trained and refused) by ``costaware train --base-dir``, two at a time."""
    pending = [(k, None) for k in TRAINED] + list(REFUSED_TRAININGS)
    running, done = {}, {}
    while pending or running:
        while pending and len(running) < 2:
            kind, _ = pending.pop(0)
            base = write_kind(kind, root / kind.name)
            with open(root / f"{kind.name}.log", "wb") as log:  # a file: a pipe could fill up
                running[kind.name] = (base, subprocess.Popen(
                    [str(BIN / "costaware"), "train", "--base-dir", str(base)],
                    stdout=log, stderr=subprocess.STDOUT))
        for name, (base, proc) in list(running.items()):
            if proc.poll() is not None:
                log = (root / f"{name}.log").read_text(encoding="utf-8", errors="replace")
                done[name] = (base, proc.returncode, log)
                del running[name]
        time.sleep(0.05)
    return done


@pytest.fixture(scope="session")
def trainings(tmp_path_factory):
    return _train_all(tmp_path_factory.mktemp("matrix"))


def trained(trainings, name: str) -> tuple[Path, str]:
    base, code, log = trainings[name]
    assert code == 0, log[-3000:]
    assert "Traceback" not in log
    return base, log


@pytest.fixture(scope="session")
def models(trainings):
    cache = {}

    def get(name: str) -> SavedModel:
        if name not in cache:
            cache[name] = SavedModel(trained(trainings, name)[0] / "model")
        return cache[name]
    return get


@pytest.fixture(scope="session")
def servers(trainings, commands, tmp_path_factory):
    """One real ``serve`` (one worker) per trained kind, all started at once, each waited for when
    a cell first needs it."""
    logs = tmp_path_factory.mktemp("serve")
    started = {kind.name: Server(str(trained(trainings, kind.name)[0] / "model"), logs, workers=1)
               for kind in TRAINED}
    ready: set[str] = set()

    def get(name: str) -> Server:
        if name not in ready:
            started[name].wait_ready()
            ready.add(name)
        return started[name]
    try:
        yield get
    finally:
        for server in started.values():  # SIGTERM to all first: they drain in parallel
            if server.proc.poll() is None:
                server.proc.terminate()
        for server in started.values():
            server.stop()


COMMANDS: dict = {}  # cell id -> (trainings, models, work directory) -> argv of its CLI run


@pytest.fixture(scope="session")
def commands(trainings, models, tmp_path_factory, request):
    """Every selected CLI cell's command, run two at a time in the background from the start (they
    wait on subprocesses, which the served cells' checks overlap); a cell takes its own result."""
    root = tmp_path_factory.mktemp("cli")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    futures = {}
    selected = {item.callspec.id for item in request.session.items if hasattr(item, "callspec")}
    for cell_id, build in COMMANDS.items():
        if cell_id not in selected:
            continue
        work = root / cell_id
        work.mkdir()
        argv = build(trainings, models, work)
        futures[cell_id] = pool.submit(subprocess.run, argv, capture_output=True, text=True,
                                       timeout=600)
    try:
        yield lambda cell_id: (futures[cell_id].result(), root / cell_id)
    finally:
        pool.shutdown(cancel_futures=True)


@pytest.fixture(scope="session")
def http():
    with requests.Session() as session:
        yield session


# ------------------------------------------------------------------------------- requests

Request = collections.namedtuple("Request", "rows own names required")


def request_rows(model: SavedModel, kind: Kind, n: int = 12) -> Request:
    """The first ``n`` test rows as request rows (``request_columns``); every other row carries
    its own costs (a model with cost columns); row 3 has a missing feature."""
    test = channel_frames(kind)["test"].iloc[:n]
    features = [c for c in kind.columns if c not in ("y", "grp", "loss", "interest")]
    names = model.request_columns
    values = np.column_stack([test[c].to_numpy(np.float64) for c in features]
                             + [test[c].to_numpy(np.float64) for c in names[len(features):]])
    if n > 3:
        values[3, 1] = np.nan
    own = np.zeros(n, dtype=bool)
    if model.cost_columns:
        own[::2] = True
    return Request(values, own, names, len(names) - len(model.cost_columns))


def body_of(req: Request, content: str) -> tuple[bytes, str]:
    cells = [[None if math.isnan(v) else float(v) for v in row[:(len(row) if own else req.required)]]
             for row, own in zip(req.rows, req.own)]
    if content == "csv":
        text = "\n".join(",".join("" if v is None else repr(v) for v in row) for row in cells)
        return text.encode(), "text/csv"
    if content == "json":
        return json.dumps({"instances": cells}).encode(), "application/json"
    if content == "json_keyed":
        keyed = [{name: v for name, v in zip(req.names, row)} for row in cells]
        return json.dumps({"instances": keyed}).encode(), "application/json"
    if content == "libsvm":  # 1-based indices, a missing value left out
        return "\n".join(" ".join(f"{j + 1}:{v!r}" for j, v in enumerate(row) if v is not None)
                         for row in cells).encode(), "text/libsvm"
    if content == "recordio":  # dense float64 records, NaN missing, rows of either width
        return b"".join(recordio_writer.frame(recordio_writer.record(
            [math.nan if v is None else v for v in row], kind="f8")) for row in cells), \
            "application/x-recordio-protobuf"
    return "\n".join(json.dumps(row) for row in cells).encode(), "application/jsonlines"


def parse(response, accept: str, fields: list[str], k: int, classes: list) -> list[dict]:
    if accept == "json":
        return response.json()["predictions"]
    if accept == "jsonlines":
        return [json.loads(line) for line in response.text.split("\n")]
    out = []
    for values in csv.reader(io.StringIO(response.text)):
        row, at = {}, 0
        for name in fields:
            width = k if name in ("probabilities", "expected_costs") else 1
            part = values[at:at + width]
            at += width
            if width > 1:
                row[name] = {str(c): float(v) for c, v in zip(classes, part)}
            elif name in ("reasons",):
                row[name] = json.loads(part[0]) if part[0] else None
            elif name in ("costs", "rule", "runner_up") or (name == "decision" and k > 2):
                row[name] = part[0]
            elif name == "decision":
                row[name] = int(part[0])
            else:
                row[name] = float(part[0]) if part[0] else None
        assert at == len(values), (values, fields)
        out.append(row)
    return out


def close(got, want, rel=1e-9, tol=1e-12) -> bool:
    return got is not None and math.isclose(got, want, rel_tol=rel, abs_tol=tol)


def check_binary(rows: list[dict], want: dict, reasons: list | None, fields: list[str]):
    for i, row in enumerate(rows):
        assert list(row) == fields, (i, row)
        for name in fields:
            got = row[name]
            if name == "decision":
                assert got == int(want["decision"][i]) or want["near_tie"][i], (i, row)
            elif name in ("costs", "rule"):
                assert got == want[name][i], (i, name, got, want[name][i])
            elif name == "boundary_log_odds":
                z = want["boundary_log_odds"][i]
                assert (got is None) if math.isnan(z) else close(got, z, 1e-7, 1e-9), (i, got, z)
            elif name == "reasons":
                check_reasons(got, reasons[i], i)
            else:
                assert close(got, float(want[name][i])), (i, name, got, want[name][i])


def check_reasons(got, want, i):
    if want is None:
        assert got is None, (i, got)
        return
    assert len(got) == len(want), (i, got, want)
    by_feature = {name: (value, c) for name, value, c in want}
    contributions = [c for _, _, c in want]
    for position, reason in enumerate(got):
        # ties between contributions may order the features either way: each position's
        # contribution, and each feature's own value and contribution, are the oracle's
        assert math.isclose(reason["contribution"], contributions[position], abs_tol=1e-5), (i, got)
        value, contribution = by_feature[reason["feature"]]
        assert math.isclose(reason["contribution"], contribution, abs_tol=1e-5), (i, got)
        assert (reason["value"] is None and math.isnan(value)) or math.isclose(
            reason["value"], value, rel_tol=1e-6), (i, reason, value)


def check_classes(rows: list[dict], want: dict, reasons: list | None, fields: list[str],
                  classes: list, csv_text: bool):
    names = [str(c) for c in classes]
    for i, row in enumerate(rows):
        assert list(row) == fields, (i, row)
        for name in fields:
            got = row[name]
            if name == "decision":
                label = want["decision"][i]
                assert got == (str(label) if csv_text else label) or want["near_tie"][i], (i, got)
            elif name in ("probabilities", "expected_costs"):
                assert list(got) == names, got
                for j, c in enumerate(names):
                    assert close(got[c], float(want[name][i, j])), (i, name, c)
            elif name in ("costs", "rule"):
                assert got == want[name], (i, name, got)
            elif name == "runner_up":
                label = reasons[i]["runner_up"]
                assert got == (str(label) if csv_text else label) or want["near_tie"][i], (i, got)
            elif name == "cost_gap":
                assert close(got, reasons[i]["cost_gap"], 1e-9, 1e-9) or want["near_tie"][i]
            elif name == "reasons" and not want["near_tie"][i]:
                check_reasons(got, reasons[i]["reasons"], i)


# ------------------------------------------------------------------------------- served cells


def _served_cells():
    for kind in TRAINED:
        bound = "max_abs_dppl" in kind.hyperparameters
        for content in CONTENT:
            for accept in ACCEPT:
                for fields in FIELDS:
                    for costs in COSTS:
                        for reasons in REASONS:
                            refused = None
                            if costs == "override" and bound:
                                refused = "this model's decision rule was fitted under |DPPL| <="
                            yield cell(kind.name, content, accept, fields, costs, reasons,
                                       cell_id=f"{kind.name}-{content}-{accept}-{fields}-{costs}-"
                                               f"reasons_{reasons}", refused=refused)


ORACLE: dict = {}


def oracle(model: SavedModel, name: str, costs: str, reasons: str) -> tuple[dict, list | None]:
    """What the documented contract gives request_rows: each row's fields, and its reasons."""
    key = (name, costs, reasons)
    if key not in ORACLE:
        req = request_rows(model, KINDS[name])
        if KINDS[name].k == 2:
            override = dict([BINARY_OVERRIDE.split("=")]) if costs == "override" else None
            want = model.binary(req.rows, req.own, override)
            which = model.meta.get("reasons_for", "1")
            explained = (model.binary_reasons(req.rows, want, REASONS_K, which)
                         if reasons == "on" else None)
        else:
            want = model.classes_answer(req.rows, CLASS_OVERRIDE if costs == "override" else None)
            explained = model.class_reasons(req.rows, want, REASONS_K) if reasons == "on" else None
        ORACLE[key] = want, explained
    return ORACLE[key]


def assert_refused(response, status: int, reason: str):
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["status"] == status and "\n" not in body["error"] and "Traceback" not in body["error"]
    assert reason in body["error"], body["error"]


@pytest.mark.parametrize("name,content,accept,fields,costs,reasons,refused", list(_served_cells()))
def test_serve(servers, models, http, name, content, accept, fields, costs, reasons, refused):
    kind, model = KINDS[name], models(name)
    k = kind.k
    req = request_rows(model, kind)
    body, content_type = body_of(req, content)
    chosen = (ALL[k] + (ALL_REASONS[k] if reasons == "on" else [])) if fields == "all" else (
        PICK[k] + (PICK_REASONS[k] if reasons == "on" else []))
    attributes = []
    if costs == "override":
        attributes.append(BINARY_OVERRIDE if k == 2 else
                          "cost_matrix=" + json.dumps(CLASS_OVERRIDE).replace(" ", ""))
    if reasons == "on":
        attributes.append(f"reasons={REASONS_K}")
    headers = {"Content-Type": content_type,
               "Accept": ACCEPT[accept] + ("" if fields == "all" else ";fields=" + ",".join(chosen))}
    if attributes:
        headers[HEADER] = ",".join(attributes)
    response = http.post(servers(name).url + "/invocations", data=body, headers=headers)
    if refused:
        assert_refused(response, 400, refused)
        return
    assert response.status_code == 200, response.text[:1000]
    rows = parse(response, accept, chosen, k, model.classes if k > 2 else [])
    assert len(rows) == len(req.rows)
    want, explained = oracle(model, name, costs, reasons)
    if k == 2:
        check_binary(rows, want, explained, chosen)
        source = "request" if costs == "override" else "model"
    else:
        check_classes(rows, want, explained, chosen, model.classes, accept == "csv")
        source = want["costs"]
        if accept == "json":
            assert response.json()["policy"]["classes"] == list(kind.labels)
    assert f"costs_source={source}" in response.headers[HEADER]


# ------------------------------------------------------------------------------- refused requests

BINARY = [k.name for k in TRAINED if k.k == 2]
MULTI = [k.name for k in TRAINED if k.k > 2]
REQUEST_REFUSALS = [  # (id, kinds, change to a good request, status, the reason's distinctive part)
    ("unknown_cost", BINARY, {HEADER: "cost_fx=1"}, 400, "unknown cost 'cost_fx'"),
    ("matrix_on_binary", BINARY, {HEADER: "cost_matrix=[[0,1],[1,0]]"}, 400, "cost_matrix"),
    ("binary_cost_on_classes", MULTI, {HEADER: "cost_fn=2"}, 400, "this model has 3 classes"),
    ("matrix_wrong_size", MULTI, {HEADER: "cost_matrix=[[0,1],[1,0]]"}, 400,
     "2 x 2, but there are 3 classes"),
    ("reasons_zero", BINARY + MULTI, {HEADER: "reasons=0"}, 400, "must be a positive integer"),
    ("unknown_field", BINARY + MULTI, {"Accept": "application/json;fields=nope"}, 406, "nope"),
    ("reasons_field_without_reasons", BINARY + MULTI, {"Accept": "text/csv;fields=reasons"}, 406,
     "comes with reasons"),
    ("short_row", BINARY + MULTI, {"body": "drop_last_value"}, 400, "values"),
    ("not_a_number", BINARY + MULTI, {"body": "abc"}, 400, "'abc' is not a number"),
]


def _refusal_cells():
    for case, kinds, change, status, reason in REQUEST_REFUSALS:
        for name in kinds:
            yield cell(name, change, status, cell_id=f"{name}-{case}", refused=reason)
    yield cell("bin_rowcosts_empirical", {"body": "negative_cost"}, 400,
               cell_id="bin_rowcosts_empirical-negative_cost",
               refused="costs must be numbers >= 0")
    for name in ("mc_text_header", "mc_int_gzip"):  # the whole matrix, and nothing after it
        yield cell(name, {HEADER: "cost_matrix=[[0,1,1],[1,0,1],[1,1,0]]]"}, 400,
                   cell_id=f"{name}-matrix_trailing_text", refused="cost_matrix")


@pytest.mark.parametrize("name,change,status,refused", list(_refusal_cells()))
def test_serve_refuses(servers, models, http, name, change, status, refused):
    kind, model = KINDS[name], models(name)
    req = request_rows(model, kind, n=3)
    body, content_type = body_of(req, "csv")
    lines = body.decode().split("\n")
    edit = change.get("body")
    if edit == "drop_last_value":
        lines[0] = lines[0].rsplit(",", 1)[0] if req.own[0] is False or not model.cost_columns \
            else ",".join(lines[0].split(",")[:req.required - 1])
    elif edit == "abc":
        lines[0] = "abc," + lines[0].split(",", 1)[1]
    elif edit == "negative_cost":
        lines[0] = lines[0].rsplit(",", 1)[0] + ",-3"
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    headers.update({key: value for key, value in change.items() if key != "body"})
    response = http.post(servers(name).url + "/invocations", data="\n".join(lines).encode(),
                         headers=headers)
    assert_refused(response, status, refused)


# ------------------------------------------------------------------------------- training


@pytest.mark.parametrize("name,refused", [
    *(cell(kind.name, cell_id=f"train-{kind.name}") for kind in TRAINED),
    *(cell(kind.name, cell_id=f"train-{kind.name}", refused=reason)
      for kind, reason in REFUSED_TRAININGS)])
def test_train(trainings, models, name, refused):
    base, code, log = trainings[name]
    assert "Traceback" not in log.split("Reporting training")[0] or refused
    if refused:
        failure = (base / "output" / "failure").read_text()
        assert code != 0 and "\n" not in failure.strip() and "Traceback" not in failure
        assert refused in failure, failure
        assert not (base / "model" / "metadata.json").exists()
        return
    assert code == 0, log[-3000:]
    # the test channel's served cost in evaluation.json, recomputed by the oracle
    cost, _ = channel_cost(models(name), KINDS[name], "test")
    served = json.loads((base / "output" / "data" / "evaluation.json").read_text())[
        "channels"]["test"]["served"]
    per_row = served["expected_cost"] if "expected_cost" in served else served["cost"] / ROWS["test"]
    assert per_row == pytest.approx(cost, rel=1e-9)


def channel_rows(model: SavedModel, kind: Kind, channel: str):
    """A channel's rows as request rows, every row with its own costs; and its labels."""
    part = channel_frames(kind)[channel]
    features = [c for c in kind.columns if c not in ("y", "grp", "loss", "interest")]
    names = model.request_columns
    rows = np.column_stack([part[c].to_numpy(np.float64) for c in features]
                           + [part[c].to_numpy(np.float64) for c in names[len(features):]])
    return rows, part["y"].to_numpy()


def channel_cost(model: SavedModel, kind: Kind, channel: str) -> tuple[float, dict]:
    """The served decisions' mean realised cost on a channel, each row at its own costs."""
    rows, label = channel_rows(model, kind, channel)
    if kind.k > 2:
        answer = model.classes_answer(rows)
        index = {v: i for i, v in enumerate(kind.labels)}
        truth = np.array([index[v] for v in label])
        matrix = np.asarray(model.policy["cost_matrix"], dtype=float)
        return float(np.mean(matrix[truth, answer["index"]])), answer
    own = np.ones(len(rows), dtype=bool)
    answer = model.binary(rows, own)
    cells = {c: np.full(len(rows), model.policy["costs"]["cost_" + c]) for c in ("fp", "fn", "tp", "tn")}
    for cell_name, column in model.cost_columns.items():
        cells[cell_name] = rows[:, model.request_columns.index(column)]
    return realised_cost(answer["decision"], label, cells), answer


# ------------------------------------------------------------------------------- costaware predict


def _predict_command(name: str, case: str):
    def build(trainings, models, work):
        kind, model = KINDS[name], models(name)
        body, _ = body_of(request_rows(model, kind), "csv")
        if case == "abc":
            body = b"abc," + body.split(b",", 1)[1]
        (work / "rows.csv").write_bytes(body)
        return [str(BIN / "costaware"), "predict", "--model-dir",
                str(trained(trainings, name)[0] / "model"), "--input", str(work / "rows.csv")]
    return build


def _predict_cells():
    for kind in TRAINED:
        yield kind.name, "rows", None
    for name in ("bin_rowcosts_empirical", "mc_text_header"):
        yield name, "abc", "'abc' is not a number"


def _predict_params():
    for name, case, refused in _predict_cells():
        cell_id = f"predict-{name}" + ("" if case == "rows" else "-not_a_number")
        COMMANDS[cell_id] = _predict_command(name, case)
        yield cell(name, cell_id=cell_id, refused=refused)


@pytest.mark.parametrize("name,refused", list(_predict_params()))
def test_predict(commands, models, request, name, refused):
    result, _ = commands(request.node.callspec.id)
    kind, model = KINDS[name], models(name)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    if refused:
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert refused in result.stderr
        return
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.strip().split("\n")]
    req = request_rows(model, kind)
    if kind.k == 2:
        check_binary(rows, model.binary(req.rows, req.own), None, ALL[2])
    else:
        check_classes(rows, model.classes_answer(req.rows), None, ALL[3], model.classes, False)


# ------------------------------------------------------------------------------- sweep


def _sweep_cells():
    for name, ratios in SWEEP.items():
        cell_id = f"sweep-{name}"
        COMMANDS[cell_id] = lambda trainings, models, work, name=name, ratios=ratios: [
            str(BIN / "costaware"), "sweep", "--tree", str(trained(trainings, name)[0]),
            "--work", str(work / "sweep"), "--ratios", ratios, "--jobs", "2", "--timeout", "300"]
        if KINDS[name].k > 2:
            yield cell(name, cell_id=cell_id, refused="class")
        elif name in SWEEP_REFUSED:
            yield cell(name, cell_id=cell_id, refused=SWEEP_REFUSED[name])
        else:
            yield cell(name, cell_id=cell_id)


@pytest.mark.parametrize("name,refused", list(_sweep_cells()))
def test_sweep(trainings, commands, request, name, refused):
    result, work = commands(request.node.callspec.id)
    work = work / "sweep"
    base, _ = trained(trainings, name)
    kind = KINDS[name]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    if refused:  # up front: one line, and no training started
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
        assert refused in result.stderr
        assert not list(work.glob("ratio-*"))
        return
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(work / "sweep.csv")
    assert len(table) >= 1 and table["tree_ratio"].any()
    tree = SavedModel(base / "model")
    rows, label = channel_rows(tree, kind, "test")
    cells = {c: np.full(len(rows), tree.policy["costs"]["cost_" + c]) for c in ("fp", "fn", "tp", "tn")}
    for cell_name, column in tree.cost_columns.items():  # priced at the tree's costs, every row's own
        cells[cell_name] = rows[:, tree.request_columns.index(column)]
    for _, run in table.iterrows():
        model = SavedModel(work / run["dir"] / "model")
        answer = model.binary(rows, np.ones(len(rows), dtype=bool))
        d, y = answer["decision"], label
        assert [run["test_tp"], run["test_fp"], run["test_fn"], run["test_tn"]] == [
            int(np.sum((d == 1) & (y == 1))), int(np.sum((d == 1) & (y == 0))),
            int(np.sum((d == 0) & (y == 1))), int(np.sum((d == 0) & (y == 0)))], run
        assert run["test_cost_per_decision"] == pytest.approx(realised_cost(d, y, cells), rel=1e-6)


# ------------------------------------------------------------------------------- tune


def _tune_cells():
    for name, objective in TUNE.items():
        COMMANDS[f"tune-{name}"] = lambda trainings, models, work, name=name, objective=objective: [
            str(BIN / "costaware"), "tune", "--tree", str(trained(trainings, name)[0]), "--work",
            str(work / "tune"), "--trials", "2", "--jobs", "2", "--no-baseline", "--quiet",
            "--range", "num_round=off", "--objective", objective, "--seed", "1"]
        yield cell(name, cell_id=f"tune-{name}")


@pytest.mark.parametrize("name,refused", list(_tune_cells()))
def test_tune(commands, request, name, refused):
    result, work = commands(request.node.callspec.id)
    work = work / "tune"
    kind = KINDS[name]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    best = json.loads((work / "best.json").read_text())
    trials = pd.read_csv(work / "trials.csv")
    assert (trials["state"] == "COMPLETE").sum() == 2
    metric = best["objective"][0]
    # a trial excluded from the choice (it decides alike for every row: tuning.md) is not a best
    complete = trials.loc[(trials["state"] == "COMPLETE") & trials["excluded"].isna(), metric]
    best_value = complete.min() if objective_minimised(metric) else complete.max()
    assert best["metrics"][metric] == best_value
    if not kind.validation:  # out of fold: the fold models that scored the rows are not saved
        return
    model = SavedModel(Path(best["model_dir"]) if Path(best["model_dir"]).is_absolute()
                       else work / best["model_dir"])
    cost, answer = channel_cost(model, kind, "validation")
    if metric == "validation:expected_cost":
        assert best["metrics"][metric] == pytest.approx(cost, rel=1e-6)
    else:  # combined = (3 AUC + (1 - |DPPL|)) / 4 on the validation rows
        assert metric == "validation:combined_objective"
        rows, label = channel_rows(model, kind, "validation")
        facet = model.sensitive(rows[:, model.request_columns.index("grp")])
        decision = answer["decision"]
        dppl = decision[~facet].mean() - decision[facet].mean()
        want = (3 * auc(answer["score"], label) + (1 - abs(dppl))) / 4
        assert best["metrics"][metric] == pytest.approx(want, rel=1e-6)


def objective_minimised(metric: str) -> bool:
    from costaware.metrics import log_lines as metric_log

    return metric_log.objective_direction(metric) == "Minimize"


# ------------------------------------------------------------------------------- tuner-config


def _tuner_config_command(name: str, objective: str):
    def build(trainings, models, work):
        base, _ = trained(trainings, name)
        statics = json.loads((base / "input" / "config" / "hyperparameters.json").read_text())
        argv = [str(BIN / "costaware"), "tuner-config", "--objective", objective]
        for key, value in statics.items():
            argv += ["--static", f"{key}={value}"]
        return argv
    return build


def _tuner_cells():
    cells = [(kind.name, "cost", "", None) for kind in TRAINED] + [
        ("mc_text_header", "validation:f1", "-f1", "a two-class metric"),
        ("bin_costs_csv", "test:expected_cost", "-test", "test"),
        ("bin_costs_csv", "validation:dppl", "-dppl", "facet_column"),
        ("bin_facet_parquet_noval", "validation:di", "-di", "fairness_metrics")]
    for name, objective, suffix, refused in cells:
        cell_id = f"tuner_config-{name}{suffix}"
        COMMANDS[cell_id] = _tuner_config_command(name, objective)
        yield cell(name, cell_id=cell_id, refused=refused)


@pytest.mark.parametrize("name,refused", list(_tuner_cells()))
def test_tuner_config(trainings, models, commands, request, name, refused):
    result, _ = commands(request.node.callspec.id)
    base, log = trained(trainings, name)
    kind = KINDS[name]
    statics = json.loads((base / "input" / "config" / "hyperparameters.json").read_text())
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    if refused:
        lines = [line for line in result.stderr.splitlines() if "placeholders" not in line]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert refused in lines[0]
        return
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)
    metric = request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
    assert request["TrainingJobDefinition"]["StaticHyperParameters"] == {
        **{key: str(value) for key, value in statics.items()}, "_tuning_objective_metric": metric}
    # a tree without a validation channel logs its held-out rows as train: (the job the request
    # describes has a validation channel)
    logged = metric if kind.validation else metric.replace("validation:", "train:")
    [definition] = [d for d in request["TrainingJobDefinition"]["AlgorithmSpecification"][
        "MetricDefinitions"] if d["Name"] == logged]
    values = [float(v) for v in re.findall(definition["Regex"], log)]
    assert len(values) >= 2  # every round, and the kept model's
    if kind.hyperparameters.get("calibration_data") == "validation":
        assert values[-1] == pytest.approx(channel_cost(models(name), kind, "validation")[0],
                                           rel=1e-6)
    # else out of fold: the fold models that scored those rows are not saved
