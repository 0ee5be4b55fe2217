"""What a training job skips for speed, and that skipping it changes nothing: the saved model's
margins on the fit rows read from the members' caches instead of predicted, and numpy's BLAS on
one thread while a job runs (``benchmarks/bench_training.py`` measures what each saves)."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from costaware.cluster import SOLO
from costaware.config import hyperparameters
from costaware.data.channel_files import Dataset
from costaware.decisions.costs import CostMatrix, RowCosts
from costaware.training import pipeline as training
from costaware.training.class_kinds import kind_of


def _data(n=900, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    score = x[:, 0] + 0.5 * x[:, 1] * x[:, 2]
    if classes == 2:
        y = (rng.random(n) < 1 / (1 + np.exp(-2 * score))).astype(np.int8)
    else:
        y = np.digitize(score + 0.3 * rng.normal(size=n), [-0.5, 0.5]).astype(np.int8)
    return Dataset(x, y, [f"x{i}" for i in range(5)],
                   RowCosts.constant(CostMatrix(fp=1, fn=4), n), "memory", True)


@pytest.mark.parametrize("served_model, classes", [("fold_average", 2), ("refit", 2),
                                                   ("fold_average", 3)])
def test_the_fit_rows_margins_are_the_saved_models(served_model, classes):
    """``Kept.fit_margins`` (what the train channel's final metrics read) equals the saved
    model's own prediction on the fit rows: the refit's cached margins, the fold average's mean of
    the fold models' margins (float32 leaf sums there: to 1e-5)."""
    costs = ({"cost_fp": "1", "cost_fn": "4"} if classes == 2
             else {"cost_matrix": "[[0,1,2],[3,0,1],[4,2,0]]"})
    settings = hyperparameters.parse({"num_round": "12", "max_depth": "3", "eta": "0.3",
                                      "cross_fit_folds": "3", "served_model": served_model,
                                      **costs})
    data = _data(classes=classes)
    log = lambda line: None  # noqa: E731
    rows = training.fit_rows(settings, kind_of(settings), data, None, None, SOLO, log)
    _, _, boosting, _ = training.members(settings, rows, SOLO)
    held = training.held_out(settings, rows, boosting, SOLO)
    kept = training.grow(settings, rows, held, boosting, None, None, None, SOLO, log)
    assert kept.booster.num_boosted_rounds() == 12 * (1 if served_model == "refit" else 3)
    predicted = kept.booster.inplace_predict(data.features, predict_type="margin")
    assert kept.fit_margins.shape == predicted.shape
    assert np.abs(kept.fit_margins - predicted).max() < 1e-5
    assert np.abs(predicted).max() > 0.5  # (margins that moved from the base score)


def test_a_job_runs_blas_on_one_thread_and_gives_the_threads_back():
    """Inside ``pipeline.train`` (seen from its log callback) numpy's BLAS has one thread; after
    it, as many as before."""
    def blas_threads():
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    np.ones(10) @ np.ones(10)  # (numpy's BLAS loaded)
    before = blas_threads()
    assert before, "numpy has no BLAS library threadpoolctl can see"
    seen = []
    settings = hyperparameters.parse({"num_round": "3", "max_depth": "2", "cost_fp": "1",
                                      "cost_fn": "4"})
    training.train(settings, _data(), log=lambda line: seen.append(blas_threads()))
    assert seen and all(threads == [1] * len(before) for threads in seen)
    assert blas_threads() == before


def test_the_watched_validation_rows_give_the_margins_of_their_raw_values():
    """The validation matrix the rounds keep margins of is quantised at the model's cuts only
    when that gives the raw values' margins: a value at or above a feature's last cut lands in
    the last bin, below that cut, and a split at the last cut (present against missing) sends it
    the other way; such a value makes it a DMatrix. Without the check the second row's margin is
    0.374 where its value gives 0.688."""
    import xgboost as xgb

    rng = np.random.default_rng(1)
    x = -rng.random((4000, 1)).astype(np.float32)  # training values in (-1, 0]
    missing = rng.random(4000) < 0.3
    x[missing, 0] = np.nan
    y = (missing | (rng.random(4000) < 0.1)).astype(np.float32)
    train = xgb.QuantileDMatrix(x, label=y, missing=np.nan)
    booster = xgb.train({"max_depth": 2}, train, 2)
    params = {"max_bin": 256}
    for rows, quantised in (([[-0.5], [0.01], [0.5], [np.nan]], False),
                            ([[-0.5], [-0.2], [np.nan]], True)):
        features = np.array(rows, dtype=np.float32)
        watch = training.watch_matrix(features, train, ["f0"], params, SOLO)
        assert np.array_equal(booster.predict(watch, output_margin=True),
                              booster.predict(xgb.DMatrix(features, missing=np.nan),
                                              output_margin=True))
        assert isinstance(watch, xgb.QuantileDMatrix) == quantised
    empty = training.watch_matrix(np.empty((0, 1), dtype=np.float32), train, ["f0"], params, SOLO)
    assert empty.num_row() == 0
