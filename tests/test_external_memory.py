"""Training from external memory (issue #28): every channel's features left in their
files and read in batches (``ExtMemQuantileDMatrix``), every other per-row column in memory.

* the lazy feature matrix selects, reorders and pads as the in-memory one does, and reads back the
  same numbers;
* the held-out share is seeded, sized and independent of batching;
* a job trained from external memory reports what its saved model computes on the union of the
  rows (recomputed by the public single-host functions, as the multi-host tests do), on one host
  and on two, and is as good as the same job in memory (validation and test AUC within 0.005);
  K = 3 classes with a per-row cost cell on two hosts: tests/test_multihost.py;
* hyperparameters that cannot hold together are refused in one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from support import failure_reason, run_train, write_tree
from hosts import hosts_of, run_hosts
from credit_job import DATA, HYPERPARAMETERS, host_trees, recompute, to_csv
from union_metrics import differences

from costaware.data import channel_files, external_features
from costaware.data.channel_batches import ChannelBatches
from costaware.data.external_features import ExternalFeatures, held_out_share
from costaware.decisions.costs import CostMatrix
from costaware.model import artifact
from costaware.training.checkpoints import digest


def channel(tmp_path: Path, rows: np.ndarray, files: int = 2) -> Path:
    directory = tmp_path / "train"
    directory.mkdir()
    for index in range(files):
        part = rows[index * len(rows) // files:(index + 1) * len(rows) // files]
        (directory / f"part-{index}.csv").write_text(to_csv(part))
    return directory


OPTIONS = channel_files.DataOptions(label_column="default", header=True,
                                    costs=CostMatrix(fp=1, fn=3), cost_columns=(("fn", "amount"),),
                                    facet_column="group_flag")


@pytest.mark.parametrize("batch_rows", [1, 7, 500, 100_000])
def test_read_channel_keeps_every_column_but_the_features_which_read_back_equal(
        tmp_path, batch_rows):
    directory = channel(tmp_path, DATA["train"][:1200], files=3)
    whole = channel_files.load_channel(str(directory), "text/csv", OPTIONS)
    streamed = external_features.read_channel(ChannelBatches(str(directory), "text/csv", OPTIONS,
                                                     batch_rows))
    assert isinstance(streamed.features, ExternalFeatures)
    assert streamed.features.shape == whole.features.shape
    np.testing.assert_array_equal(np.asarray(streamed.features), whole.features)
    np.testing.assert_array_equal(streamed.label, whole.label)
    for cell in ("fp", "fn", "tp", "tn"):
        np.testing.assert_array_equal(getattr(streamed.costs, cell), getattr(whole.costs, cell))
    assert streamed.costs.fp.strides == (0,)  # a class cost: one value, not one per row
    np.testing.assert_array_equal(streamed.facet, whole.facet)
    assert streamed.feature_names == whole.feature_names

    # rows and columns chosen lazily, as an array's would be
    mask = np.arange(whole.rows) % 3 == 1
    picked = streamed.take(mask)
    np.testing.assert_array_equal(np.asarray(picked.features), whole.features[mask])
    np.testing.assert_array_equal(picked.label, whole.label[mask])
    np.testing.assert_array_equal(np.asarray(picked.features[[0, 5, 9]]),
                                  whole.features[mask][[0, 5, 9]])
    order = [3, 0, 1, 2, 5, 4]
    np.testing.assert_array_equal(np.asarray(picked.features[:, order]),
                                  whole.features[mask][:, order])
    padded = picked.features.padded(2)
    assert padded.shape == (mask.sum(), 8)
    assert np.isnan(np.asarray(padded)[:, -2:]).all()
    with pytest.raises(IndexError):
        streamed.features[[5, 3]]  # (rows out of order would be read in the wrong order)


def test_a_changed_file_changes_the_checkpoint_digest(tmp_path):
    directory = channel(tmp_path, DATA["train"][:300], files=1)
    features = external_features.read_channel(ChannelBatches(str(directory), "text/csv", OPTIONS,
                                                         external_features.BATCH_ROWS)).features
    before = digest(features)
    assert digest(features) == before
    assert digest(features[np.arange(300) < 200]) != before
    path = directory / "part-0.csv"
    path.write_text(path.read_text() + "0,1,1,1,1,1,1,1,0\n")
    assert digest(features) != before


def test_the_held_out_share_is_seeded_sized_and_independent_of_the_rows_after_it():
    held = held_out_share(10_000, seed=3)
    assert held.sum() == 1_000
    assert np.array_equal(held, held_out_share(10_000, seed=3))
    assert not np.array_equal(held, held_out_share(10_000, seed=4))
    assert held_out_share(5_000_000, seed=0).sum() == external_features.HELD_OUT_ROWS
    assert held_out_share(1, seed=0).sum() == 0  # nothing left to train on otherwise
    # a row's key depends on its index and the seed alone
    keys = external_features.row_keys(1000, 7)
    assert np.array_equal(keys[:10], external_features.row_keys(10, 7))
    assert len(np.unique(keys)) == 1000


def _train(tmp_path: Path, name: str, hyperparameters: dict, channels: dict,
           monkeypatch=None, batch_rows: int = 300) -> Path:
    pages = tmp_path / f"{name}-pages"
    pages.mkdir()
    if monkeypatch is not None:
        monkeypatch.setenv("COSTAWARE_BATCH_ROWS", str(batch_rows))
        monkeypatch.setenv("COSTAWARE_PAGE_CACHE", str(pages))
    base = write_tree(tmp_path / name, hyperparameters, channels)
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert list(pages.iterdir()) == []  # XGBoost's page cache removed
    assert "external memory cache file" not in result.stdout + result.stderr
    base.joinpath("log").write_text(result.stdout + result.stderr)
    return base


CHANNELS = {name: {"all.csv": to_csv(rows)} for name, rows in DATA.items()}


def test_external_memory_reports_what_its_model_computes_and_matches_the_job_in_memory(
        tmp_path, monkeypatch):
    external = _train(tmp_path, "external", {**HYPERPARAMETERS, "external_memory": "true"},
                      CHANNELS, monkeypatch)
    log = (external / "log").read_text()
    assert "held out: the validation channel (left in its files)" in log
    assert "columns from the held-out rows" in log  # (the validation rows, read in at the end)
    evaluation = json.loads((external / "output" / "data" / "evaluation.json").read_text())
    # every reported number is the saved model's on the rows (the train channel's read back in
    # batches of 300 rows)
    assert differences(evaluation, recompute(external / "model")) == []
    memory = _train(tmp_path, "memory", {**HYPERPARAMETERS, "external_memory": "false"}, CHANNELS)
    in_memory = json.loads((memory / "output" / "data" / "evaluation.json").read_text())
    for name in ("validation", "test"):
        ours = evaluation["channels"][name]["served"]["auc"]
        theirs = in_memory["channels"][name]["served"]["auc"]
        assert abs(ours - theirs) <= 0.005, (name, ours, theirs)
    metadata = json.loads((external / "model" / "metadata.json").read_text())
    assert metadata["hyperparameters"]["external_memory"] == "true"
    assert metadata["hyperparameters"]["calibration_data"] == "validation"


def test_early_stopping_from_external_memory_reports_what_its_kept_model_computes(
        tmp_path, monkeypatch):
    """Early stopping keeps an earlier round than the last: the held-out margins are then the
    kept model's, predicted a batch at a time from the validation channel's files (not the
    rounds' cached ones), and every number reported is that model's."""
    settings = {**HYPERPARAMETERS, "external_memory": "true", "num_round": 80, "eta": 0.6,
                "early_stopping_rounds": 3}
    base = _train(tmp_path, "early", settings, CHANNELS, monkeypatch)
    log = (base / "log").read_text()
    assert "early stopping: keeping rounds 0.." in log
    evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    assert differences(evaluation, recompute(base / "model")) == []


def test_without_a_validation_channel_a_seeded_share_of_train_is_held_out(tmp_path, monkeypatch):
    settings = {k: v for k, v in HYPERPARAMETERS.items() if k != "calibration_data"}
    channels = {"train": CHANNELS["train"], "test": CHANNELS["test"]}
    base = _train(tmp_path, "share", {**settings, "external_memory": "true"}, channels,
                  monkeypatch)
    log = (base / "log").read_text()
    assert "held out: a seeded random 240 of train's 2400 rows" in log
    metadata = json.loads((base / "model" / "metadata.json").read_text())
    assert metadata["rows"] == {"train": 2160, "validation": 240, "test": 600}
    assert (base / "model" / artifact.BASELINE_DIR).is_dir()
    assert "columns from the held-out rows" in log


def test_two_hosts_train_from_external_memory_with_the_union_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("COSTAWARE_BATCH_ROWS", "250")
    hosts = hosts_of(2)
    settings = {**HYPERPARAMETERS, "external_memory": "true"}
    trees = host_trees(tmp_path, hosts, "ShardedByS3Key", settings)
    results = run_hosts(trees, hosts)
    for (code, log), host in zip(results, hosts):
        assert code == 0, f"{host}:\n{log[-4000:]}"
    evaluation = json.loads((trees[0] / "output" / "data" / "evaluation.json").read_text())
    assert differences(evaluation, recompute(trees[0] / "model")) == []


def test_cross_fitting_asked_for_with_external_memory_forced_is_refused_in_one_line(tmp_path):
    base = write_tree(tmp_path / "ml", {**HYPERPARAMETERS, "external_memory": "true",
                                        "calibration_data": "cross_fit"}, CHANNELS)
    result = run_train(base)
    assert result.returncode != 0
    reason = failure_reason(base)
    assert "hyperparameter 'calibration_data' asks for cross-fitting" in reason
    assert "\n" not in reason.strip()


def test_the_auto_choice_compares_the_need_with_the_memory_available():
    from costaware.sagemaker.training_job import exceeds

    assert exceeds(10 * 2**30, 2**30)
    assert not exceeds(2**29, 2**30)
    assert not exceeds(10 * 2**30, None)  # unknown: in memory, as before


def test_summaries_read_in_blocks_equal_the_summaries_of_every_row_at_once(monkeypatch):
    """Beyond a block of rows, the metrics' summary, the rule's shift histogram and the served
    decisions are computed a block at a time (bounded temporaries on channels of millions of
    rows): the counts are the same, the sums the same to rounding."""
    from costaware.decisions import costs as costs_module
    from costaware.decisions import rules
    from costaware.decisions.costs import RowCosts
    from costaware.metrics import classification
    from costaware.training import evaluation

    rng = np.random.default_rng(5)
    n = 10_001
    label = (rng.random(n) < 0.3).astype(np.int8)
    p = np.clip(rng.beta(2, 5, n), 1e-9, 1 - 1e-9)
    costs = RowCosts.from_columns(CostMatrix(fp=1, fn=4), n, {"fn": rng.lognormal(0, 1, n)})
    sensitive = rng.random(n) < 0.4
    groups = rng.integers(-1, 3, n)
    rule = rules.DecisionRule()
    whole = classification.summarize(label, p, rule.decide(p, costs, sensitive)[0], costs,
                                     sensitive, groups, 3)
    histogram = rules.ShiftHistogram.of(p, label, costs, sensitive)
    served = rule.decide(p, costs, sensitive)[0]
    monkeypatch.setattr(costs_module, "ROW_BLOCK", 999)
    blocked = classification.summarize(label, p, evaluation.decisions(rule, p, costs, sensitive),
                                       costs, sensitive, groups, 3)
    assert np.array_equal(evaluation.decisions(rule, p, costs, sensitive), served)
    for name in ("counts", "calibration", "score_bins", "facets", "groups"):
        np.testing.assert_array_equal(getattr(blocked, name)[..., :1] if name == "calibration"
                                      else getattr(blocked, name),
                                      getattr(whole, name)[..., :1] if name == "calibration"
                                      else getattr(whole, name))
    np.testing.assert_allclose(blocked.sums, whole.sums, rtol=1e-12)
    np.testing.assert_allclose(blocked.calibration, whole.calibration, rtol=1e-12)
    other = rules.ShiftHistogram.of(p, label, costs, sensitive)
    np.testing.assert_array_equal(other.rows, histogram.rows)
    np.testing.assert_allclose(other.cost_change, histogram.cost_change, rtol=1e-12, atol=1e-9)


def test_a_train_file_that_changes_while_training_is_a_one_line_reason(tmp_path):
    from costaware.errors import DataError

    directory = channel(tmp_path, DATA["train"][:600], files=2)
    streamed = external_features.read_channel(ChannelBatches(str(directory), "text/csv", OPTIONS,
                                                             100))
    (directory / "part-1.csv").write_text(to_csv(DATA["train"][300:500]))
    with pytest.raises(DataError, match="600 before: the channel's files changed while training"):
        np.asarray(streamed.features)


def _formats(kind: str, label: np.ndarray, x: np.ndarray) -> tuple[dict, str]:
    """A channel's files in ``kind``, and its content type."""
    import gzip
    import io

    import pandas as pd

    from support import csv_text, libsvm_text

    if kind == "csv.gz":
        return {"a.csv.gz": gzip.compress(csv_text(label, x).encode())}, "text/csv"
    if kind == "parquet":
        buffer = io.BytesIO()
        frame = pd.DataFrame(x, columns=[f"x{j}" for j in range(x.shape[1])])
        frame.insert(0, "y", label)
        frame.to_parquet(buffer, row_group_size=150)
        return {"a.parquet": buffer.getvalue()}, "application/x-parquet"
    return {"a.libsvm": libsvm_text(label, x)}, "text/libsvm"


@pytest.mark.parametrize("kind", ["csv.gz", "parquet", "libsvm"])
def test_every_channel_format_trains_from_external_memory_as_in_memory(tmp_path, monkeypatch,
                                                                       kind):
    """gzip CSV, Parquet (row groups of 150 rows) and libsvm (a validation channel whose largest
    index is smaller than train's: padded with missing values) train from external memory, read
    in batches of 130 rows, to the model the same job trains in memory, to 0.005 of AUC."""
    from support import synthetic

    x, y = synthetic(1600, 5, seed=3)
    x[np.random.default_rng(3).random(x.shape) < 0.05] = np.nan
    if kind == "libsvm":
        x[1000:1300, 4] = np.nan  # the validation rows never use the last index
    channels, types = {}, {}
    for name, rows in (("train", slice(0, 1000)), ("validation", slice(1000, 1300)),
                       ("test", slice(1300, 1600))):
        channels[name], types[name] = _formats(kind, y[rows], x[rows])
    settings = {"num_round": "30", "max_depth": "3", "calibration_data": "validation",
                "cost_fn": "4", "report": "false",
                **({"label_column": "y"} if kind == "parquet" else {})}
    evaluations = {}
    for mode in ("true", "false"):
        monkeypatch.setenv("COSTAWARE_BATCH_ROWS", "130")
        base = write_tree(tmp_path / mode, {**settings, "external_memory": mode}, channels, types)
        result = run_train(base)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert ("external memory: on" in result.stdout + result.stderr) == (mode == "true")
        evaluations[mode] = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    for name in ("train", "validation", "test"):
        ours = evaluations["true"]["channels"][name]["served"]
        theirs = evaluations["false"]["channels"][name]["served"]
        assert ours["rows"] == theirs["rows"]
        assert abs(ours["auc"] - theirs["auc"]) <= 0.005, (name, ours["auc"], theirs["auc"])


@pytest.mark.parametrize("value", ["0", "many", "1.5"])
def test_a_bad_batch_size_is_a_one_line_reason(tmp_path, monkeypatch, value):
    monkeypatch.setenv("COSTAWARE_BATCH_ROWS", value)
    base = write_tree(tmp_path / "ml", {**HYPERPARAMETERS, "external_memory": "true"}, CHANNELS)
    result = run_train(base)
    assert result.returncode != 0
    assert failure_reason(base).strip() == (
        f"COSTAWARE_BATCH_ROWS={value!r}: give a whole number of rows from 1")


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_page_cache_that_cannot_be_written_fails_the_job_in_one_line(tmp_path, monkeypatch,
                                                                        mounts, fault):
    """XGBoost's pages go to COSTAWARE_PAGE_CACHE: on a full (16 KiB) or read-only volume the
    job fails with one line naming where, never exit 0 and never a bare traceback."""
    pages = (mounts.tmpfs(tmp_path / "pages", "16k") if fault == "full"
             else mounts.read_only(tmp_path / "pages"))
    monkeypatch.setenv("COSTAWARE_PAGE_CACHE", str(pages))
    monkeypatch.setenv("COSTAWARE_BATCH_ROWS", "300")
    base = write_tree(tmp_path / "ml", {**HYPERPARAMETERS, "external_memory": "true"}, CHANNELS)
    result = run_train(base)
    assert result.returncode != 0
    reason = failure_reason(base).strip()
    assert "\n" not in reason and str(pages) in reason, reason
    assert "Traceback" not in reason


def test_the_page_cache_outlives_every_matrix_still_held_when_it_is_closed(tmp_path):
    """Closed while matrices are still referenced, the cache directory goes when the last of
    them is freed, not the first (XGBoost warned of missing page files, and read none)."""
    import gc

    import xgboost as xgb

    from costaware.training.external_memory import FeatureBatches, PageCache

    class Rows:
        def __init__(self, x):
            self.x, self.shape = x, x.shape

        def batches(self):
            yield from (self.x[:300], self.x[300:])

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(600, 4)).astype(np.float32), (rng.random(600) < 0.5).astype(int)
    pages = PageCache(str(tmp_path))
    matrices = [pages.holds(xgb.ExtMemQuantileDMatrix(
        FeatureBatches(Rows(x), y, pages.prefix(f"m{k}")), max_bin=16)) for k in range(2)]
    pages.close()
    assert Path(pages.directory).is_dir()
    matrices.pop()  # (the last one held first)
    gc.collect()
    assert Path(pages.directory).is_dir()  # (the other matrix reads its pages from there)
    xgb.train({"tree_method": "hist", "max_depth": 2, "max_bin": 16}, matrices[0], 2)
    matrices.clear()
    gc.collect()
    assert not Path(pages.directory).exists()


def _external(tmp_path: Path, name: str, label: np.ndarray, x: np.ndarray,
              batch_rows: int) -> ExternalFeatures:
    directory = tmp_path / name
    directory.mkdir()
    lines = [",".join(["" if np.isnan(v) else repr(float(v)) for v in row]) for row in
             np.column_stack([label, x])]
    (directory / "rows.csv").write_text("\n".join(lines) + "\n")
    return external_features.read_channel(ChannelBatches(
        str(directory), "text/csv", channel_files.DataOptions(), batch_rows)).features


def test_a_validation_channel_left_in_its_files_is_watched_without_reading_it_in(
        tmp_path, monkeypatch):
    """From external memory the validation rows stay in their files too (a validation channel
    as long as train would otherwise be held whole): the rounds' matrix of them is XGBoost's
    pages on disk, quantised at the model's cuts, or raw values when a value is at or above a
    feature's last cut; either gives the margins of their raw values, and neither reads the rows
    in. A host without validation rows builds the same kind of matrix, empty."""
    import xgboost as xgb
    from costaware.cluster import SOLO
    from costaware.training.external_memory import PageCache
    from costaware.training.pipeline import watch_matrix

    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, 3)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=3000) > 0).astype(np.float32)
    names = ["a", "b", "c"]
    train = xgb.QuantileDMatrix(x[:2000], label=y[:2000], missing=np.nan, max_bin=64,
                                feature_names=names)
    read_in = []
    whole = ExternalFeatures.__array__
    monkeypatch.setattr(ExternalFeatures, "__array__",
                        lambda self, *a, **k: read_in.append(1) or whole(self, *a, **k))
    beyond = x[2000:].copy()
    beyond[7, 1] = 1e6  # beyond the training rows' last cut
    pages = PageCache(str(tmp_path))
    watched = []
    for name, rows, kind in (("validation", x[2000:], xgb.ExtMemQuantileDMatrix),
                             ("beyond", beyond, xgb.DMatrix)):
        held = _external(tmp_path, name, y[2000:], rows, batch_rows=128)
        watch = watch_matrix(held, train, names, {"max_bin": 64}, SOLO, pages)
        assert type(watch) is kind and read_in == []
        assert watch.num_row() == 1000 and watch.feature_names == names
        watched.append((watch, rows))
    booster = xgb.Booster({"max_depth": 3, "max_bin": 64}, [train] + [w for w, _ in watched])
    for iteration in range(5):
        booster.update(train, iteration)
        for watch, rows in watched:  # (the margins the rounds keep, a tree at a time)
            np.testing.assert_array_equal(
                booster.predict(watch, output_margin=True),
                booster.predict(xgb.DMatrix(rows, missing=np.nan, feature_names=names),
                                output_margin=True))

    class OtherHostHasTheirs:  # (another host's validation rows are left in their files)
        def any(self, flags):
            return np.array([flags[0], True])

    empty = watch_matrix(np.empty((0, 3), dtype=np.float32), train, names, {"max_bin": 64},
                         OtherHostHasTheirs(), pages)
    assert type(empty) is xgb.ExtMemQuantileDMatrix and empty.num_row() == 0
    del watched, watch, empty, booster
    pages.close()
    assert not os.path.exists(pages.directory)


def test_rows_read_in_from_their_files_are_all_of_them_or_a_bounded_seeded_sample(tmp_path):
    directory = channel(tmp_path, DATA["train"][:1200], files=2)
    whole = channel_files.load_channel(str(directory), "text/csv", OPTIONS)
    streamed = external_features.read_channel(ChannelBatches(str(directory), "text/csv", OPTIONS,
                                                             100))
    every, chosen = external_features.read_rows(streamed, seed=3, most=1200)
    assert chosen is None and isinstance(every.features, np.ndarray)
    np.testing.assert_array_equal(every.features, whole.features)
    sample, chosen = external_features.read_rows(streamed, seed=3, most=250)
    assert chosen.sum() == 250 == sample.rows
    np.testing.assert_array_equal(chosen, held_out_share(1200, 3, 1.0, 250))
    np.testing.assert_array_equal(sample.features, whole.features[chosen])
    np.testing.assert_array_equal(sample.label, whole.label[chosen])
    np.testing.assert_array_equal(sample.costs.fn, whole.costs.fn[chosen])
