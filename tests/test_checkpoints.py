"""Checkpoints and spot interruptions: atomic rotated checkpoints, SIGTERM, exact resume."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import xgboost as xgb

from costaware.training import boosting as engine
from costaware.config import hyperparameters
from costaware.training import pipeline as training
from costaware.training.checkpoints import (CheckpointStore, StopRequest, TrainingInterrupted,
                                   stop_on_sigterm)
from costaware.decisions.costs import CostMatrix, RowCosts
from costaware.data.channel_files import Dataset
from costaware.errors import HyperparameterError, InputError
from costaware.training.objective import make_objective

from support import BIN, csv_text, failure_reason, run_train, synthetic, write_tree

SAMPLING = {"subsample": "0.7", "colsample_bytree": "0.8", "colsample_bylevel": "0.9",
            "colsample_bynode": "0.8"}


# --- the checkpoint directory ------------------------------------------------------------------

def test_rotation_keeps_the_newest_two_and_skips_broken_ones(tmp_path):
    lines = []
    store = CheckpointStore(str(tmp_path), log=lines.append)
    assert store.latest() is None
    (tmp_path / ".costaware-0000005.model.json.tmp123").write_bytes(b"half a write")
    for rounds in (10, 20, 30, 40, 50):
        store.save(rounds, [f"model after {rounds}".encode(), f"fold 1 after {rounds}".encode()],
                   {"monitor": {"best_iteration": rounds}})
    assert sorted(os.listdir(tmp_path)) == [
        "costaware-0000040.model.fold1.ubj", "costaware-0000040.model.ubj",
        "costaware-0000040.state.json",
        "costaware-0000050.model.fold1.ubj", "costaware-0000050.model.ubj",
        "costaware-0000050.state.json"]
    latest = store.latest()
    assert (latest.rounds, latest.models) == (50, [b"model after 50", b"fold 1 after 50"])
    assert latest.state["monitor"] == {"best_iteration": 50} and latest.state["rounds"] == 50
    # a model that does not match its state (torn upload, corrupt copy): the older checkpoint
    (tmp_path / "costaware-0000050.model.fold1.ubj").write_bytes(b"fold 1 after 5O")
    assert store.latest().rounds == 40
    assert any("costaware-0000050.state.json skipped" in line and "SHA-256" in line for line in lines)
    # a model without its state was never committed
    (tmp_path / "costaware-0000040.state.json").unlink()
    assert store.rounds_saved() == [50] and store.latest() is None
    (tmp_path / "costaware-0000050.state.json").write_text("{not json")
    assert store.latest() is None


def test_a_checkpoint_that_does_not_fit_leaves_no_file_behind(tmp_path, mounts):
    """A full volume (a 16k tmpfs): the first model file of round 20 fits, the second does not.
    Its temporary file and the first model used to stay, keeping the disk full and uploaded with
    the checkpoints; the checkpoint of round 10 stays the newest, intact."""
    volume = mounts.tmpfs(tmp_path / "volume", "16k")
    store = CheckpointStore(str(volume), log=lambda line: None)
    store.save(10, [b"model after 10", b"fold 1 after 10"], {"monitor": {}})
    before = sorted(os.listdir(volume))
    with pytest.raises(OSError) as caught:
        store.save(20, [b"m" * 4096, b"f" * 16384], {"monitor": {}})
    assert sorted(os.listdir(volume)) == before
    assert caught.value.filename == str(volume / "costaware-0000020.model.fold1.ubj")
    latest = store.latest()
    assert (latest.rounds, latest.models) == (10, [b"model after 10", b"fold 1 after 10"])


def test_stop_request_is_set_by_sigterm_only_while_active():
    request = StopRequest()
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_sigterm(request):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert request and request.signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


# --- each round's sample is a function of (seed, round) ------------------------------------------

def _boosting(params: dict, x, y, seed="0", kind=engine.RoundBoosters, folds=0):
    settings = hyperparameters.parse({"objective": "binary:logistic", "seed": seed, "max_depth": "3",
                                      **params})
    dtrain = xgb.DMatrix(x, label=y, weight=np.ones(len(y)))
    objective = make_objective(y, np.ones(len(y)))
    members = [engine.Member(objective, float(y.mean()))]
    for k in range(folds):  # fold k: the rows k, k + folds, ... held out
        held_out = np.arange(len(y)) % folds == k
        members.append(engine.Member(make_objective(y, np.where(held_out, 0.0, 1.0)),
                                     float(y[~held_out].mean())))
    return (kind(settings.xgboost_params(), settings.seed, engine.sliced(dtrain, members), members),
            dtrain, objective)


def test_row_sampling_is_deterministic_per_seed_round_and_member():
    x, y = synthetic(20000, seed=4)
    grown = {}
    for seed in ("7", "7", "8"):
        boosting, _, _ = _boosting({"subsample": "0.7"}, x, y, seed, folds=2)
        for _ in range(3):
            boosting.round()
        grown.setdefault(seed, []).append(boosting)
    trees = {seed: [[[json.loads(t) for t in forest.trees] for forest in b.forests] for b in runs]
             for seed, runs in grown.items()}
    assert trees["7"][0] == trees["7"][1]  # same seed: the same rows every round
    assert trees["7"][0][0][0]["sum_hessian"][0] != trees["8"][0][0][0]["sum_hessian"][0]
    # round 0: every row has the same Hessian p(1-p), so the root's Hessian counts the rows drawn
    p = y.mean()
    fraction = trees["7"][0][0][0]["sum_hessian"][0] / (len(y) * p * (1 - p))
    assert fraction == pytest.approx(0.7, abs=0.02)
    # a fold model draws its own sample from the rows it may use (half of them)
    fold = trees["7"][0][1][0]["sum_hessian"][0] / (len(y) / 2 * p * (1 - p))
    assert fold == pytest.approx(0.7, abs=0.03)


@pytest.mark.parametrize("kind", [engine.SharedBoosters, engine.RoundBoosters],
                         ids=["a booster per member", "a booster per member and round"])
def test_without_sampling_the_rounds_are_xgb_train(kind):
    """Both ways of growing give xgb.train's trees with our objective bit for bit, for the model
    and for each fold model (xgb.train with that fold's held-out rows weighted 0)."""
    x, y = synthetic(3000, seed=5)
    boosting, dtrain, objective = _boosting({"max_depth": "4"}, x, y, kind=kind, folds=2)
    for _ in range(15):
        boosting.round()
    for member in range(3):
        params = {**boosting.params, "base_score": boosting.members[member].base_score}
        reference = xgb.train(params, dtrain, 15, obj=boosting.members[member].objective)
        ours = boosting.booster(member)
        assert ours.num_boosted_rounds() == 15
        assert np.array_equal(ours.predict(dtrain, output_margin=True),
                              reference.predict(dtrain, output_margin=True))
        assert np.array_equal(ours.predict(dtrain, output_margin=True), boosting.margins(member))


@pytest.mark.parametrize("classes", [2, 3])
def test_a_rounds_margins_are_xgboosts_own_buffer_read_only(classes):
    """The margins a round's objective reads are predict(training=True)'s, shaped alike, without a
    copy: read-only, so an objective cannot write into XGBoost's buffer."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 4)).astype(np.float32)
    y = rng.integers(0, classes, 500)
    params = {"objective": "binary:logistic"} if classes == 2 else \
        {"objective": "multi:softprob", "num_class": classes}
    matrix = xgb.DMatrix(x, label=y)
    booster = xgb.train({**params, "max_depth": 3}, matrix, 5)
    view = engine.cached_margins(booster, matrix)
    expected = booster.predict(matrix, output_margin=True, training=True)
    assert view.shape == expected.shape and view.dtype == np.float32
    assert np.array_equal(view, expected)
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0] = 1.0
    empty = xgb.DMatrix(np.empty((0, 4), dtype=np.float32))
    assert engine.cached_margins(booster, empty).size == 0


def test_sampling_grows_a_booster_per_round():
    x, y = synthetic(100, seed=6)
    dtrain = xgb.DMatrix(x, label=y)
    members = [engine.Member(make_objective(y, np.ones(len(y))), 0.5)]
    for name in engine.SAMPLING:
        params = hyperparameters.parse({name: "0.9"}).xgboost_params()
        assert isinstance(engine.Boosting.create(params, 0, engine.sliced(dtrain, members), members),
                          engine.RoundBoosters), name
    plain = engine.Boosting.create(hyperparameters.parse({}).xgboost_params(), 0,
                                  engine.sliced(dtrain, members), members)
    assert isinstance(plain, engine.SharedBoosters)


@pytest.mark.parametrize("kind", [engine.SharedBoosters, engine.RoundBoosters],
                         ids=lambda kind: kind.__name__)
def test_members_own_quantised_matrices_grow_the_sliced_matrices_trees(kind):
    """Each member's rows in a ``QuantileDMatrix`` of their own (bin indexes only, no copy of
    the values: what training uses) grow the trees that slices of one ``DMatrix`` of every row
    grow, with the same margins on the training and held-out rows, and a member reloaded from a
    checkpoint (its margins predicted from the bins) carries on with the same margins too."""
    x, y = synthetic(3000, seed=9)
    x[np.random.default_rng(1).random(x.shape) < 0.05] = np.nan
    folds = np.arange(len(y)) % 2
    members = [engine.Member(make_objective(y, np.ones(len(y))), 0.5)]
    members += [engine.Member(make_objective(y[folds != k], np.ones(int((folds != k).sum()))),
                              0.5, np.flatnonzero(folds != k),
                              np.flatnonzero((folds == k) & (np.arange(len(y)) % 3 > 0)))
                for k in range(2)]
    settings = hyperparameters.parse({"max_depth": "4", **(SAMPLING if kind is
                                                           engine.RoundBoosters else {})})
    params = settings.xgboost_params()
    names = [f"f{j}" for j in range(x.shape[1])]

    def grown(matrices, rounds=4):
        boosting = kind(params, 0, matrices, members)
        for _ in range(rounds):
            boosting.round()
        return boosting

    quantised = engine.quantised(x, names, members, params["max_bin"])
    assert all(isinstance(train, xgb.QuantileDMatrix) for train, _ in quantised)
    assert [held is None for _, held in quantised] == [True, False, False]
    ours = grown(quantised)
    sliced = grown(engine.sliced(xgb.DMatrix(x, label=y, feature_names=names), members))
    for member in range(3):
        assert ours.booster(member).save_raw("json") == sliced.booster(member).save_raw("json")
        assert np.array_equal(ours.margins(member), sliced.margins(member))
        if member:
            assert ours.held_margins(member).shape == (len(members[member].held),)
            assert np.array_equal(ours.held_margins(member), sliced.held_margins(member))
    resumed = kind(params, 0, engine.quantised(x, names, members, params["max_bin"]), members)
    resumed.resume(ours.checkpoint())
    for member in range(3):
        assert np.array_equal(resumed.margins(member), ours.margins(member))
    resumed.round()
    ours.round()
    assert resumed.booster(1).save_raw("json") == ours.booster(1).save_raw("json")


# --- exact resume, in process --------------------------------------------------------------------

def _biased(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.random(n) < 0.3
    x = rng.normal(size=(n, 5)).astype(np.float32)
    x[rng.random(x.shape) < 0.03] = np.nan
    x[:, 0] += np.where(s, -1.0, 0.5)
    logit = 1.2 * np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) - 0.3
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    names = [f"x{i}" for i in range(5)]
    facet = s.astype(float) + 1
    cut = n * 3 // 4
    costs = RowCosts.constant(CostMatrix(fp=1, fn=4), n)
    return (Dataset(x[:cut], y[:cut], names, costs.subset(slice(0, cut)), "train", True,
                    facet=facet[:cut]),
            Dataset(x[cut:], y[cut:], names, costs.subset(slice(cut, n)), "validation", True,
                    facet=facet[cut:]))


def _metrics(result) -> dict:
    return {name: ch.metrics for name, ch in result.channels.items()}


HP = {"num_round": "60", "max_depth": "4", "eta": "0.15", "seed": "11", "cost_fn": "4",
      "early_stopping_rounds": "25", "checkpoint_frequency": "7", "facet_column": "facet",
      "facet_values_or_threshold": "[2]", "fairness_penalty": "2", **SAMPLING}


def _train(settings, data, store=None, stop=None, log=lambda line: None):
    return training.train(settings, *data, log=log, checkpoints=store, stop=stop)


def _interrupt_at(round_):
    """A log that raises SIGTERM (for real) when round ``round_``'s metric line is written."""
    def log(line):
        if line.startswith(f"[{round_}]\t"):
            os.kill(os.getpid(), signal.SIGTERM)
    return log


@pytest.mark.parametrize("sampling", [True, False], ids=["booster per round", "shared booster"])
def test_resumed_training_equals_an_uninterrupted_run(tmp_path, sampling):
    data = _biased()
    settings = hyperparameters.parse(HP if sampling else {k: v for k, v in HP.items() if k not in SAMPLING})
    reference = _train(settings, data)
    assert 25 < reference.rounds_trained  # the run has rounds to interrupt

    store = CheckpointStore(str(tmp_path), log=lambda line: None)
    for at in (9, 23):  # mid-way between checkpoints (rounds 7, 14, 21, 28): SIGTERM saves one
        stop = StopRequest()
        with stop_on_sigterm(stop), pytest.raises(TrainingInterrupted) as info:
            _train(settings, data, store, stop, log=_interrupt_at(at))
        assert f"after {at + 1} of 60 rounds" in str(info.value)
        assert store.rounds_saved()[-1] == at + 1
    lines = []
    resumed = _train(settings, data, store, log=lines.append)
    assert lines[0].startswith("training on 4000 rows")
    assert lines[1].endswith("resuming from checkpoint "
                             f"{tmp_path}/costaware-0000024.state.json: 24 rounds done")
    assert lines[2].startswith("[24]\t")

    assert resumed.rounds_trained == reference.rounds_trained
    assert resumed.best_iteration == reference.best_iteration
    x = data[1].features
    dm = xgb.DMatrix(x, feature_names=data[1].feature_names)
    assert np.array_equal(resumed.booster.predict(dm, output_margin=True),
                          reference.booster.predict(dm, output_margin=True))
    assert resumed.policy.to_dict() == reference.policy.to_dict()
    assert _metrics(resumed) == _metrics(reference)


@pytest.mark.parametrize("sampling", [True, False], ids=["booster per round", "shared booster"])
def test_a_resumed_external_memory_job_equals_an_uninterrupted_one(tmp_path, monkeypatch,
                                                                    sampling):
    """SIGTERM mid-way, a checkpoint, a rerun: the same trees, rule and metrics as a run that was
    never stopped (the checkpoint knows the train files by name, size and time of change)."""
    import gc

    import pandas as pd

    from costaware.data import channel_files, external_features
    from costaware.data.channel_batches import ChannelBatches

    train, validation = _biased()
    directory = tmp_path / "train"
    directory.mkdir()
    frame = pd.DataFrame(train.features, columns=train.feature_names)
    frame.insert(0, "label", train.label)
    frame["facet"] = train.facet
    frame.to_csv(directory / "train.csv", index=False, na_rep="")
    options = channel_files.DataOptions(label_column="label", header=True,
                                        costs=CostMatrix(fp=1, fn=4), facet_column="facet")
    streamed = external_features.read_channel(ChannelBatches(str(directory), "text/csv", options, 500))
    np.testing.assert_array_equal(np.asarray(streamed.features), train.features)
    data = (streamed, validation)
    chosen = {**(HP if sampling else {k: v for k, v in HP.items() if k not in SAMPLING}),
              "calibration_data": "validation", "external_memory": "true"}
    settings = hyperparameters.parse(chosen)
    reference = _train(settings, data)
    assert 25 < reference.rounds_trained

    (tmp_path / "checkpoints").mkdir()
    pages = tmp_path / "pages"
    pages.mkdir()
    monkeypatch.setenv("COSTAWARE_PAGE_CACHE", str(pages))
    store = CheckpointStore(str(tmp_path / "checkpoints"), log=lambda line: None)
    stop = StopRequest()
    with stop_on_sigterm(stop), pytest.raises(TrainingInterrupted):
        _train(settings, data, store, stop, log=_interrupt_at(9))
    lines = []
    resumed = _train(settings, data, store, log=lines.append)
    assert any("resuming from checkpoint" in line and "10 rounds done" in line for line in lines), lines[:3]
    assert resumed.rounds_trained == reference.rounds_trained
    assert resumed.policy.to_dict() == reference.policy.to_dict()
    assert _metrics(resumed) == _metrics(reference)
    x = validation.features
    assert np.array_equal(resumed.booster.inplace_predict(x, predict_type="margin"),
                          reference.booster.inplace_predict(x, predict_type="margin"))

    # other train files: the checkpoint is refused, not resumed from
    frame.iloc[:-1].to_csv(directory / "train.csv", index=False, na_rep="")
    changed = external_features.read_channel(ChannelBatches(str(directory), "text/csv", options, 500))
    with pytest.raises(Exception, match="checkpoint"):
        _train(settings, (changed, validation), store)
    gc.collect()
    assert list(pages.iterdir()) == []  # interrupted or refused, the page cache goes


def test_resume_from_an_older_checkpoint_when_the_newest_is_corrupt(tmp_path):
    data = _biased(seed=1)
    settings = hyperparameters.parse({**HP, "early_stopping_rounds": "0", "num_round": "30"})
    reference = _train(settings, data)
    store = CheckpointStore(str(tmp_path), log=lambda line: None)
    stop = StopRequest()
    with stop_on_sigterm(stop), pytest.raises(TrainingInterrupted):
        _train(settings, data, store, stop, log=_interrupt_at(17))
    assert store.rounds_saved() == [14, 18]
    model = tmp_path / "costaware-0000018.model.fold3.json"
    model.write_bytes(model.read_bytes()[:-10])
    lines = []
    store.log = lines.append
    resumed = _train(settings, data, store, log=lines.append)
    assert "costaware-0000018.state.json skipped" in lines[1]
    assert lines[2].endswith("costaware-0000014.state.json: 14 rounds done")
    assert _metrics(resumed) == _metrics(reference)
    assert resumed.policy == reference.policy


def test_a_checkpoint_of_other_settings_or_data_is_refused(tmp_path):
    data = _biased(seed=2)
    settings = hyperparameters.parse({**HP, "num_round": "14", "early_stopping_rounds": "0"})
    store = CheckpointStore(str(tmp_path), log=lambda line: None)
    _train(settings, data, store)
    assert store.rounds_saved() == [7, 14]
    # rounds and checkpoint frequency may change: continue to 20 rounds
    more = hyperparameters.parse({**HP, "num_round": "20", "early_stopping_rounds": "0",
                                  "checkpoint_frequency": "0"})
    assert _train(more, data, store).rounds_trained == 20
    changed = hyperparameters.parse({**HP, "eta": "0.2", "max_depth": "3", "early_stopping_rounds": "0"})
    with pytest.raises(InputError, match=r"other hyperparameters eta, max_depth; resume with"):
        _train(changed, data, store)
    other = (data[0], _biased(seed=3)[1])
    with pytest.raises(InputError, match="other fit rows data"):  # (validation rows are fit rows)
        _train(settings, other, store)
    with pytest.raises(HyperparameterError, match="'num_round': 10, but checkpoint .* has 14 rounds"):
        _train(hyperparameters.parse({**HP, "num_round": "10", "early_stopping_rounds": "0"}), data,
               store)


def test_a_checkpoint_that_cannot_be_written_does_not_stop_training(tmp_path):
    data = _biased(seed=4)
    settings = hyperparameters.parse({**HP, "num_round": "8", "early_stopping_rounds": "0"})
    lines = []
    store = CheckpointStore(str(tmp_path / "gone"), log=lines.append)
    result = _train(settings, data, store, log=lines.append)
    assert result.rounds_trained == 8
    assert any(line.startswith(f"warning: could not save a checkpoint in {tmp_path}/gone")
               for line in lines)


# --- SIGTERM to the real `train` ------------------------------------------------------------------

X, Y = synthetic(4000, d=10, seed=2)
CHANNELS = {"train": {"t.csv": csv_text(Y[:3000], X[:3000])},
            "validation": {"v.csv": csv_text(Y[3000:], X[3000:])}}
SPOT = {"num_round": "120", "max_depth": "6", "eta": "0.1", "subsample": "0.8", "cost_fn": "5",
        "checkpoint_frequency": "5", "seed": "1"}


def test_sigterm_to_train_checkpoints_and_a_rerun_resumes_exactly(tmp_path):
    base = write_tree(tmp_path / "spot", SPOT, CHANNELS)
    checkpoints = base / "checkpoints"
    checkpoints.mkdir()
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base),
               SAGEMAKER_TRAINING_MODULE="costaware.sagemaker.training_job:main")
    process = subprocess.Popen([str(BIN / "train")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not any(n.endswith(".state.json") for n in os.listdir(checkpoints)):
            assert process.poll() is None, process.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)  # mid-run: about 115 rounds to go
        output, _ = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, output[-3000:]
    reason = failure_reason(base)
    assert reason.startswith("training interrupted by SIGTERM after ")
    assert "of 120 rounds: checkpoint" in reason
    assert "a rerun with the same checkpoint location resumes" in reason
    rounds = int(reason.split("after ")[1].split(" of")[0])
    assert 5 <= rounds < 120
    assert f"costaware-{rounds:07d}.state.json" in os.listdir(checkpoints)
    assert not (base / "model" / "metadata.json").exists()

    (base / "output" / "failure").unlink()
    rerun = run_train(base)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"resuming from checkpoint {checkpoints}/costaware-{rounds:07d}.state.json" in rerun.stdout

    reference = write_tree(tmp_path / "uninterrupted", SPOT, CHANNELS)
    uninterrupted = run_train(reference)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    dm = xgb.DMatrix(X, feature_names=[f"f{i}" for i in range(10)])
    margins = [xgb.Booster(model_file=str(b / "model" / "xgboost-model.ubj")).predict(dm, output_margin=True)
               for b in (base, reference)]
    assert np.array_equal(margins[0], margins[1])
    meta = [json.loads((b / "model" / "metadata.json").read_text()) for b in (base, reference)]
    assert meta[0]["decision_policy"] == meta[1]["decision_policy"]
    assert meta[0]["rounds_trained"] == meta[1]["rounds_trained"] == 120


def test_sigterm_without_checkpointing_is_still_a_failure(tmp_path):
    base = write_tree(tmp_path, {**SPOT, "num_round": "5000"}, CHANNELS)
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base),
               SAGEMAKER_TRAINING_MODULE="costaware.sagemaker.training_job:main")
    process = subprocess.Popen([str(BIN / "train")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        for line in process.stdout:  # until the first round's metric line
            if line.startswith("[0]\t"):
                break
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1
    assert "no checkpoint saved (checkpointing is off: no checkpoint directory)" in failure_reason(base)


# --- three classes ---------------------------------------------------------------------------------

def _three_classes(n=1500, seed=4):
    """``_biased``'s rows with three classes: the tercile of a noisy score the facet leans on."""
    train, validation = _biased(n, seed)
    rows = []
    for data in (train, validation):
        x = np.nan_to_num(data.features)
        score = 1.2 * x[:, 0] + 0.5 * x[:, 1] + np.random.default_rng(seed).normal(size=len(x))
        label = np.digitize(score, [-0.5, 0.5]).astype(np.int8)
        rows.append(Dataset(data.features, label, data.feature_names, data.costs, data.source,
                            True, facet=data.facet))
    return tuple(rows)


CLASS_HP = {"cost_matrix": "[[0,1,3],[2,0,1],[6,2,0]]", "num_round": "30", "max_depth": "3",
            "eta": "0.2", "seed": "5", "early_stopping_rounds": "0", "checkpoint_frequency": "7",
            "facet_column": "facet", "facet_values_or_threshold": "[2]",
            "label_values_or_threshold": "[2]", "fairness_penalty": "2"}


@pytest.mark.parametrize("sampling, served", [(True, "refit"), (False, "refit"),
                                               (True, "fold_average")],
                         ids=["booster per round", "shared booster", "fold average"])
def test_three_classes_resume_equal_to_an_uninterrupted_run(tmp_path, sampling, served):
    """K >= 3 goes through the same round loop: SIGTERM saves a checkpoint (K trees a round, for
    the model and each fold model), and the rerun's model bytes, policy and metrics are the
    uninterrupted run's; also when the fold models' average is served (no refit member)."""
    data = _three_classes()
    settings = hyperparameters.parse({**CLASS_HP, **(SAMPLING if sampling else {}),
                                      "served_model": served})
    reference = _train(settings, data)
    store = CheckpointStore(str(tmp_path), log=lambda line: None)
    stop = StopRequest()
    with stop_on_sigterm(stop), pytest.raises(TrainingInterrupted) as info:
        _train(settings, data, store, stop, log=_interrupt_at(16))
    assert "after 17 of 30 rounds: checkpoint" in str(info.value)
    lines = []
    resumed = _train(settings, data, store, log=lines.append)
    assert lines[1].endswith("costaware-0000017.state.json: 17 rounds done")
    assert resumed.rounds_trained == reference.rounds_trained == 30
    assert bytes(resumed.booster.save_raw("ubj")) == bytes(reference.booster.save_raw("ubj"))
    assert resumed.policy.to_dict() == reference.policy.to_dict()
    assert json.dumps(_metrics(resumed)) == json.dumps(_metrics(reference))
