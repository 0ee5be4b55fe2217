"""Faults around a real ``train``: full and read-only volumes, files that vanish, stale markers,
corrupt models. A failed job never exits 0, its reason is one line (on stderr, and in
``output/failure`` where it can still be written), and the model is whole or absent."""

import json

import pytest

from costaware.model import artifact

from support import csv_text, failure_reason, run_train, synthetic, write_tree

X, Y = synthetic(400, seed=1)
TRAIN = csv_text(Y[:300], X[:300])
FAST = {"num_round": "5", "max_depth": "2"}
BIG = {"num_round": "30", "max_depth": "4"}  # a booster of tens of KiB: more than a 16k volume


def _tree(tmp_path, hyperparameters=FAST):
    return write_tree(tmp_path / "ml", hyperparameters, {"train": {"t.csv": TRAIN}})


def _files(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def _trained_rounds(result) -> int:
    return sum(line.startswith("[") and "]\t" in line for line in result.stdout.splitlines())


def test_a_full_volume_under_model_and_output_fails_the_job(tmp_path, mounts):
    """model/ and output/ share one small volume (as on SageMaker): the booster does not fit. The
    toolkit's own failure write used to fail too, and it exited 0 with an empty failure file and a
    booster cut short."""
    base = _tree(tmp_path, BIG)
    volume = mounts.tmpfs(tmp_path / "volume", "16k")
    for name in ("model", "output"):
        (volume / name).mkdir()
        mounts.bind(volume / name, base / name)
    result = run_train(base)
    assert result.returncode != 0
    reason = failure_reason(base)
    assert reason == (f"{base}/model/xgboost-model.ubj: cannot be written: No space left on "
                      "device: the model, output and checkpoints share the job's storage volume; "
                      "give the job more (VolumeSizeInGB)")
    assert f"costaware: training failed: {reason}" in result.stderr
    assert _files(base / "model") == []  # no booster cut short, no temporary file
    assert _files(base / "output") == ["data", "failure"] and _files(base / "output" / "data") == []


def test_a_read_only_output_fails_the_job_before_training(tmp_path, mounts):
    """Nothing can be written in output/, not even the failure file: the reason goes to stderr and
    the exit status is not 0 (the toolkit exited 0 here, after training, with no failure file)."""
    base = _tree(tmp_path)
    mounts.read_only(base / "output")
    result = run_train(base)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("costaware: ")]
    assert lines == [
        f"costaware: training failed: {base}/output/data: cannot be written: Read-only file system",
        f"costaware: the failure reason could not be written: {base}/output/failure: cannot be "
        "written: Read-only file system"]
    assert _trained_rounds(result) == 0
    assert not (base / "model" / "metadata.json").exists()


@pytest.mark.parametrize("where", ["model", "output/data"])
def test_a_read_only_output_directory_is_found_before_the_first_round(tmp_path, mounts, where):
    """It used to be found after all the training, and the reason was a 20 to 48 line traceback."""
    base = _tree(tmp_path)
    mounts.read_only(base / where)
    result = run_train(base)
    assert result.returncode == 1
    assert failure_reason(base) == f"{base}/{where}: cannot be written: Read-only file system"
    assert _trained_rounds(result) == 0


def test_a_full_model_volume_is_a_one_line_reason(tmp_path, mounts):
    base = _tree(tmp_path, BIG)
    mounts.tmpfs(base / "model", "16k")
    result = run_train(base)
    assert result.returncode == 1
    reason = failure_reason(base)
    assert reason.startswith(f"{base}/model/xgboost-model.ubj: cannot be written: No space left")
    assert "\n" not in reason and "Traceback" not in reason
    assert _files(base / "model") == []
    assert not (base / "output" / "data" / "evaluation.json").exists()


def test_a_rerun_leaves_only_its_own_outcome(tmp_path):
    """The toolkit never overwrites output/failure: an earlier run's failure stayed beside a
    resumed run's success (and an earlier success beside a new failure)."""
    base = _tree(tmp_path, {**FAST, "eta": "fast"})
    assert run_train(base).returncode == 1
    assert "hyperparameter 'eta'" in failure_reason(base)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(FAST))
    assert run_train(base).returncode == 0
    assert _files(base / "output") == ["data", "success"]
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"max_depht": 3}))
    assert run_train(base).returncode == 1
    assert _files(base / "output") == ["data", "failure"]
    assert "unknown hyperparameter 'max_depht'" in failure_reason(base)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    base = _tree(tmp_path_factory.mktemp("model"))
    assert run_train(base).returncode == 0
    return base / "model"


@pytest.mark.parametrize("content,what", [
    (bytes(range(256)) * 20, "5120 bytes, not an XGBoost model in JSON or UBJSON (it starts with "
                             "bytes 00 01 02 03, not '{')"),
    (b"\xd7\xff\xfe\x80" * 1000, "4000 bytes, not an XGBoost model in JSON or "
                                                     "UBJSON (it starts with bytes d7 ff fe 80"),
    (b"", "the file is empty"),
    (None, "a JSON or UBJSON model (it starts with '{'), cut short or corrupt"),
])
def test_a_corrupt_booster_file_is_named_with_what_is_wrong(model_dir, tmp_path, content, what):
    """Random bytes raised a UnicodeDecodeError that named no file (serving failed the same way)."""
    target = tmp_path / "model"
    target.mkdir()
    (target / "metadata.json").write_bytes((model_dir / "metadata.json").read_bytes())
    booster = (model_dir / "xgboost-model.ubj").read_bytes()
    (target / "xgboost-model.ubj").write_bytes(booster[: len(booster) // 2] if content is None
                                               else content)
    with pytest.raises(artifact.ModelLoadError) as caught:
        artifact.load(str(target), nthread=1)
    message = str(caught.value)
    assert message.startswith(f"{target}/xgboost-model.ubj cannot be loaded by XGBoost ")
    assert what in message and "\n" not in message
