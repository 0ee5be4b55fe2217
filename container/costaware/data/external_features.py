"""A channel whose features stay in its files (:class:`ExternalFeatures`), read a batch at a time
(:func:`~costaware.data.channel_batches.channel_batches`), and every other per-row column in memory:
what training from external memory (:mod:`costaware.training.external_memory`) reads.

Per row in memory: the label (1 byte), each per-row cost column and the facet and group values
the job names (8 bytes each; a cell without a column costs nothing,
:meth:`~costaware.decisions.costs.RowCosts.from_columns`). The features would cost
``4 x columns`` bytes a row, and reading them whole several times that.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Iterator

import numpy as np

from .channel_batches import ChannelBatches
from .channel_files import Dataset, pad_missing
from ..decisions.costs import CELLS, RowCosts
from ..errors import DataError

BATCH_ROWS = 65_536  # rows read and checked at a time (and one XGBoost cache page each)
HELD_OUT_SHARE = 0.1  # of train's rows, held out when the job has no validation channel
HELD_OUT_ROWS = 200_000  # held-out rows at most (their features are held in memory)


class ExternalFeatures:
    """A channel's feature matrix left in its files: the rows ``keep`` selects (a mask over the
    channel's rows; None: all), with the columns reordered (``order``) and padded with missing
    values (``pad``) as :func:`~costaware.data.channel_files.align_to` asks. Indexing by rows gives
    another lazy selection; ``np.asarray`` reads the selected rows into memory (for small
    selections: the held-out share, a contribution sample)."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, source: ChannelBatches, channel_rows: int, width: int,
                 keep: np.ndarray | None = None, order: np.ndarray | None = None, pad: int = 0):
        self.source = source
        self.channel_rows = channel_rows
        self.width = width  # the files' feature columns
        self.keep = keep
        self.order = order
        self.pad = pad

    @property
    def shape(self) -> tuple[int, int]:
        rows = self.channel_rows if self.keep is None else int(self.keep.sum())
        columns = self.width if self.order is None else len(self.order)
        return rows, columns + self.pad

    def __len__(self) -> int:
        return self.shape[0]

    def batches(self) -> Iterator[np.ndarray]:
        """The selected rows, a batch at a time (float32, C order; no empty batch)."""
        start = 0
        for batch in self.source:
            features = batch.features
            n = len(features)
            if self.keep is not None:
                features = features[self.keep[start:start + n]]
            start += n
            if self.order is not None:
                features = features[:, self.order]
            if self.pad:
                features = pad_missing(features, self.pad)
            if len(features):
                yield np.ascontiguousarray(features, dtype=np.float32)
        if start != self.channel_rows:
            raise DataError(f"{self.source.directory}: {start} rows read, {self.channel_rows} "
                            "before: the channel's files changed while training")

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows, columns = key
            if not (isinstance(rows, slice) and rows == slice(None)):
                return self[rows][:, columns]
            order = np.arange(self.width) if self.order is None else self.order
            if self.pad:
                raise IndexError("columns of padded external features")
            return replace_features(self, order=order[np.asarray(columns)])
        return replace_features(self, keep=self._keep_of(key))

    def _keep_of(self, rows) -> np.ndarray:
        kept = (np.arange(self.channel_rows) if self.keep is None
                else np.flatnonzero(self.keep))
        chosen = kept[rows]
        if chosen.ndim != 1 or np.any(np.diff(chosen) <= 0):
            raise IndexError("external features are selected by rows in increasing order")
        keep = np.zeros(self.channel_rows, dtype=bool)
        keep[chosen] = True
        return keep

    def padded(self, columns: int) -> "ExternalFeatures":
        return replace_features(self, pad=self.pad + columns)

    def __array__(self, dtype=None, copy=None):
        parts = list(self.batches())
        out = (np.concatenate(parts) if parts
               else np.empty((0, self.shape[1]), dtype=np.float32))
        return out if dtype is None else out.astype(dtype)

    def digest_key(self) -> np.ndarray:
        """What identifies these features for a checkpoint: the files (names, sizes, times of
        change), the selection and the columns."""
        files = []
        for root, _, names in sorted(os.walk(self.source.directory)):
            for name in sorted(names):
                stat = os.stat(os.path.join(root, name))
                files.append(f"{name}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}")
        text = "\x1e".join(files) + f"\x1e{self.shape}\x1e{self.pad}"
        parts = [np.frombuffer(text.encode(), dtype=np.uint8)]
        if self.keep is not None:
            parts.append(np.packbits(self.keep))
        if self.order is not None:
            parts.append(self.order.astype(np.int64).view(np.uint8))
        return np.concatenate(parts)


def replace_features(features: ExternalFeatures, **changes) -> ExternalFeatures:
    values = dict(source=features.source, channel_rows=features.channel_rows,
                  width=features.width, keep=features.keep, order=features.order,
                  pad=features.pad)
    values.update(changes)
    return ExternalFeatures(**values)


def is_external(features) -> bool:
    return isinstance(features, ExternalFeatures)


def read_channel(source: ChannelBatches) -> Dataset:
    """One pass over the channel (every check the in-memory reading makes, per batch): every
    per-row column in memory but the features, which stay in the files
    (:class:`ExternalFeatures`)."""
    options = source.options
    labels, cells, facets, groups, matrix_cells = [], {c: [] for c in CELLS}, [], [], []
    first = None
    rows = 0
    cost_cells = {cell for cell, _ in options.cost_columns}
    for batch in source:
        first = first or batch
        rows += batch.rows
        labels.append(batch.label)
        for cell in cost_cells:
            cells[cell].append(getattr(batch.costs, cell))
        if batch.facet is not None:
            facets.append(batch.facet)
        if batch.group is not None:
            groups.append(batch.group)
        if batch.cell_costs is not None:
            matrix_cells.append(batch.cell_costs)
    if first is None:  # (the reader refuses a channel without rows)
        raise DataError(f"channel directory {source.directory} holds no data rows")

    def joined(parts):
        return np.concatenate(parts) if parts else None

    features = ExternalFeatures(source, rows, len(first.feature_names))
    costs = RowCosts.from_columns(options.costs, rows,
                                  {cell: np.concatenate(cells[cell]) for cell in cost_cells})
    return replace(first, features=features, label=np.concatenate(labels), costs=costs,
                   facet=joined(facets), group=joined(groups),
                   cell_costs=None if not matrix_cells else
                   {cell: np.concatenate([c[cell] for c in matrix_cells])
                    for cell in matrix_cells[0]})


def row_keys(rows: int, seed: int) -> np.ndarray:
    """A uniform pseudo-random key per row, from (seed, row index) alone (SplitMix64), so a row's
    key does not depend on how the rows were batched."""
    with np.errstate(over="ignore"):  # (arithmetic modulo 2**64 is the point)
        z = np.arange(rows, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def held_out_share(rows: int, seed: int, share: float = HELD_OUT_SHARE,
                   most: int = HELD_OUT_ROWS) -> np.ndarray:
    """Which rows are held out: the ``min(ceil(share x rows), most)`` rows with the smallest
    :func:`row_keys` (a seeded simple random sample without replacement)."""
    count = min(int(np.ceil(share * rows)), most, max(rows - 1, 0))
    keys = row_keys(rows, seed)
    held = np.zeros(rows, dtype=bool)
    if count:
        held[np.argpartition(keys, count - 1)[:count]] = True
    return held


def read_rows(data: Dataset, seed: int, most: int = HELD_OUT_ROWS
              ) -> tuple[Dataset, np.ndarray | None]:
    """``(the rows with their features in memory, which rows they are)``: every row (``None``) up
    to ``most``, else the ``most`` rows of a seeded simple random sample (a mask; chosen as
    :func:`held_out_share` chooses), so what is read stays bounded however long the channel."""
    chosen = None if data.rows <= most else held_out_share(data.rows, seed, 1.0, most)
    rows = data if chosen is None else data.take(chosen)
    return replace(rows, features=np.asarray(rows.features)), chosen


def split_held_out(train: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    """``(the rows that train, the held-out rows)``: the held-out rows' features read into memory
    (one more pass over the files)."""
    held = held_out_share(train.rows, seed)
    held_rows = train.take(held)
    return train.take(~held), replace(held_rows, features=np.asarray(held_rows.features))
