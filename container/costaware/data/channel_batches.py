"""A training channel read in batches of bounded memory: :func:`channel_batches`, for training from
external memory, and :func:`channel_bytes`, for deciding whether a channel fits in memory.

A batch is a :class:`~costaware.data.channel_files.Dataset` of at most ``batch_rows`` rows (and of
at most :data:`BATCH_VALUES` values, libsvm's counted dense), checked
by :mod:`costaware.data.channel_files`' own helpers, so that the batches of a channel joined
together are :func:`~costaware.data.channel_files.load_channel`'s ``Dataset`` and a channel it
refuses is refused with its message, naming the real line. What those helpers decide on a whole
file or channel is decided before the first batch, in a first pass that reads no more than a batch
at a time either:

* every file's kind, its ragged lines (:mod:`costaware.data.csv_rows`, counting values as the
  bytes pass, one decompression of a gzip file), its header's names and its columns, compared with
  the first file's: ``load_channel`` reads every file before it checks a value, so these come
  first; then the columns' roles, resolved on the first file's first row;
* whether a facet, group or label column that may hold text holds text in a file: a file holding
  ``a`` in one row is text in all of its rows (``"1"`` stays ``"1"``), which a batch of numbers
  alone cannot tell (CSV: those columns alone; Parquet: those columns' pages alone);
* libsvm: the channel's largest index, the dense width of every batch (a parse of every line:
  parse errors come out here, in file order, as ``load_channel`` finds them).

After the last batch come the checks of the whole channel: a facet or group that is text in one
file and numbers in another; a channel of header lines only.

One difference: a channel with several faults. ``load_channel`` reads every file before it checks
a value and runs each check over a whole file before the next (every value of the first column,
then the second's, ..., the labels, then the features); here each batch is checked whole before
the next is read, so the first faulty batch names its fault (a fault only pandas' parser finds,
such as an unclosed quote, is a batch's). A channel with one fault gets the same message either
way.

:class:`ChannelBatches` is the same batches to iterate again and again (an XGBoost ``DataIter``
goes over its data more than once), the first pass made once.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import replace
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from . import csv_rows, libsvm_rows, recordio_protobuf
from .channel_files import (GZIP_MAGIC, LIBSVM_READ_ERRORS, READ_ERRORS, ColumnRoles, DataOptions,
                            Dataset, _check_dense_size, _check_header_names, _column_roles,
                            _csv_arguments, _csv_frame, _file_kind, _frame_dataset, _sparse_frame,
                            _not_utf8, _numeric, _parquet_frame, _read_file, _refuse_sparse_options,
                            SPARSE_FORMATS, SparseFormat,
                            _refuse_mixed_kinds, _refuse_no_rows, _refuse_other_columns,
                            _refuse_ragged, _unreadable, _widest_line, base_content_type,
                            channel_files)
from ..errors import DataError

GZIP_SMALLEST = 18  # bytes: a gzip member's header and trailer
# values a batch holds at most (libsvm's counted dense): parsing a batch takes about 37 bytes a
# value at its peak (pandas' parser, the checks' float64 frame, the float32 features; 65,536 rows
# x 51 values: 118 MiB, a one-off measurement), so a wide file is read in fewer rows at a time (a
# label and 19 features 65,536 rows, as before; a label and 50 features 25,700)
BATCH_VALUES = 65_536 * 20


def rows_within_values(batch_rows: int, columns: int) -> int:
    """``batch_rows``, or fewer so that a batch holds at most :data:`BATCH_VALUES` values (at
    least 1,024 rows; fewer only when ``batch_rows`` is)."""
    return min(batch_rows, max(1_024, BATCH_VALUES // max(columns, 1)))


def channel_batches(directory: str, content_type: str, options: DataOptions, batch_rows: int,
                    log: Callable[[str], None] | None = None) -> Iterator[Dataset]:
    """The channel's rows as Datasets of at most batch_rows rows each, file by file in
    channel_files() order, in row order; every check load_channel makes, per batch, with the same
    one-line reasons naming the file and the real line (CSV: the line in the file, header
    counted; Parquet: 1-based row; libsvm: the line).

    Memory: CSV is read ``batch_rows`` rows at a time (pandas' ``chunksize``), Parquet a record
    batch of at most ``batch_rows`` rows of one row group at a time, libsvm ``batch_rows`` lines at
    a time; the first pass (see the module) reads the same way."""
    return iter(ChannelBatches(directory, content_type, options, batch_rows, log))


def read_in_batches(directory: str, content_type: str, options: DataOptions, batch_rows: int,
                    log: Callable[[str], None] | None = None) -> Dataset:
    """:func:`~costaware.data.channel_files.load_channel`'s Dataset, read ``batch_rows`` rows at
    a time: a job holds the checked batches and then their join, about twice the float32 features,
    where pandas' reading of whole files held about three times the CSV's size at once (a 311 MiB
    train CSV: +980 MiB, ``bench_training.py --memory``)."""
    return Dataset.concat(list(ChannelBatches(directory, content_type, options, batch_rows, log,
                                              held_whole=True)))


class ChannelBatches:
    """:func:`channel_batches`' batches, to iterate as often as wanted (an XGBoost ``DataIter``
    goes over its data more than once): the first pass is made on the first iteration only."""

    def __init__(self, directory: str, content_type: str, options: DataOptions, batch_rows: int,
                 log: Callable[[str], None] | None = None, held_whole: bool = False):
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, not {batch_rows}")
        self.directory, self.options, self.batch_rows, self._log = (directory, options,
                                                                    batch_rows, log)
        self.held_whole = held_whole  # the batches are joined in memory (read_in_batches)
        self.base_type = base_content_type(content_type)
        self._surveyed = None  # (files, roles, each file's text columns)

    def __iter__(self) -> Iterator[Dataset]:
        if self._surveyed is None:
            if self.base_type in SPARSE_FORMATS:
                files = _sparse_files(self.directory, self.options, self.batch_rows, self._log,
                                      SPARSE_FORMATS[self.base_type], self.held_whole)
            else:
                files = _table_files(self.directory, self.base_type, self.options, self._log)
            roles = _column_roles(files[0].head, files[0].path, self.options)
            text_keys = [key for key in files[0].head.columns if key in roles.text_ok]
            texts = [_text_columns(file.frames(self.batch_rows, text_keys), file.path, roles)
                     if text_keys else frozenset() for file in files]
            self._surveyed = files, roles, texts
        return self._batches(*self._surveyed)

    def _batches(self, files, roles: ColumnRoles, texts) -> Iterator[Dataset]:
        firsts, rows = [], 0
        for file, text in zip(files, texts):
            first, flags, rows_before = None, _Flags(), 0
            for frame in file.frames(self.batch_rows, text=text):
                mixed = flags.mixed(frame, rows_before) if file.has_flags else None
                if mixed is not None:
                    _refuse_flags_among_values(file, roles, self.batch_rows, text, *mixed)
                rows_before += len(frame)
                batch = _frame_dataset(frame, file.path, roles, self.options, self.directory, text)
                batch = replace(batch, sparse_columns=file.sparse_columns)
                first = first or (file.path, batch.take(slice(0, 0)))
                if batch.rows:
                    rows += batch.rows
                    yield batch
            firsts.append(first)
        _refuse_mixed_kinds(firsts, roles)
        _refuse_no_rows(self.directory, rows, len(files))


def channel_bytes(directory: str, content_type: str) -> int:
    """The channel's data size once decompressed, read without reading the data: plain files their
    size; gzip the ISIZE trailer (the size modulo 2**32, of the file's last member: a gzip file of
    4 GiB or more, or of several members, counts less than it holds); Parquet the row groups'
    total_uncompressed_size from the footer. For deciding whether a channel fits in memory."""
    base_type = base_content_type(content_type)
    total = 0
    for path in channel_files(directory):
        if base_type in SPARSE_FORMATS:
            is_parquet, compression = False, _gzip_or_none(path, SPARSE_FORMATS[base_type].name)
        else:
            is_parquet, compression = _file_kind(path, base_type)
        try:
            if is_parquet:
                total += _parquet_bytes(path)
            elif compression == "gzip":
                total += _gzip_size(path)
            else:
                total += os.path.getsize(path)
        except READ_ERRORS as exc:
            raise _unreadable(path, "Parquet" if is_parquet else "gzip", exc) from None
    return total


def _gzip_or_none(path: str, what: str = "libsvm") -> str | None:
    try:
        with open(path, "rb") as handle:
            return "gzip" if handle.read(2) == GZIP_MAGIC else None
    except OSError as exc:
        raise _unreadable(path, what, exc) from None


def _gzip_size(path: str) -> int:
    """The ISIZE trailer; a file too short to hold one (no gzip file: reading it refuses it) its
    size."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size < GZIP_SMALLEST:
            return size
        handle.seek(-4, os.SEEK_END)
        return struct.unpack("<I", handle.read(4))[0]


def _parquet_bytes(path: str) -> int:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        metadata = parquet.metadata
    return sum(metadata.row_group(g).column(c).total_uncompressed_size
               for g in range(metadata.num_row_groups) for c in range(metadata.num_columns))


# -- CSV and Parquet ---------------------------------------------------------------------------

class _TableFile:
    """A CSV or Parquet file of a channel, surveyed: its kind and first row (``head``)."""

    sparse_columns = False

    def __init__(self, path: str, base_type: str, options: DataOptions):
        self.path, self.options = path, options
        self.is_parquet, compression = _file_kind(path, base_type)
        self.has_flags = not self.is_parquet  # CSV: see _Flags
        self._open = gzip.open if compression == "gzip" else open
        self.raw_columns: list = []  # as pandas reads them (CSV: the header's names unstripped)
        try:
            if self.is_parquet:
                self.head = self._parquet_head(base_type)
            else:
                self.head = self._csv_head(compression)
        except DataError:
            raise
        except READ_ERRORS as exc:
            raise _unreadable(path, "Parquet" if self.is_parquet else "CSV", exc) from None

    def _csv_head(self, compression: str | None) -> pd.DataFrame:
        """Ragged lines, header names (as load_channel checks them) and the first row."""
        header = self.options.header
        with csv_rows.CheckedReader(self.path, gzipped=compression == "gzip") as reader:
            while reader.read(csv_rows.BLOCK_BYTES):
                pass
            _refuse_ragged(self.path, reader, header)
        if header:
            _check_header_names(self.path, compression)
        with self._open(self.path, "rb") as handle:
            head = pd.read_csv(handle, nrows=1, **_csv_arguments(self.options))
        self.raw_columns = list(head.columns)
        return _csv_frame(head, header)

    def _parquet_head(self, base_type: str) -> pd.DataFrame:
        try:
            parquet = self._parquet()
        except READ_ERRORS:  # pyarrow says why in other words: load_channel's reader's message
            _read_file(self.path, base_type, self.options)
            raise
        with parquet:
            head = next(parquet.iter_batches(batch_size=1), None)
            frame = (parquet.schema_arrow.empty_table() if head is None else _table(head)).to_pandas()
        self.raw_columns = list(frame.columns)
        return _parquet_frame(frame)

    def frames(self, batch_rows: int, keys: list | None = None,
               text=frozenset()) -> Iterator[pd.DataFrame]:
        """The file's rows, ``batch_rows`` at a time, as frames load_channel's helpers check
        (``keys``: only those columns; ``text``: columns read as text). A file of no rows gives
        one frame of none."""
        positions = None if keys is None else [list(self.head.columns).index(k) for k in keys]
        batch_rows = rows_within_values(batch_rows,
                                        len(self.head.columns) if keys is None else len(keys))
        try:
            if self.is_parquet:
                yield from self._parquet_frames(batch_rows, positions)
            else:
                yield from self._csv_frames(batch_rows, positions, text)
        except DataError:
            raise
        except READ_ERRORS as exc:
            raise _unreadable(self.path, "Parquet" if self.is_parquet else "CSV", exc) from None

    def _csv_frames(self, batch_rows, positions, text) -> Iterator[pd.DataFrame]:
        dtype = {self.raw_columns[list(self.head.columns).index(k)]: str for k in text} or None
        with self._open(self.path, "rb") as handle:
            rows_before = 0
            for chunk in pd.read_csv(handle, chunksize=batch_rows, usecols=positions, dtype=dtype,
                                     **_csv_arguments(self.options)):
                yield _csv_frame(chunk, self.options.header, rows_before)
                rows_before += len(chunk)

    def _parquet(self):
        import pyarrow.parquet as pq

        # opened for each pass (a channel may hold many files); pre_buffer would read every row
        # group's pages before the first batch (a whole file's worth of memory)
        return pq.ParquetFile(self.path, pre_buffer=False)

    def _parquet_frames(self, batch_rows, positions) -> Iterator[pd.DataFrame]:
        columns = None if positions is None else [self.raw_columns[p] for p in positions]
        rows_before = 0
        with self._parquet() as parquet:
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
                yield _parquet_frame(_table(batch).to_pandas(), rows_before)
                rows_before += batch.num_rows
            if rows_before == 0:
                table = parquet.schema_arrow.empty_table()
                yield _parquet_frame((table.select(columns) if columns else table).to_pandas())


def _table(batch):
    import pyarrow as pa

    return pa.Table.from_batches([batch])


def _text_columns(frames: Iterator[pd.DataFrame], path: str, roles: ColumnRoles) -> frozenset:
    """The columns of ``roles.text_ok`` that hold text in a file (``frames``: its rows, in
    batches, of those columns), as one read of the whole file decides: a value in any batch that
    is not a number, or true/false values in one batch and numbers in another (pandas reads such a
    column as text)."""
    text, flags = set(), _Flags()
    for frame in frames:
        numeric = _numeric(frame, path, roles.text_ok)
        text.update(key for key in frame.columns if numeric[key].dtype.kind == "O")
        flags.mixed(frame, 0)
    return frozenset(text | (set(flags.first) & flags.others))


class _Flags:
    """pandas reads a CSV column of true/false values (``True``, ``false``, ...) as flags, which
    count as 1 and 0; a file holding them in some rows and numbers or text in others is text to a
    read of the whole file, whose first true/false value load_channel refuses as not a number.
    Batches of one file, seen in turn, find such a column."""

    def __init__(self):
        self.first: dict = {}  # column -> rows before the first batch that held flags in it
        self.others: set = set()  # columns that held other values in a batch

    def mixed(self, frame: pd.DataFrame, rows_before: int) -> tuple | None:
        """``(column, rows before the first batch of flags in it)`` once a column is mixed."""
        for key in frame.columns:
            column = frame[key]
            if _holds_flags(column):
                self.first.setdefault(key, rows_before)
            elif column.notna().any():
                self.others.add(key)
            if key in self.first and key in self.others:
                return key, self.first[key]
        return None


def _holds_flags(column: pd.Series) -> bool:
    """Whether pandas read a column's values as true/false (with missing values among them or not)."""
    if pd.api.types.is_bool_dtype(column):
        return True
    if column.dtype != object:
        return False
    present = column.dropna()
    return len(present) > 0 and all(isinstance(v, (bool, np.bool_)) for v in present)


def _table_files(directory, base_type, options, log) -> list[_TableFile]:
    """Every CSV or Parquet file of a channel surveyed, in order, each with the first's columns."""
    files: list[_TableFile] = []
    for path in channel_files(directory, log):
        file = _TableFile(path, base_type, options)
        if files:
            _refuse_other_columns(path, file.head.columns, files[0].path, list(files[0].head.columns))
        files.append(file)
    return files


def _refuse_flags_among_values(file: _TableFile, roles: ColumnRoles, batch_rows: int,
                               text: frozenset, key, rows_before: int) -> None:
    """Refuse a column of true/false values in some rows and others in other rows (:class:`_Flags`)
    as load_channel does: its batch of the first true/false value read again, that column as text,
    fails :func:`~costaware.data.channel_files._numeric` at that value."""
    seen = 0
    for frame in file.frames(batch_rows, text=text | {key}):
        if seen == rows_before:
            _numeric(frame, file.path, roles.text_ok)
            return
        seen += len(frame)


# -- libsvm and RecordIO-protobuf -------------------------------------------------------------

class _SparseFile:
    """A libsvm or RecordIO-protobuf file of a channel, read as frames of the channel's ``width``
    (``head``: the first block's), each of at most :data:`BATCH_VALUES` values once dense
    (``dense_rows``)."""

    sparse_columns, has_flags = True, False

    def __init__(self, path: str, width: int, head: pd.DataFrame, dense_rows: int,
                 form: SparseFormat):
        self.path, self.width, self.head, self.dense_rows = path, width, head, dense_rows
        self.form = form

    def frames(self, batch_rows: int, keys: list | None = None,
               text=frozenset()) -> Iterator[pd.DataFrame]:
        for rows_before, rows in _sparse_blocks(self.path, min(batch_rows, self.dense_rows),
                                                self.form):
            frame = _sparse_frame(rows, self.width, self.form, rows_before)
            yield frame if keys is None else frame[keys]


def _sparse_files(directory, options, batch_rows, log, form: SparseFormat,
                  held_whole: bool = False) -> list[_SparseFile]:
    """Every file of a sparse channel, parsed once (``batch_rows`` rows at a time) for the
    channel's largest column (the width of every batch), which is refused if a batch
    (``held_whole``: the channel's rows) held dense up to it would not fit in memory. A batch is
    then read in at most :data:`BATCH_VALUES` dense values (a wide channel in fewer rows), as CSV
    is."""
    _refuse_sparse_options(directory, options, form)
    paths = channel_files(directory, log)
    width, first_rows, widest, most, total = 0, None, "", 0, 0
    for path in paths:
        for rows_before, rows in _sparse_blocks(path, batch_rows, form):
            if rows.width > width:
                width, widest = rows.width, f"{path}: {form.unit} " \
                                            f"{rows_before + _widest_line(rows) + 1}"
            first_rows = rows if first_rows is None else first_rows
            most, total = max(most, rows.count), total + rows.count
    widest = f"{widest}: {form.column(width)}"
    dense_rows = rows_within_values(batch_rows, width + 1)  # (the label beside the features)
    if held_whole:
        _check_dense_size(total, width, widest)
    else:
        batch = min(most, dense_rows)
        _check_dense_size(batch, width, widest, f"a batch of {batch} rows")
    head = _sparse_frame(first_rows, width, form).iloc[:1]  # (the first row is all roles read)
    return [_SparseFile(path, width, head, dense_rows, form) for path in paths]


def _sparse_blocks(path: str, batch_rows: int, form: SparseFormat
                   ) -> Iterator[tuple[int, libsvm_rows.SparseRows]]:
    """``(rows before, rows)`` of each block of ``batch_rows`` rows of a sparse file."""
    if form.unit == "record":
        return _recordio_blocks(path, batch_rows)
    return _libsvm_blocks(path, batch_rows)


def _recordio_blocks(path: str, batch_rows: int) -> Iterator[tuple[int, libsvm_rows.SparseRows]]:
    """``(records before, rows)`` of each block of ``batch_rows`` records of a RecordIO-protobuf
    file (plain or gzip), parsed as load_channel parses the whole file; a fault names the record
    in the file and its byte (of the file once decompressed)."""
    opener = gzip.open if _gzip_or_none(path, "RecordIO-protobuf") else open
    try:
        with opener(path, "rb") as handle:
            records_before = bytes_before = 0
            while True:
                block, count = recordio_protobuf.read_block(handle, batch_rows)
                if not block:
                    if not records_before:  # (an empty file: refused as the whole file is)
                        _parse_records(path, b"", 0, 0)
                    return
                yield records_before, _parse_records(path, block, records_before, bytes_before)
                records_before += count
                bytes_before += len(block)
    except LIBSVM_READ_ERRORS as exc:
        raise _unreadable(path, "RecordIO-protobuf", exc) from None


def _parse_records(path: str, block: bytes, records_before: int, bytes_before: int) -> libsvm_rows.SparseRows:
    """A block's rows; a fault names the file, and the record and byte in the file."""
    try:
        return recordio_protobuf.parse(block, "required")
    except recordio_protobuf.RecordError as exc:
        raise DataError(f"{path}: {exc.moved(records_before, bytes_before)}") from None


def _libsvm_blocks(path: str, batch_rows: int) -> Iterator[tuple[int, libsvm_rows.SparseRows]]:
    """``(lines before, rows)`` of each block of ``batch_rows`` lines of a libsvm file, parsed
    as load_channel parses the whole file: line ends at the very end of the file are ignored (so
    a line of line ends alone waits for the next block: a line after it makes it an empty line);
    a parse error names the line in the file; bytes that are not UTF-8 the line and the byte. A
    file that cannot be read (a bad gzip file) or is not UTF-8 is refused for that before a parse
    error earlier in it, as when the whole file is read before it is parsed."""
    opener = gzip.open if _gzip_or_none(path) else open
    fault = None  # a block's parse error: the rest of the file is still read and decoded
    try:
        with opener(path, "rb") as handle:
            lines_before = bytes_before = 0
            block: list[bytes] = []
            for line in handle:
                block.append(line)
                if len(block) < batch_rows or not line.strip(b"\r\n"):
                    continue
                rows, fault = _parse_block(path, b"".join(block), lines_before, bytes_before, fault)
                if rows is not None:
                    yield lines_before, rows
                lines_before += len(block)
                bytes_before += sum(map(len, block))
                block = []
            if any(line.strip(b"\r\n") for line in block) or (block and not lines_before):
                rows, fault = _parse_block(path, b"".join(block), lines_before, bytes_before, fault)
                if rows is not None:
                    yield lines_before, rows
    except LIBSVM_READ_ERRORS as exc:
        raise _unreadable(path, "libsvm", exc) from None
    if fault is not None:
        raise fault


def _parse_block(path: str, data: bytes, lines_before: int, bytes_before: int,
                 fault: DataError | None) -> tuple[libsvm_rows.SparseRows | None, DataError | None]:
    """A block's rows, or its parse error; after an earlier block's parse error (``fault``) its
    bytes are only decoded. Bytes that are not UTF-8 raise at once."""
    try:
        text = data.decode("utf-8-sig" if bytes_before == 0 else "utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, data, exc, lines_before, bytes_before) from None
    if fault is not None:
        return None, fault
    try:
        return libsvm_rows.parse(text, "required"), None
    except libsvm_rows.LibsvmError as exc:
        message = str(exc).split(": ", 1)[1]
        moved = libsvm_rows.LibsvmError(exc.line + lines_before, message, exc.pair)
        return None, DataError(f"{path}: {moved}")
