"""SageMaker's multi-model contract (``SAGEMAKER_MULTI_MODEL=true``) against the real ``serve``
with 4 workers: load, list with pagination, get, invoke, 409, unload, 404 after, 507 from a small
budget, 100 models, the refusals of the load (url, symbolic links, names, files, a broken model),
and every answer byte for byte what the same model answers served alone."""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from costaware import machine
from costaware.serving.config import ServerConfigError, ServerSettings

import recordio_writer
from support import (HEADER, WINE_CLASSES, WINE_MATRIX, Server, csv_body, libsvm_text, run_train,
                     synthetic, wine_frame, write_tree)

WORKERS = 4
TARGET = "X-Amzn-SageMaker-Target-Model"


# ------------------------------------------------------------------------------------ fixtures


def _train(base: Path, hyperparameters: dict, channels: dict) -> Path:
    write_tree(base, hyperparameters, channels)
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return base / "model"


def _credit(n: int) -> pd.DataFrame:
    x, y = synthetic(n, d=4, seed=3)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(x, columns=["income", "debt", "age", "tenure"])
    frame.insert(0, "default", y)
    frame["loss"] = rng.uniform(500, 20000, n).round(2)
    frame["interest"] = (rng.uniform(0.03, 0.15, n) * frame["loss"]).round(2)
    return frame


@pytest.fixture(scope="module")
def trained(breast_cancer_tree, tmp_path_factory):
    """Three models by the real ``train``: the demo's (two classes), one with per-row cost
    columns, one of three classes; and request rows for each."""
    credit = _credit(500)
    costed = _train(tmp_path_factory.mktemp("costed") / "ml",
                    {"num_round": "8", "max_depth": "3", "label_column": "default",
                     "cost_fn_column": "loss", "cost_fp_column": "interest",
                     "cost_fn": "8000", "cost_fp": "700"},
                    {"train": {"t.csv": credit.iloc[:300].to_csv(index=False)},
                     "validation": {"v.csv": credit.iloc[300:450].to_csv(index=False)}})
    wine = wine_frame()
    three = _train(tmp_path_factory.mktemp("wine") / "ml",
                   {"num_round": "6", "max_depth": "3", "label_column": "cultivar",
                    "classes": json.dumps(WINE_CLASSES), "cost_matrix": json.dumps(WINE_MATRIX)},
                   {"train": {"t.csv": wine.iloc[:120].to_csv(index=False)},
                    "validation": {"v.csv": wine.iloc[120:150].to_csv(index=False)}})
    demo_rows = np.loadtxt(breast_cancer_tree / "input" / "data" / "test" / "test.csv",
                           delimiter=",")[:4, 1:]
    costed_rows = credit.iloc[450:454][["income", "debt", "age", "tenure", "interest", "loss"]] \
        .to_numpy(dtype=np.float64)
    return {"demo": (breast_cancer_tree / "model", demo_rows),
            "costed": (costed, costed_rows),
            "three": (three, wine.iloc[150:154].drop(columns="cultivar").to_numpy(np.float64))}


@pytest.fixture(scope="module")
def root(trained, tmp_path_factory) -> Path:
    """The models' root as SageMaker lays it out: /opt/ml/models/{name}/model."""
    top = tmp_path_factory.mktemp("models")
    for name, (directory, _) in trained.items():
        shutil.copytree(directory, top / name / "model")
    return top


@pytest.fixture(scope="module")
def server(root, tmp_path_factory):
    srv = Server(str(root), tmp_path_factory.mktemp("logs"), workers=WORKERS,
                 SAGEMAKER_MULTI_MODEL="true", COSTAWARE_MODELS_ROOT=str(root))
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def alone(trained, tmp_path_factory):
    """Each model served alone by the single-model server."""
    servers = {}
    try:
        for name, (directory, _) in trained.items():
            servers[name] = Server(str(directory), tmp_path_factory.mktemp("logs"), workers=1)
        yield {name: srv.wait_ready() for name, srv in servers.items()}
    finally:
        for srv in servers.values():
            srv.stop()


# ------------------------------------------------------------------------------------ helpers


def load(server, name: str, url) -> requests.Response:
    return requests.post(server.url + "/models", json={"model_name": name, "url": str(url)})


def unload(server, name: str) -> requests.Response:
    return requests.delete(f"{server.url}/models/{name}")


def invoke(server, name: str, body: bytes, **headers) -> requests.Response:
    return requests.post(f"{server.url}/models/{name}/invoke", data=body, headers=headers)


def on_every_worker(server, name: str, body: bytes, **headers) -> list[requests.Response]:
    """The same invocation on new connections, 8 at a time, until each of the server's workers
    answered some (the access log says which did); every answer."""
    answers, pids = [], set()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(50):
            answers += pool.map(lambda _: invoke(server, name, body, **headers), range(8))
            pids = {line["pid"] for line in server.access_log()
                    if line["path"] == f"/models/{name}/invoke"}
            if len(pids) == WORKERS:
                break
    assert len(pids) == WORKERS, f"only workers {pids} answered"
    return answers


def same_answer(ours: requests.Response, theirs: requests.Response) -> None:
    assert (ours.status_code, ours.headers["Content-Type"], ours.headers.get(HEADER)) == \
        (theirs.status_code, theirs.headers["Content-Type"], theirs.headers.get(HEADER))
    assert ours.content == theirs.content


# ------------------------------------------------------------------------------------ the contract


def test_ping_answers_with_no_model_loaded(server):
    assert requests.get(server.url + "/ping").json() == {"status": "ok"}
    assert requests.get(server.url + "/models").json() == {"models": []}


def test_load_invoke_on_every_worker_409_unload_and_404_after(server, root, trained):
    body = csv_body(trained["demo"][1])
    loaded = load(server, "demo", root / "demo" / "model")
    assert loaded.status_code == 200, loaded.text
    assert loaded.json() == {"modelName": "demo", "modelUrl": str(root / "demo" / "model"),
                             "status": "loaded"}
    # the next requests, on any worker, find it: no 404 after the 200
    answers = on_every_worker(server, "demo", body, **{"Content-Type": "text/csv", TARGET:
                                                     "region-7/demo.tar.gz"})
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    logged = [line for line in server.access_log() if line["path"] == "/models/demo/invoke"]
    assert {(line["model"], line["target_model"]) for line in logged} == \
        {("demo", "region-7/demo.tar.gz")}

    again = load(server, "demo", root / "demo" / "model")
    assert again.status_code == 409
    assert again.json() == {"error": "model 'demo' is already loaded", "status": 409}
    assert requests.get(server.url + "/models/demo").json() == \
        {"modelName": "demo", "modelUrl": str(root / "demo" / "model")}

    assert unload(server, "demo").status_code == 200
    assert unload(server, "demo").status_code == 404
    gone = requests.get(server.url + "/models/demo")
    assert gone.status_code == 404 and gone.json()["error"] == "model 'demo' is not loaded"
    # ... and no worker still answers it
    after = on_every_worker(server, "demo", body, **{"Content-Type": "text/csv"})
    assert {a.status_code for a in after} == {404}
    assert {a.content for a in after} == \
        {b'{"error":"model \'demo\' is not loaded","status":404}'}


def _csv(name: str, rows: np.ndarray) -> bytes:
    """Rows as CSV; the per-row cost model's first row without its costs (the model's then)."""
    if name != "costed":
        return csv_body(rows)
    return csv_body(rows[:1, :4]) + csv_body(rows[1:])


def _requests(name: str, rows: np.ndarray) -> list[tuple[bytes, dict]]:
    """Bodies and headers exercising formats, fields, overrides, reasons and refusals."""
    csv = _csv(name, rows)
    listed = json.dumps({"instances": [[None if np.isnan(v) else v for v in row]
                                       for row in rows.tolist()]}).encode()
    cases = [
        (csv, {"Content-Type": "text/csv"}),
        (csv, {"Content-Type": "text/csv", "Accept": "text/csv"}),
        (csv, {"Content-Type": "text/csv", "Accept": "application/jsonlines;fields=score,decision"}),
        (listed, {"Content-Type": "application/json", "Accept": "application/json"}),
        (recordio_writer.body(rows, kind="f8", sparse=True),
         {"Content-Type": "application/x-recordio-protobuf", "Accept": "text/csv"}),
        (csv, {"Content-Type": "text/csv", HEADER: "reasons=2"}),
        (csv + b"1,2\n", {"Content-Type": "text/csv"}),  # a short row: 400
        (csv, {"Content-Type": "text/csv", "Accept": "image/png"}),  # 406
        (csv, {"Content-Type": "application/x-npy"}),  # 415
        (csv, {"Content-Type": "text/csv", HEADER: "cost_bogus=3"}),  # 400
    ]
    if name != "three":
        cases.append((csv, {"Content-Type": "text/csv", HEADER: "cost_fn=250000"}))
    return cases


def test_every_answer_is_the_model_served_alone(server, root, trained, alone):
    """Two classes, per-row costs and three classes behind one endpoint, each answer equal byte
    for byte (body, media type, custom attributes) to the single-model server's."""
    for name in trained:
        assert load(server, name, root / name / "model").status_code == 200
    try:
        for name, (_, rows) in trained.items():
            for body, headers in _requests(name, rows):
                same_answer(invoke(server, name, body, **headers),
                            requests.post(alone[name].url + "/invocations", data=body,
                                          headers=headers))
        costed = invoke(server, "costed", _csv("costed", trained["costed"][1]),
                        **{"Content-Type": "text/csv", "Accept": "application/json"}).json()
        assert [p["costs"] for p in costed["predictions"]] == ["model", "row", "row", "row"]
        three = invoke(server, "three", csv_body(trained["three"][1]),
                       **{"Content-Type": "text/csv", "Accept": "application/json"}).json()
        assert {p["decision"] for p in three["predictions"]} <= set(WINE_CLASSES)
    finally:
        for name in trained:
            unload(server, name)


def test_one_hundred_models_listed_page_by_page(server, root, trained):
    source = trained["costed"][0]
    names = [f"segment-{i:03d}" for i in range(100)]
    for name in names:
        shutil.copytree(source, root / name / "model", dirs_exist_ok=True)
    try:
        for name in names:
            answer = load(server, name, root / name / "model")
            assert answer.status_code == 200, answer.text
        listed, token, pages = [], None, 0
        while True:
            query = {"max_results": 7, **({"next_page_token": token} if token else {})}
            page = requests.get(server.url + "/models", params=query).json()
            assert len(page["models"]) <= 7
            listed += page["models"]
            pages += 1
            token = page.get("nextPageToken")
            if token is None:
                break
        assert pages == 15
        assert listed == [{"modelName": n, "modelUrl": str(root / n / "model")} for n in names]
        body = csv_body(trained["costed"][1])
        first = invoke(server, names[0], body, **{"Content-Type": "text/csv"})
        assert first.status_code == 200
        for name in names[1::9]:
            assert invoke(server, name, body, **{"Content-Type": "text/csv"}).content == \
                first.content
        bad = requests.get(server.url + "/models", params={"max_results": 0})
        assert bad.status_code == 400 and "max_results" in bad.json()["error"]
    finally:
        for name in names:
            unload(server, name)
    assert requests.get(server.url + "/models").json() == {"models": []}


# ------------------------------------------------------------------------------------ refusals


def test_the_load_refuses_urls_names_and_files_it_must_not_read(server, root, tmp_path):
    model = root / "demo" / "model"
    outside = tmp_path / "outside"
    shutil.copytree(model, outside)
    (root / "escape").mkdir(exist_ok=True)
    link = root / "escape" / "model"
    if not link.is_symlink():
        link.symlink_to(outside)
    pickled = root / "pickled" / "model"
    shutil.copytree(model, pickled, dirs_exist_ok=True)
    (pickled / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    linked_file = root / "linked-file" / "model"
    linked_file.mkdir(parents=True, exist_ok=True)
    shutil.copy(model / "metadata.json", linked_file)
    if not (linked_file / "xgboost-model.ubj").is_symlink():
        (linked_file / "xgboost-model.ubj").symlink_to(outside / "xgboost-model.ubj")
    odd_baseline = root / "odd-baseline" / "model"
    shutil.copytree(model, odd_baseline, dirs_exist_ok=True)
    (odd_baseline / "baseline" / "notes.txt").write_text("hello")
    nested = root / "nested" / "model"
    shutil.copytree(model, nested / "inner", dirs_exist_ok=True)
    shutil.copytree(model, nested, dirs_exist_ok=True)

    refusals = {
        ("a", f"{root}/demo/../demo/model"): "has a '..' part",
        ("a", str(outside)): "is outside the models' root",
        ("a", "/etc"): "is outside the models' root",
        ("a", "demo/model"): "is not an absolute path",
        ("a", "/" + "x" * 5000): "at most 4096",
        ("a", str(link)): "leads outside the models' root",
        ("a", str(root / "missing")): "does not exist",
        ("a", str(pickled)): f"{pickled}/model.pkl is not a costaware model file",
        ("a", str(linked_file)): "xgboost-model.ubj is a symbolic link",
        ("a", str(odd_baseline)): f"{odd_baseline}/baseline/notes.txt is not a costaware model",
        ("a", str(nested)): f"{nested}/inner is not a costaware model file",
        ("a/b", str(model)): "holds a path separator",
        ("a\\b", str(model)): "holds a path separator",
        ("a\x01", str(model)): "holds a control character",
        ("", str(model)): "non-empty string",
        ("x" * 257, str(model)): "at most 256",
        ("..", str(model)): "is not a name",
    }
    for (name, url), expected in refusals.items():
        answer = load(server, name, url)
        assert answer.status_code == 400, (name, url, answer.text)
        message = answer.json()["error"]
        assert expected in message and "\n" not in message, (name, url, message)
    for body in (b"[]", b"{", b'{"model_name": "a"}'):
        answer = requests.post(server.url + "/models", data=body)
        assert answer.status_code == 400 and answer.json()["error"]
    assert requests.get(server.url + "/models").json() == {"models": []}


def test_a_broken_model_is_refused_at_load(server, root):
    broken = root / "broken" / "model"
    shutil.copytree(root / "demo" / "model", broken, dirs_exist_ok=True)
    (broken / "xgboost-model.ubj").write_bytes(b"\x00\x01not a booster")
    answer = load(server, "broken", broken)
    assert answer.status_code == 400
    message = answer.json()["error"]
    assert message.startswith("model 'broken' cannot be loaded: ") and "xgboost-model.ubj" in message
    assert "\n" not in message
    (broken / "xgboost-model.ubj").unlink()
    assert "xgboost-model.ubj is missing" in load(server, "broken", broken).json()["error"]
    assert requests.get(server.url + "/models/broken").status_code == 404


def test_a_model_that_does_not_fit_is_507_until_another_is_unloaded(root, tmp_path):
    """A budget of 1 MiB over 2 workers: the demo's model (its size on disk charged in each
    worker) fits as often as the budget holds it; the next is a 507 until SageMaker unloads one."""
    size = sum((root / "demo" / "model" / f).stat().st_size
               for f in ("xgboost-model.ubj", "metadata.json"))
    fits = (1024 * 1024) // (2 * size)
    assert fits >= 1
    srv = Server(str(root), tmp_path, workers=2, SAGEMAKER_MULTI_MODEL="true",
                 COSTAWARE_MODELS_ROOT=str(root), COSTAWARE_MODELS_MEMORY_MB="1")
    try:
        srv.wait_ready()
        for i in range(fits):
            assert load(srv, f"m{i}", root / "demo" / "model").status_code == 200
        full = load(srv, "one-more", root / "demo" / "model")
        assert full.status_code == 507
        assert full.json()["error"].startswith(f"model 'one-more' needs {2 * size} bytes")
        assert requests.get(srv.url + "/models/one-more").status_code == 404
        assert unload(srv, "m0").status_code == 200
        assert load(srv, "one-more", root / "demo" / "model").status_code == 200
    finally:
        srv.stop()


def test_the_switch_takes_true_or_false_only():
    assert ServerSettings.from_env({"SAGEMAKER_MULTI_MODEL": "TRUE"}).multi_model
    assert not ServerSettings.from_env({"SAGEMAKER_MULTI_MODEL": "false"}).multi_model
    assert not ServerSettings.from_env({}).multi_model
    with pytest.raises(ServerConfigError, match="SAGEMAKER_MULTI_MODEL='yes': set it to true"):
        ServerSettings.from_env({"SAGEMAKER_MULTI_MODEL": "yes"})
    with pytest.raises(ServerConfigError, match="COSTAWARE_MODELS_MEMORY_MB=0 must be"):
        ServerSettings.from_env({"COSTAWARE_MODELS_MEMORY_MB": "0"})


def test_the_memory_bound_reads_this_process_cgroup_or_the_machine():
    with open("/proc/meminfo") as handle:
        total = int(next(line for line in handle if line.startswith("MemTotal:")).split()[1]) * 1024
    assert 0 < machine.memory_in_use_bytes() < machine.memory_limit_bytes() <= total


def test_the_requests_sagemaker_sends_for_the_python_sdks_multidatamodel(server, root, trained):
    """``MultiDataModel(...).deploy()`` then ``predictor.predict(rows, target_model="eu/demo.tar.gz")``
    with ``CSVSerializer`` and ``JSONDeserializer`` (the SDK is not a test dependency: these are
    the requests SageMaker makes of the container for it): the model copied below the root under
    an opaque name, loaded, invoked with the target model's relative path in a header."""
    opaque = "5f2b1c0e9d8a7b6c5f2b1c0e9d8a7b6c"
    shutil.copytree(root / "demo" / "model", root / opaque / "model", dirs_exist_ok=True)
    assert load(server, opaque, f"{root}/{opaque}/model").status_code == 200
    try:
        answer = invoke(server, opaque, csv_body(trained["demo"][1]),
                        **{"Content-Type": "text/csv", "Accept": "application/json",
                           TARGET: "eu/demo.tar.gz"})
        assert answer.status_code == 200
        assert len(answer.json()["predictions"]) == len(trained["demo"][1])
        line = [entry for entry in server.access_log() if entry.get("model") == opaque][-1]
        assert line["target_model"] == "eu/demo.tar.gz" and line["rows"] == 4
    finally:
        assert unload(server, opaque).status_code == 200


@pytest.mark.parametrize("answers", [{"COSTAWARE_RESPONSE_SHAPE": "builtin"},
                                     {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probabilities"}])
def test_the_server_settings_reach_every_loaded_model(root, trained, tmp_path, answers):
    """Combinations: a multi-model endpoint in the built-in container's response shape (its
    scores, or its selectable answers), with a default Accept of JSON Lines, answers libsvm, CSV
    and RecordIO requests (no Accept, and */*) for a two-class and a 3-class model byte for byte
    as each model served alone with the same settings (the settings are the server's, every
    model loaded the way the server serves one)."""
    settings = {**answers, "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/jsonlines"}
    keys = ({"predicted_label", "probabilities"} if "SAGEMAKER_INFERENCE_OUTPUT" in answers
            else {"score"})
    for part in ("multi", "demo", "three"):
        (tmp_path / part).mkdir()
    multi = Server(str(root), tmp_path / "multi", workers=2, SAGEMAKER_MULTI_MODEL="true",
                   COSTAWARE_MODELS_ROOT=str(root), **settings)
    alone = {name: Server(str(trained[name][0]), tmp_path / name, workers=1, **settings)
             for name in ("demo", "three")}
    try:
        multi.wait_ready()
        for srv in alone.values():
            srv.wait_ready()
        for name, srv in alone.items():
            assert load(multi, name, root / name / "model").status_code == 200
            rows = trained[name][1]
            cases = [(libsvm_text(None, rows).encode(), {"Content-Type": "text/libsvm"}),
                     (recordio_writer.body(rows, kind="f8"),
                      {"Content-Type": "application/x-recordio-protobuf"}),
                     (csv_body(rows), {"Content-Type": "text/csv", "Accept": "*/*"}),
                     (csv_body(rows), {"Content-Type": "text/csv", "Accept": "text/csv"})]
            recordio_answer = {"Content-Type": "text/csv",
                               "Accept": "application/x-recordio-protobuf"}
            if keys != {"score"} and name == "demo":
                cases.append((csv_body(rows), recordio_answer))
            elif keys != {"score"}:  # the wine classes' text labels: no float32 tensor holds them
                refused = invoke(multi, name, csv_body(rows), **recordio_answer)
                assert refused.status_code == 406
                assert "predicted_label holds text class labels" in refused.json()["error"]
            for body, headers in cases:
                ours = invoke(multi, name, body, **headers)
                assert ours.status_code == 200, ours.text
                same_answer(ours, requests.post(srv.url + "/invocations", data=body,
                                                headers=headers))
            # the built-in shape's JSON Lines: one {"score": ...} per row, no decision; or the
            # selected keys
            lines = invoke(multi, name, csv_body(rows), **{"Content-Type": "text/csv"})
            assert lines.headers["Content-Type"].startswith("application/jsonlines")
            got = [json.loads(line) for line in lines.text.splitlines()]
            assert len(got) == len(rows) and all(set(a) == keys for a in got)
    finally:
        multi.stop()
        for srv in alone.values():
            srv.stop()


def test_a_registry_that_cannot_be_written_is_507_and_records_nothing(tmp_path, monkeypatch):
    """A full (or read-only) file system under the registry: the load is a 507 naming why, not a
    500, and no entry is left behind."""
    import errno
    import os

    from costaware import storage
    from costaware.serving import multi_model
    from costaware.serving.request_error import RequestError

    registry = multi_model.Registry(str(tmp_path / "registry"), 2, 10 ** 9)

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(storage, "atomic_write", full)
    entry = multi_model.Entry("m", "/opt/ml/models/m", "/opt/ml/models/m", 100, "t")
    with pytest.raises(RequestError) as refused:
        registry.add(entry)
    assert refused.value.status == 507
    assert "cannot be recorded" in refused.value.message and "No space left" in refused.value.message
    assert registry.entries() == {}


def test_a_model_unloaded_or_reloaded_while_a_worker_reads_it_is_not_a_500(trained, tmp_path):
    """The three outcomes of a worker's read of a model whose files are gone when it reads them,
    with the real registry and model loader; another worker's moves happen while this one reads
    (its load function does them, then reads as the server's does): unloaded (its directory
    removed), the request is told it is not loaded (``None``: 404, or a new unpacking); unloaded
    and loaded again from another directory, the new load's files answer; still recorded as it
    was, its files gone, a 500 naming why."""
    from costaware.serving import multi_model
    from costaware.serving.invocation import Invocations
    from costaware.serving.request_error import RequestError

    registry = multi_model.Registry(str(tmp_path / "registry"), 2, 10 ** 9)
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(trained["demo"][0], first)
    shutil.copytree(trained["demo"][0], second)
    entry = multi_model.Entry("m", "m.tar.gz", str(first), 100, "t1", unpacked=True)
    moves = []

    def load(directory: str) -> Invocations:
        while moves:
            moves.pop(0)()
        return Invocations.load(directory, 1)

    cache = multi_model.ModelCache(registry, str(tmp_path), load, str(tmp_path), str(tmp_path))

    def unload():
        registry.remove("m")  # removes the unpacked directory too

    def load_again():
        registry.add(multi_model.Entry("m", "m.tar.gz", str(second), 100, "t2", unpacked=True))

    registry.add(entry)
    cache.sync()
    moves[:] = [unload]
    assert cache.invocations("m") is None and not first.exists()

    shutil.copytree(trained["demo"][0], first)
    registry.add(entry)
    cache.loaded.clear()
    cache.sync()
    moves[:] = [unload, load_again]
    served = cache.invocations("m")
    assert served is not None and cache.loaded["m"][0] == "t2"

    registry.remove("m")
    shutil.copytree(trained["demo"][0], first)
    registry.add(entry)
    cache.loaded.clear()
    cache.sync()
    moves[:] = [lambda: shutil.rmtree(first)]
    with pytest.raises(RequestError) as broken:
        cache.invocations("m")
    assert broken.value.status == 500 and "cannot load it now" in broken.value.message


# ------------------------------------------------------------------------------------ local mode
# The SageMaker Python SDK's local mode (sagemaker 2.257.7) runs a MultiDataModel as one container
# and never calls /models: it mounts the model data prefix's archives at /opt/ml/model and posts
# every predict(data, target_model=...) to /invocations with the target in a header. It does not
# set SAGEMAKER_MULTI_MODEL (local/entities.py:626-628 passes the container's Environment and
# ModelDataUrl only, not its Mode): the MultiDataModel's env must.


def _archive(model_dir: Path, path: Path, top: str | None = None, extra: dict | None = None,
             pad_metadata_to: int | None = None) -> Path:
    """``model.tar.gz`` of a model directory as a training job writes it (each file at its name
    below the directory; ``top="."``: as ``tar -C model .`` writes it), with ``extra`` members
    (name -> a TarInfo maker) and ``metadata.json`` padded with spaces to a size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(model_dir.rglob("*")):
            name = str(file.relative_to(model_dir))
            arcname = f"{top}/{name}" if top else name
            data = file.read_bytes() if file.is_file() else None
            if name == "metadata.json" and pad_metadata_to:
                data += b" " * (pad_metadata_to - len(data))
            info = tarfile.TarInfo(arcname)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for make in (extra or {}).values():
            info, data = make()
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _local_mode_mount(objects: dict[str, Path], mount: Path) -> Path:
    """What local mode mounts at /opt/ml/model for a MultiDataModel: every object below the
    model data prefix at its key's path relative to the prefix (sagemaker/utils.py:494-497,
    ``_download_files_under_prefix``), then every top-level file that is a tar archive extracted
    into that same directory, one over the other (local/image.py:692-701
    ``_prepare_serving_volumes``; local/data.py:144-149 lists the top level only;
    utils.py:1814 extracts with the "data" filter)."""
    for key, archive in objects.items():
        (mount / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archive, mount / key)
    for name in sorted(os.listdir(mount)):
        file = mount / name
        if file.is_file() and tarfile.is_tarfile(file):
            with tarfile.open(file) as tar:
                tar.extractall(path=mount, filter="data")
    return mount


def _sdk_invoke(server, body, content_type=None, accept=None, custom_attributes=None,
                target_model=None) -> requests.Response:
    """``LocalSagemakerRuntimeClient.invoke_endpoint`` (local/local_session.py:613-637): POST to
    /invocations, these header names only when given, a str body encoded as UTF-8."""
    headers = {}
    if content_type is not None:
        headers["Content-type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    if custom_attributes is not None:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
    if target_model is not None:
        headers["X-Amzn-SageMaker-Target-Model"] = target_model
    if isinstance(body, str):
        body = body.encode("utf-8")
    return requests.post(server.url + "/invocations", data=body, headers=headers)


@pytest.fixture(scope="module")
def archives(trained, tmp_path_factory) -> dict[str, Path]:
    """The three models as training jobs' model.tar.gz, under the keys a MultiDataModel's
    add_model gives them (one in a "folder"; the demo's as ``tar -C model .`` writes it)."""
    top = tmp_path_factory.mktemp("archives")
    return {"demo.tar.gz": _archive(trained["demo"][0], top / "demo.tar.gz", top="."),
            "costed.tar.gz": _archive(trained["costed"][0], top / "costed.tar.gz"),
            "eu/three.tar.gz": _archive(trained["three"][0], top / "three.tar.gz")}


@pytest.fixture(scope="module")
def local_mode(archives, tmp_path_factory):
    mount = _local_mode_mount(archives, tmp_path_factory.mktemp("opt-ml-model"))
    srv = Server(str(mount), tmp_path_factory.mktemp("logs"), workers=WORKERS,
                 SAGEMAKER_MULTI_MODEL="true",
                 COSTAWARE_MODELS_ROOT=str(tmp_path_factory.mktemp("models")))
    try:
        yield srv.wait_ready(), mount
    finally:
        srv.stop()


TARGETS = {"demo.tar.gz": "demo", "costed.tar.gz": "costed", "eu/three.tar.gz": "three"}


def test_local_mode_invokes_each_target_model_as_served_alone(local_mode, trained, alone):
    """Each archive the target model names is unpacked on its first call, and every call on
    every worker after it answers from that loaded model, byte for byte the model served alone
    (formats, overrides, reasons, refusals); the archives extracted over each other in the
    mount (what local mode leaves there) are not what answers."""
    srv, _ = local_mode
    for target, name in TARGETS.items():
        for body, headers in _requests(name, trained[name][1]):
            same_answer(_sdk_invoke(srv, body, headers["Content-Type"], headers.get("Accept"),
                                    headers.get(HEADER), target),
                        requests.post(alone[name].url + "/invocations", data=body,
                                      headers=headers))
    body = csv_body(trained["demo"][1])
    answers, pids = [], set()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(50):
            answers += pool.map(lambda _: _sdk_invoke(srv, body, "text/csv", None, None,
                                                      "demo.tar.gz"), range(8))
            pids = {line["pid"] for line in srv.access_log() if line["path"] == "/invocations"}
            if len(pids) == WORKERS:
                break
    assert len(pids) == WORKERS, f"only workers {pids} answered"
    assert {a.content for a in answers} == {answers[0].content} and answers[0].status_code == 200
    unpacked = [json.loads(line)["message"] for line in srv.stderr().splitlines()
                if "unpacked from" in line]
    assert sorted(unpacked) == sorted(f"model {target!r} unpacked from {local_mode[1]}/{target} "
                                      "and loaded" for target in TARGETS)
    listed = requests.get(srv.url + "/models").json()["models"]
    assert sorted(m["modelName"] for m in listed) == sorted(TARGETS)
    logged = [line for line in srv.access_log() if line["path"] == "/invocations"]
    assert all(line["model"] == line["target_model"] for line in logged)


def test_local_mode_refuses_targets_and_archives_it_must_not_read(local_mode, trained, tmp_path):
    srv, mount = local_mode

    def member(name, kind=tarfile.REGTYPE, data=b"x", link=""):
        def make():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            return info, data if kind == tarfile.REGTYPE else None
        return make

    demo = trained["demo"][0]
    outside = _archive(demo, tmp_path / "outside.tar.gz")
    (mount / "escape.tar.gz").symlink_to(outside)
    _archive(demo, mount / "bad" / "pickled.tar.gz", extra={"p": member("model.pkl")})
    _archive(demo, mount / "bad" / "climbs.tar.gz", extra={"p": member("../climbed")})
    _archive(demo, mount / "bad" / "absolute.tar.gz", extra={"p": member(str(tmp_path / "abs"))})
    with tarfile.open(mount / "bad" / "linked.tar.gz", "w:gz") as tar:  # the booster a link
        for name in ("metadata.json", "xgboost-model.ubj"):
            info, data = member(name, tarfile.SYMTYPE if name != "metadata.json" else
                                tarfile.REGTYPE, (demo / name).read_bytes(),
                                link="/etc/passwd")()
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    _archive(demo, mount / "bad" / "twice.tar.gz", extra={"p": member("metadata.json")})
    (mount / "bad" / "garbage.tar.gz").write_bytes(b"\x1f\x8b\x08not gzip at all")
    broken = tmp_path / "broken"
    shutil.copytree(demo, broken)
    (broken / "xgboost-model.ubj").write_bytes(b"\x00\x01not a booster")
    _archive(broken, mount / "bad" / "broken.tar.gz")

    refusals = {
        None: (400, "this is a multi-model endpoint: name the model in "
                    "X-Amzn-SageMaker-Target-Model"),
        "": (400, "X-Amzn-SageMaker-Target-Model is empty"),
        "../demo.tar.gz": (400, "has a '..' part"),
        "eu/../../demo.tar.gz": (400, "has a '..' part"),
        str(mount / "demo.tar.gz"): (400, "is an absolute path"),
        "escape.tar.gz": (400, "leads outside the model directory"),
        "missing.tar.gz": (404, f"there is no {mount}/missing.tar.gz"),
        "eu": (400, "is not a file"),
        "bad/pickled.tar.gz": (400, f"{mount}/bad/pickled.tar.gz: model.pkl is not a costaware "
                                    "model file"),
        "bad/climbs.tar.gz": (400, "../climbed leads outside the archive's top"),
        "bad/absolute.tar.gz": (400, "abs leads outside the archive's top"),
        "bad/linked.tar.gz": (400, "xgboost-model.ubj is a symbolic link"),
        "bad/twice.tar.gz": (400, "metadata.json is in the archive twice"),
        "bad/garbage.tar.gz": (400, "cannot be read as a model archive"),
        "bad/broken.tar.gz": (400, "model 'bad/broken.tar.gz' cannot be loaded: "),
    }
    body = csv_body(trained["demo"][1])
    for target, (status, expected) in refusals.items():
        answer = _sdk_invoke(srv, body, "text/csv", target_model=target)
        assert answer.status_code == status, (target, answer.text)
        message = answer.json()["error"]
        assert expected in message and "\n" not in message, (target, message)
    assert not (mount / "climbed").exists() and not (tmp_path / "abs").exists()
    names = {m["modelName"] for m in requests.get(srv.url + "/models").json()["models"]}
    assert not names & set(refusals)


def test_local_mode_unloads_the_least_recently_used_to_fit_and_507_for_what_never_fits(
        trained, tmp_path):
    """A budget of 1 MiB over 2 workers, models of about 200 KiB (charged in each worker): two
    fit; the third unloads the one invoked least recently; one of 600 KiB never fits: 507, nor
    one whose archive unpacks to more than the budget."""
    costed = trained["costed"][0]
    archives = {f"{n}.tar.gz": _archive(costed, tmp_path / "a" / f"{n}.tar.gz",
                                        pad_metadata_to=200 * 1024) for n in "abc"}
    archives["huge.tar.gz"] = _archive(costed, tmp_path / "a" / "huge.tar.gz",
                                       pad_metadata_to=600 * 1024)
    bomb = tmp_path / "bomb"  # 2 MiB of baseline statistics, a few KiB packed
    shutil.copytree(costed, bomb)
    (bomb / "baseline" / "statistics.json").write_bytes(b" " * (2 << 20))
    archives["bomb.tar.gz"] = _archive(bomb, tmp_path / "a" / "bomb.tar.gz")
    mount = tmp_path / "mount"
    for key, archive in archives.items():  # in a folder: local mode leaves them packed
        (mount / "models").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archive, mount / "models" / key)
    srv = Server(str(mount), tmp_path, workers=2, SAGEMAKER_MULTI_MODEL="true",
                 COSTAWARE_MODELS_ROOT=str(tmp_path), COSTAWARE_MODELS_MEMORY_MB="1")
    body = csv_body(trained["costed"][1])

    def call(name):
        return _sdk_invoke(srv, body, "text/csv", target_model=f"models/{name}.tar.gz")

    def loaded():
        return {m["modelName"] for m in requests.get(srv.url + "/models").json()["models"]}

    try:
        srv.wait_ready()
        first = call("a")
        assert first.status_code == 200, first.text
        assert call("b").content == first.content
        assert call("a").content == first.content  # a used after b
        assert call("c").content == first.content
        assert loaded() == {"models/a.tar.gz", "models/c.tar.gz"}
        assert call("b").content == first.content  # a used before c: a goes
        assert loaded() == {"models/b.tar.gz", "models/c.tar.gz"}
        huge = call("huge")
        assert huge.status_code == 507
        assert huge.json()["error"].startswith("model 'models/huge.tar.gz' needs ")
        bombed = call("bomb")
        assert bombed.status_code == 507
        size = sum(f.stat().st_size for f in bomb.rglob("*") if f.is_file())
        assert bombed.json()["error"] == (f"{mount}/models/bomb.tar.gz unpacks to {size} bytes, "
                                          "more than the 1048576 bytes for models "
                                          "(COSTAWARE_MODELS_MEMORY_MB)")
        assert loaded() == {"models/b.tar.gz", "models/c.tar.gz"}
    finally:
        srv.stop()


def test_no_request_fails_when_another_worker_unloads_its_model(trained, tmp_path):
    """4 workers, room for two of five models (about 200 KiB each, charged in every worker), 16
    clients calling the five at random: each worker's load unloads the model another worker is
    looking up, unpacking, loading or invoking at that moment. Every request is answered from its
    model (200, the same bytes), none with a 500: the request either completes on the model it
    found or loads it again."""
    costed = trained["costed"][0]
    mount = tmp_path / "mount"
    names = [f"models/{n}.tar.gz" for n in "abcde"]
    for name in names:
        _archive(costed, mount / name, pad_metadata_to=200 * 1024)
    srv = Server(str(mount), tmp_path, workers=WORKERS, SAGEMAKER_MULTI_MODEL="true",
                 COSTAWARE_MODELS_ROOT=str(tmp_path), COSTAWARE_MODELS_MEMORY_MB="2")
    body = csv_body(trained["costed"][1])
    rng = np.random.default_rng(11)
    targets = [names[k] for k in rng.integers(0, len(names), 800)]

    def call(target):
        with requests.Session() as session:  # a connection of its own: any worker answers
            answer = session.post(srv.url + "/invocations", data=body,
                                  headers={"Content-Type": "text/csv", TARGET: target})
        return answer.status_code, answer.content

    try:
        srv.wait_ready()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, targets))
        failed = [(status, content[:200]) for status, content in answers if status != 200]
        assert not failed, (f"{len(failed)} of {len(answers)} failed: statuses "
                            f"{sorted({status for status, _ in failed})}, e.g. {failed[:3]}, "
                            f"{[f for f in failed if f[0] != 409][:3]}")
        assert len({content for _, content in answers}) == 1
        unpacks = sum("unpacked from" in line for line in srv.stderr().splitlines())
        assert unpacks >= 20, f"only {unpacks} loads: too few unloads to race"
        assert len({line["pid"] for line in srv.access_log()}) == WORKERS
    finally:
        srv.stop()


def test_a_single_model_server_refuses_a_target_model(local_mode, trained, tmp_path):
    """Local mode without SAGEMAKER_MULTI_MODEL=true in the MultiDataModel's env starts the
    single-model server on the mount, where the last archive extracted left its model: a target
    model is refused (as SageMaker refuses TargetModel on a single-model endpoint) rather than
    answered by that model."""
    _, mount = local_mode
    srv = Server(str(mount), tmp_path, workers=1)
    try:
        srv.wait_ready()
        body = csv_body(trained["costed"][1])
        refused = _sdk_invoke(srv, body, "text/csv", target_model="costed.tar.gz")
        assert refused.status_code == 400
        assert refused.json()["error"].startswith(
            "X-Amzn-SageMaker-Target-Model names a model of a multi-model endpoint; this server "
            "serves one model: start it with SAGEMAKER_MULTI_MODEL=true")
        demo = _sdk_invoke(srv, csv_body(trained["demo"][1]), "text/csv")
        assert demo.status_code == 200, demo.text
    finally:
        srv.stop()
