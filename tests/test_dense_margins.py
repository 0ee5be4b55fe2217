"""Margins predicted through XGBoost's C API with a kept proxy matrix equal ``inplace_predict``'s,
bit for bit, for every input the server and training pass, from several threads at once."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import xgboost as xgb

from costaware.model import dense_margins
from costaware.model.artifact import Model


def booster(classes: int, rows: int = 3000, features: int = 7, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    y = (np.nan_to_num(x[:, 0]) > 0).astype(int) + (classes > 2) * (np.nan_to_num(x[:, 1]) > 1)
    params = {"max_depth": 4, "eta": 0.3, "nthread": 1}
    params.update({"objective": "binary:logistic"} if classes == 2 else
                  {"objective": "multi:softprob", "num_class": classes})
    return xgb.train(params, xgb.DMatrix(x, label=y), 30), x


def read_only(features: np.ndarray) -> np.ndarray:
    """The same values in an array numpy will not write (a buffer of bytes, as np.frombuffer
    gives a decoder): its address is taken another way."""
    copy = np.frombuffer(features.tobytes(), dtype=features.dtype).reshape(features.shape)
    assert not copy.flags.writeable
    return copy


@pytest.mark.parametrize("classes", [2, 3])
def test_margins_are_inplace_predicts_bit_for_bit(classes):
    model, x = booster(classes)
    kept = dense_margins.DenseMargins(model)  # a loaded model's: asked of XGBoost once
    rng = np.random.default_rng(1)
    for rows in (1, 2, 7, 100, 3000):
        at = rng.choice(len(x), rows, replace=False)
        for features in (np.ascontiguousarray(x[at]), x[at].astype(np.float64)):
            expected = model.inplace_predict(features, predict_type="margin", missing=np.nan)
            for got in (dense_margins.margins(model, features), kept(features),
                        kept(read_only(features))):
                assert got.dtype == np.float32 and got.shape == expected.shape
                assert got.flags.writeable and got.flags.c_contiguous
                assert np.array_equal(got, expected, equal_nan=True)
    # what goes to inplace_predict itself: a strided view, integers, no rows
    for features in (x[::2], x[:5].astype(np.int64), x[:0]):
        expected = model.inplace_predict(features, predict_type="margin", missing=np.nan)
        assert np.array_equal(dense_margins.margins(model, features), expected)


def test_the_result_is_not_overwritten_by_the_next_prediction():
    model, x = booster(2)
    first = dense_margins.margins(model, x[:3].copy())
    kept = first.copy()
    dense_margins.margins(model, x[3:6].copy())
    assert np.array_equal(first, kept)


def test_a_row_of_the_wrong_width_is_inplace_predicts_error():
    model, x = booster(2)
    with pytest.raises(ValueError, match="Feature shape mismatch, expected: 7, got 6"):
        dense_margins.margins(model, np.ascontiguousarray(x[:2, :6]))
    with pytest.raises(ValueError, match="Feature shape mismatch, expected: 7, got 8"):
        dense_margins.DenseMargins(model)(np.ones((1, 8)))


def test_a_models_margins_follow_a_booster_set_anew():
    """Model.margin keeps what XGBoost says of its booster; a booster put in its place is asked
    again (another number of features, other trees)."""
    first, x = booster(2)
    model = Model(first, [f"f{i}" for i in range(7)], None, {})
    row = np.ascontiguousarray(x[:1]).astype(np.float64)
    assert model.margin(row) == first.inplace_predict(row, predict_type="margin", missing=np.nan)
    second, wider = booster(2, features=9, seed=5)
    model.booster = second
    row = np.ascontiguousarray(wider[:1]).astype(np.float64)
    assert model.margin(row) == second.inplace_predict(row, predict_type="margin", missing=np.nan)


def test_threads_predicting_at_once_each_get_their_own_rows_margins():
    """A proxy per thread: threads that shared one would predict each other's rows."""
    model, x = booster(3)
    expected = model.inplace_predict(x, predict_type="margin", missing=np.nan)
    wrong, start = [], threading.Barrier(4)

    def work(offset):
        start.wait()
        for i in range(300):
            row = (offset * 300 + i) % len(x)
            got = dense_margins.margins(model, np.ascontiguousarray(x[row:row + 1]))
            if not np.array_equal(got, expected[row:row + 1]):
                wrong.append(row)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
