"""Training from external memory: the train channel's features stay in their files
(:mod:`costaware.data.external_features`) and reach XGBoost in batches, through a
:class:`xgboost.DataIter` feeding an :class:`xgboost.ExtMemQuantileDMatrix`: XGBoost quantises each
batch into a page cached on disk and reads the pages back every round. XGBoost keeps per row its
margin, gradient pair and row indices (not the label: the objective holds it) besides what the
pipeline keeps (the label, 1 byte, 8 with K >= 3 classes; the loss weight, 4, when the costs vary
by row, else one value a class; the offset when the costs vary by row, 4).

The held-out rows (the calibrator's, the decision rule's and early stopping's) are the validation
channel when the job has one, its features left in their files too (the rounds keep their margins
in pages on disk: :func:`costaware.training.pipeline.watch_matrix`), else a
seeded share of train held in memory, at most 200,000 rows
(:func:`~costaware.data.external_features.held_out_share`).
Cross-fitting would grow ``k`` fold models from disk, each a full pass over the pages every round;
a held-out share costs one model (docs/training.md "External memory").
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import weakref
from typing import Iterator

import numpy as np
import xgboost as xgb

from ..data.external_features import ExternalFeatures, is_external  # noqa: F401 (re-exported)
from ..decisions.costs import row_blocks
from ..errors import DataError
from ..model import dense_margins


class FeatureBatches(xgb.DataIter):
    """XGBoost's view of a feature matrix (features left in their files, or an array): a batch
    per :meth:`next` (:func:`blocks`), with its rows' labels when given (training's matrices
    take none: the objective holds them). A matrix without rows gives one empty batch, which
    XGBoost needs (a host without validation rows builds the same kind of matrix as the
    others). ``cache_prefix``: where an external-memory matrix writes its pages."""

    def __init__(self, features, label: np.ndarray | None = None,
                 cache_prefix: str | None = None):
        self.features = features
        self.label = label
        self._batches = None
        self._start = 0
        super().__init__(cache_prefix=cache_prefix)

    def next(self, input_data) -> bool:
        if self._batches is None:
            self._batches = blocks(self.features)
            if not self.features.shape[0]:
                self._batches = iter([np.empty((0, self.features.shape[1]), dtype=np.float32)])
        batch = next(self._batches, None)
        if batch is None:
            return False
        end = self._start + len(batch)
        input_data(data=batch, label=None if self.label is None
                   else self.label[self._start:end].astype(np.float32))
        self._start = end
        return True

    def reset(self) -> None:
        self._batches, self._start = None, 0


# the page cache's size, with a margin: 500,000 rows x 100 features took 108 MB (2.2 bytes a
# value, 256 bins; a one-off measurement)
PAGE_BYTES_PER_VALUE = 2.5
PAGE_BYTES_PER_ROW = 16


class PageCache:
    """A directory for XGBoost's page cache, removed when training ends and XGBoost has freed
    its matrices (it removes its own files then, and warns when they are gone already)."""

    def __init__(self, parent: str | None = None):
        self.directory = tempfile.mkdtemp(prefix="costaware-pages-",
                                          dir=parent or os.environ.get("COSTAWARE_PAGE_CACHE"))
        self._matrices: list[weakref.ref] = []

    def prefix(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def check_room(self, need: float) -> None:
        """Refuse, in one line, a page cache the volume has no room for: XGBoost writes its pages
        from a thread of its own, and a full volume there aborts the process (SIGABRT), before
        any reason can be written."""
        free = shutil.disk_usage(self.directory).free
        if free < need:
            raise DataError(f"{self.directory}: {free / 2**20:,.1f} MiB free, and XGBoost's page "
                            f"cache of these rows needs about {need / 2**20:,.1f} MiB; set "
                            "COSTAWARE_PAGE_CACHE to a directory on a larger volume")

    def holds(self, matrix: xgb.DMatrix) -> xgb.DMatrix:
        self._matrices.append(weakref.ref(matrix))
        return matrix

    def close(self) -> None:
        gc.collect()
        alive = [matrix for matrix in (ref() for ref in self._matrices) if matrix is not None]
        if not alive:
            shutil.rmtree(self.directory, ignore_errors=True)
            return
        # still referenced (e.g. by an exception's frames): removed once the last is freed
        left = [len(alive)]

        def freed(directory=self.directory):
            left[0] -= 1
            if left[0] == 0:
                shutil.rmtree(directory, ignore_errors=True)

        for matrix in alive:
            weakref.finalize(matrix, freed)


def quantile_matrix(features, feature_names: list[str], cache: PageCache,
                    max_bin: int, nthread: int | None = None, ref: xgb.DMatrix | None = None,
                    name: str = "train") -> xgb.ExtMemQuantileDMatrix:
    """The features quantised into pages on disk (XGBoost reads the batches two or three times
    while building it), once the volume is known to have room for them; at ``ref``'s cuts when
    given (rows whose margins are kept, not trained on)."""
    rows, columns = features.shape
    cache.check_room(rows * (columns * PAGE_BYTES_PER_VALUE + PAGE_BYTES_PER_ROW))
    matrix = cache.holds(xgb.ExtMemQuantileDMatrix(
        FeatureBatches(features, None, cache.prefix(name)), missing=np.nan, max_bin=max_bin,
        nthread=nthread, ref=ref))
    matrix.feature_names = feature_names
    return matrix


RAW_PAGE_BYTES_PER_VALUE = 8  # a raw page keeps each value with its column index


def raw_matrix(features, feature_names: list[str], cache: PageCache,
               name: str, nthread: int | None = None) -> xgb.DMatrix:
    """The features' raw values in pages on disk (XGBoost's external-memory ``DMatrix``): for
    rows whose margins must be their raw values' (see
    :func:`costaware.training.pipeline.watch_matrix`)."""
    rows, columns = features.shape
    cache.check_room(rows * (columns * RAW_PAGE_BYTES_PER_VALUE + PAGE_BYTES_PER_ROW))
    matrix = cache.holds(xgb.DMatrix(FeatureBatches(features, None, cache.prefix(name)),
                                     missing=np.nan, nthread=nthread))
    matrix.feature_names = feature_names
    return matrix


def blocks(features) -> Iterator[np.ndarray]:
    """The rows of a feature matrix a block at a time (float32): its own batches (features left
    in their files), else :data:`~costaware.decisions.costs.ROW_BLOCK` rows of an array; no empty
    block."""
    if hasattr(features, "batches"):
        yield from features.batches()
        return
    for rows in row_blocks(len(features)):
        if len(features[rows]):
            yield np.asarray(features[rows], dtype=np.float32)


def margins(booster: xgb.Booster, features: ExternalFeatures, classes: int = 2) -> np.ndarray:
    """The booster's margins on the selected rows, predicted a batch at a time into one array
    (float64; ``(rows, K)`` with K >= 3 classes)."""
    out = np.empty((features.shape[0],) if classes == 2 else (features.shape[0], classes),
                   dtype=np.float64)
    start = 0
    predict = dense_margins.DenseMargins(booster)  # (the booster asked once, not every batch)
    for batch in features.batches():
        part = predict(batch)
        out[start:start + len(batch)] = part.reshape(out[start:start + len(batch)].shape)
        start += len(batch)
    if start != len(out):
        raise RuntimeError(f"the batches held {start} rows, not {len(out)}")
    return out
