"""Channel files -> arrays. Every error names the file, line and column at fault.

Formats: ``text/csv`` without a header and the label in the first column (SageMaker's convention);
CSV with a header and a named label column; Parquet; ``text/libsvm`` (also ``text/x-libsvm`` and
``libsvm``, as the SageMaker XGBoost container reads them): the label, then 1-based ``INDEX:VALUE``
pairs (:mod:`costaware.data.libsvm_rows`); index ``i`` is column ``i`` of the same rows as
headerless CSV (the label being column 0), so the features are ``f0`` (index 1) onwards and
``cost_fp_column=5`` names index 5; an index a row leaves out is a missing value; the channel's
largest index is its last column; ``application/x-recordio-protobuf`` (SageMaker's built-in
algorithms' format, :mod:`costaware.data.recordio_protobuf`) alike, a record's label its
``label["values"]`` and its 0-based key ``i`` column ``i + 1``. A channel may hold several files (read in sorted
order, hidden files skipped); gzip is recognised by its magic bytes, whatever the file is called.
Empty cells are missing values; a row with fewer or more values than the first line is refused
(:mod:`costaware.data.csv_rows`), so a file cut off mid-write is not trained on; labels must be 0 or 1.
Cost columns (``cost_fp_column`` ...) give a row its own cost of an outcome; each row's four costs
are checked here, naming the file, line and column of a bad one
(:func:`costaware.decisions.costs.check_row_costs`). With more than two classes the cells of ``cost_matrix``
that name a column are read alike (``Dataset.cell_costs``), each a number >= 0 and each row's
regret at its own matrix >= 0.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import os
import re
import stat
import zlib
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd

from . import csv_rows, libsvm_rows, recordio_protobuf
from ..decisions.costs import CELLS, ROUNDING, CostMatrix, RowCosts, bad_cost, check_row_costs
from ..errors import DataError
from ..machine import available_memory
from ..metrics.clarify import positive_label_index

PARQUET_TYPES = {"application/x-parquet", "application/parquet", "application/vnd.apache.parquet"}
GZIP_MAGIC = b"\x1f\x8b"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
SEPARATORS = ((";", "semicolon"), ("\t", "tab"), ("|", "pipe"))
PARQUET_MAGIC = b"PAR1"
CSV_TYPES = ("text/csv", "text/plain", "application/csv")
# what reading a file raises for one that is not what it should be ("cannot be read as ...")
# (zlib.error: a gzip file whose compressed data is corrupt)
READ_ERRORS = (pd.errors.ParserError, UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError,
               ValueError, zlib.error)
LIBSVM_READ_ERRORS = (OSError, EOFError, gzip.BadGzipFile, zlib.error)


@dataclass(frozen=True)
class DataOptions:
    label_column: str = ""  # "" -> first column
    header: bool = False  # CSV files start with a header line
    costs: CostMatrix = CostMatrix(fp=1.0, fn=1.0)  # the class costs
    cost_columns: tuple[tuple[str, str], ...] = ()  # (cell, name or 0-based position)
    facet_column: str = ""  # measured for bias metrics; a feature only if facet_is_feature
    facet_is_feature: bool = False
    group_column: str = ""  # measured for conditional bias metrics, never a feature
    positive_label: object = None  # Clarify's label_values_or_threshold, parsed; None: 0/1 labels
    classes: tuple | None = None  # more than two classes: each class's label, in order
    matrix: tuple | None = None  # more than two classes: C[true][decided], the class costs
    matrix_columns: tuple = ()  # more than two classes: ((true, decided), name or position)


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray  # float32, NaN = missing
    label: np.ndarray  # int8, 0/1
    feature_names: list[str]
    costs: RowCosts  # each row's four costs (class costs where a cell has no column)
    source: str  # for messages: the channel directory
    named_columns: bool  # names come from a header or Parquet, not positions
    facet: np.ndarray | None = None  # raw facet values
    group: np.ndarray | None = None  # raw group values
    facet_feature: str | None = None  # the facet's feature name, when the facet is a feature
    cell_costs: dict | None = None  # more than two classes: (true, decided) -> each row's cost
    # libsvm: the features run to the channel's largest index, so a channel whose largest index is
    # smaller than train's lacks only missing values at its end (align_to pads them)
    sparse_columns: bool = False

    @property
    def rows(self) -> int:
        return len(self.label)

    def take(self, rows) -> "Dataset":
        """The rows ``rows`` (a slice or a boolean mask) of every per-row array."""
        def cut(values):
            return None if values is None else values[rows]

        return replace(self, features=self.features[rows], label=self.label[rows],
                       costs=self.costs.subset(rows), facet=cut(self.facet), group=cut(self.group),
                       cell_costs=None if self.cell_costs is None else
                       {cell: values[rows] for cell, values in self.cell_costs.items()})

    @classmethod
    def concat(cls, parts: list["Dataset"]) -> "Dataset":
        """The rows of ``parts`` (batches or files of one channel: the same columns) one after
        another; the columns' descriptions are the first part's."""
        first = parts[0]

        def joined(values):
            return None if values[0] is None else np.concatenate(values)

        return replace(first, features=np.concatenate([p.features for p in parts]),
                       label=np.concatenate([p.label for p in parts]),
                       costs=RowCosts.concat([p.costs for p in parts]),
                       facet=joined([p.facet for p in parts]), group=joined([p.group for p in parts]),
                       cell_costs=None if first.cell_costs is None else
                       {cell: np.concatenate([p.cell_costs[cell] for p in parts])
                        for cell in first.cell_costs})

    @classmethod
    def empty(cls, feature_names: list[str], options: "DataOptions", source: str) -> "Dataset":
        """No rows (a host whose shard of a channel has no files), with the columns ``options``
        asks for, so that it takes part in every per-column step like a host with rows."""
        def column():
            return np.empty(0, dtype=np.float64)

        return cls(np.empty((0, len(feature_names)), dtype=np.float32), np.empty(0, dtype=np.int8),
                   list(feature_names), RowCosts.constant(options.costs, 0), source,
                   named_columns=True, facet=column() if options.facet_column else None,
                   group=column() if options.group_column else None,
                   cell_costs={cell: column() for cell, _ in options.matrix_columns} or None)


def options_from_settings(settings, content_type: str = "") -> DataOptions:
    params = _content_type_params(content_type)
    if settings.csv_header == "auto":
        header = bool(settings.label_column) or params.get("header") == "present"
    else:
        header = settings.csv_header == "present"
    return DataOptions(settings.label_column, header, settings.class_costs, settings.cost_columns,
                       settings.facet_column, settings.facet_is_feature, settings.group_column,
                       settings.label_values, settings.class_labels, settings.matrix,
                       settings.matrix_columns)


def _content_type_params(content_type: str) -> dict:
    parts = [p.strip() for p in (content_type or "").split(";")]
    out = {}
    for part in parts[1:]:
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip().lower()] = value.strip().lower()
    return out


def channel_files(directory: str, log: Callable[[str], None] | None = None) -> list[str]:
    """The data files of a channel, in sorted order. Skipped, and named with why in one ``log``
    line: hidden files and directories, ``_SUCCESS`` markers, entries that are not regular files
    (a FIFO, a socket, a symbolic link to nothing) and blank files (empty, or only spaces and line
    breaks: no rows, as an empty file). No data file at all is a :class:`DataError`."""
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise DataError(f"channel directory {directory} {what}")
    files, empty, skipped, subdirectories = [], [], [], 0
    for root, dirs, names in os.walk(directory):
        subdirectories += len(dirs)
        skipped += [(os.path.relpath(os.path.join(root, d), directory), "hidden directory")
                    for d in sorted(dirs) if d.startswith(".")]
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory)
            why = _not_data(path, name)
            if why == "blank":
                empty.append(relative)
            elif why:
                skipped.append((relative, why))
            else:
                files.append(path)
    if log is not None and (empty or skipped):
        entries = ([f"{name} ({why})" for name, why in skipped]
                   + [f"{name} (empty or only whitespace)" for name in empty])
        log(f"channel directory {directory}: skipped {len(entries)} entr"
            f"{'y' if len(entries) == 1 else 'ies'}: {_few(entries, 20)}")
    if not files:
        if empty:
            detail = f"only empty files ({_few(empty)})"
        elif skipped:
            detail = ("only hidden, marker or special files, which are skipped: "
                      f"{_few([f'{name} ({why})' for name, why in skipped])}")
        elif subdirectories:
            detail = f"only {subdirectories} director{'y' if subdirectories == 1 else 'ies'} without files"
        else:
            detail = "it is empty"
        raise DataError(f"channel directory {directory} holds no data files: {detail}")
    return files


def _not_data(path: str, name: str) -> str | None:
    """Why the channel entry ``path`` is not read: "blank" for a file with no rows (empty, or only
    spaces and line breaks), another word for an entry that is skipped; None for a data file."""
    if name.startswith("."):
        return "hidden"
    if name == "_SUCCESS":
        return "marker file"
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return ("symbolic link to nothing" if os.path.islink(path)
                else f"cannot be read: {exc.strerror}")
    if not stat.S_ISREG(mode):
        kinds = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"),
                 (stat.S_ISBLK, "device"))
        return next((f"a {kind}, not a regular file" for test, kind in kinds if test(mode)),
                    "not a regular file")
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 16):
                if chunk.strip():
                    return None
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    return "blank"


def has_data_files(directory: str) -> bool:
    """Whether a channel directory holds a file :func:`load_channel` would read."""
    try:
        channel_files(directory)
    except DataError:
        return False
    return True


def _few(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def load_channel(directory: str, content_type: str, options: DataOptions,
                 log: Callable[[str], None] | None = None) -> Dataset:
    """Read every file of a channel into one :class:`Dataset`; ``log`` gets the line naming the
    entries that were skipped (:func:`channel_files`)."""
    base_type = base_content_type(content_type)
    if base_type in SPARSE_FORMATS:
        dataset = _to_dataset(_sparse_frames(directory, options, log, SPARSE_FORMATS[base_type]),
                              options, directory)
        return replace(dataset, sparse_columns=True)
    frames = []
    columns = None
    first_file = None
    for path in channel_files(directory, log):
        frame = _read_file(path, base_type, options)
        if columns is None:
            columns, first_file = list(frame.columns), path
        _refuse_other_columns(path, frame.columns, first_file, columns)
        frames.append((path, frame))
    dataset = _to_dataset(frames, options, directory)
    _refuse_no_rows(directory, dataset.rows, len(frames))
    return dataset


def base_content_type(content_type: str) -> str:
    """A channel's ContentType without its parameters, lower case (none: ``text/csv``)."""
    return (content_type or "text/csv").split(";")[0].strip().lower()


def _refuse_other_columns(path: str, columns, first_file: str, first_columns: list) -> None:
    """Every file of a channel has the columns of its first file, in the same order."""
    if list(columns) != first_columns:
        raise DataError(f"{path}: columns differ from {first_file} "
                        f"({_describe_columns(columns)} against {_describe_columns(first_columns)})")


def _refuse_no_rows(directory: str, rows: int, files: int) -> None:
    if rows == 0:
        raise DataError(f"channel directory {directory} holds no data rows ({files} file(s) "
                        "with a header line only)")


@dataclass(frozen=True)
class SparseFormat:
    """A channel format of sparse rows, each its label and its values by column: libsvm's lines
    or RecordIO-protobuf's records. Frame column ``k`` is the row's column ``k`` (``0`` the
    label; the features from ``1``), as in headerless CSV."""

    name: str
    unit: str  # what a row is in a file: "line" or "record"
    label_is: str
    label: str  # how messages name the label
    column_word: str  # and a feature's column: "index" (libsvm's), "key" (RecordIO's)
    first_index: int  # the number a format gives frame column 1 (libsvm 1, RecordIO's keys 0)

    def column(self, key: int) -> str:
        """Frame column ``key`` as the format names it."""
        return self.label if key == 0 else f"{self.column_word} {key - 1 + self.first_index}"

    def parse(self, path: str, raw: bytes) -> "libsvm_rows.SparseRows":
        """A whole file's rows (its bytes after gzip); a fault names the file and the row."""
        if self.unit == "record":
            try:
                return recordio_protobuf.parse(raw, "required")
            except recordio_protobuf.RecordError as exc:
                raise DataError(f"{path}: {exc}") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _not_utf8(path, raw, exc) from None
        try:
            return libsvm_rows.parse(text, "required")
        except libsvm_rows.LibsvmError as exc:
            raise DataError(f"{path}: {exc}") from None


LIBSVM = SparseFormat("libsvm", "line", "the first field of each line", "the label field",
                      "index", 1)
RECORDIO = SparseFormat("RecordIO-protobuf", "record", 'label["values"] of each record',
                        "the label", "key", 0)
SPARSE_FORMATS = {**{t: LIBSVM for t in libsvm_rows.CHANNEL_TYPES},
                  **{t: RECORDIO for t in recordio_protobuf.CHANNEL_TYPES}}


def _sparse_frames(directory: str, options: DataOptions, log,
                   form: SparseFormat) -> list[tuple[str, pd.DataFrame]]:
    """Every file of a sparse channel as a frame of columns ``0`` (the label, as text) to the
    channel's largest column, NaN where a row has no value."""
    _refuse_sparse_options(directory, options, form)
    parsed = []
    for path in channel_files(directory, log):
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
            if raw[:2] == GZIP_MAGIC:
                raw = gzip.decompress(raw)
        except LIBSVM_READ_ERRORS as exc:
            raise _unreadable(path, form.name, exc) from None
        parsed.append((path, form.parse(path, raw)))
    if not parsed:
        raise DataError(f"channel directory {directory} holds no data files")
    width = max(rows.width for _, rows in parsed)
    path, rows = max(parsed, key=lambda item: item[1].width)
    _check_dense_size(sum(rows.count for _, rows in parsed), width,
                      f"{path}: {form.unit} {_widest_line(rows) + 1}: {form.column(width)}")
    return [(path, _sparse_frame(rows, width, form)) for path, rows in parsed]


def _refuse_sparse_options(directory: str, options: DataOptions, form: SparseFormat) -> None:
    if options.label_column:
        raise DataError(f"{directory}: label_column={options.label_column!r} does not apply to "
                        f"{form.name}, whose label is {form.label_is}")
    if options.header:
        raise DataError(f"{directory}: {form.name} files have no header line (csv_header=present "
                        "or header=present was given)")


def _sparse_frame(rows: "libsvm_rows.SparseRows", width: int, form: SparseFormat,
                  rows_before: int = 0) -> pd.DataFrame:
    """Sparse rows (a file's, or a block of its rows after ``rows_before`` rows) as a frame of
    columns ``0`` (the label, as text) to ``width``, NaN where a row has no value."""
    frame = pd.DataFrame(rows.dense(width), columns=range(1, width + 1))
    frame.insert(0, 0, pd.Series(rows.labels, dtype=object))
    frame.attrs.update(csv=True, first_line=1 + rows_before, sparse=form)
    return frame


def _not_utf8(path: str, data: bytes, exc: UnicodeDecodeError, lines_before: int = 0,
              bytes_before: int = 0) -> DataError:
    """``data`` (a file's bytes, or a block of its lines after ``lines_before`` lines and
    ``bytes_before`` bytes) failed to decode as UTF-8-sig: the line and the byte in the file. The
    decoder counts from after a byte-order mark."""
    marked = bytes_before == 0 and data.startswith(codecs.BOM_UTF8)
    start = exc.start + (len(codecs.BOM_UTF8) if marked else 0)
    line = lines_before + data.count(b"\n", 0, start) + 1
    return DataError(f"{path}: line {line}: not UTF-8 text (byte {bytes_before + start})")


def _check_dense_size(rows: int, width: int, where: str, held: str = "the channel's rows") -> None:
    """Refuse ``rows`` rows (``held``: which) that, held dense up to the largest column ``width``
    (``where``: its file, row and index), would not fit in memory (float64 while read): a stray
    huge index would otherwise end the job out of memory."""
    available = available_memory()
    need = rows * width * 8
    if available is None or need <= available:
        return
    raise DataError(f"{where}: {held} held dense up to it "
                    f"would take {need / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB "
                    "available (features are held dense: is the index right?)")


def _widest_line(rows: "libsvm_rows.SparseRows") -> int:
    """The 0-based line of the rows' largest index (0: rows without an entry)."""
    if not len(rows.columns):
        return 0
    return int(rows.rows[int(np.argmax(rows.columns))])


def _describe_columns(columns) -> str:
    names = list(columns)
    if all(isinstance(c, (int, np.integer)) for c in names):
        return f"{len(names)} columns"
    return f"{len(names)} columns: {', '.join(map(str, names[:8]))}{', ...' if len(names) > 8 else ''}"


def _file_kind(path: str, base_type: str) -> tuple[bool, str | None]:
    """Whether a channel file is Parquet, and its compression (``"gzip"`` or None), from its
    first bytes; refused: a file that cannot be opened, a content type neither CSV nor Parquet,
    UTF-16 text."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:  # e.g. deleted or replaced after the channel was listed
        raise DataError(f"{path}: cannot be read: {exc.strerror}") from None
    if base_type in PARQUET_TYPES or magic == PARQUET_MAGIC or path.endswith(".parquet"):
        return True, None
    if base_type not in CSV_TYPES:
        raise DataError(f"{path}: content type {base_type!r} is not supported "
                        "(use text/csv, application/x-parquet, text/libsvm or "
                        "application/x-recordio-protobuf)")
    if magic[:2] in UTF16_BOMS:
        raise DataError(f"{path}: UTF-16 text (it starts with a UTF-16 byte-order mark); CSV "
                        "files must be UTF-8")
    return False, "gzip" if magic[:2] == GZIP_MAGIC else None


def _csv_arguments(options: DataOptions) -> dict:
    """How pandas reads a channel's CSV files."""
    return dict(header=0 if options.header else None, skip_blank_lines=False, low_memory=False)


def _read_file(path: str, base_type: str, options: DataOptions) -> pd.DataFrame:
    is_parquet, compression = _file_kind(path, base_type)
    try:
        if is_parquet:
            return _parquet_frame(pd.read_parquet(path))
        with csv_rows.CheckedReader(path, gzipped=compression == "gzip") as reader:
            try:
                frame = pd.read_csv(reader, **_csv_arguments(options))
            except pd.errors.ParserError:  # a long row: say which, with both counts
                _refuse_ragged(path, reader, options.header)
                raise
            _refuse_ragged(path, reader, options.header)  # a short row
        if options.header:
            _check_header_names(path, compression)
    except DataError:
        raise
    except READ_ERRORS as exc:
        raise _unreadable(path, "Parquet" if is_parquet else "CSV", exc) from None
    return _csv_frame(frame, options.header)


def _csv_frame(frame: pd.DataFrame, header: bool, rows_before: int = 0) -> pd.DataFrame:
    """A CSV file's rows as read (or a batch of them after ``rows_before`` rows), header names
    stripped, with what names their lines."""
    if header:
        frame.columns = [str(c).strip() for c in frame.columns]
    frame.attrs.update(csv=True, first_line=(2 if header else 1) + rows_before)
    return frame


def _parquet_frame(frame: pd.DataFrame, rows_before: int = 0) -> pd.DataFrame:
    """A Parquet file's rows as read (or a batch of them after ``rows_before`` rows)."""
    frame.columns = [str(c) for c in frame.columns]
    frame.attrs.update(csv=False, first_line=1 + rows_before)
    return frame


def _unreadable(path: str, what: str, exc: Exception) -> DataError:
    return DataError(f"{path}: cannot be read as {what}: {_one_line(exc)}")


def _refuse_ragged(path: str, reader: "csv_rows.CheckedReader", header: bool) -> None:
    ragged = reader.ragged()
    if ragged:
        raise DataError(csv_rows.describe(path, ragged, header))


def _check_header_names(path: str, compression: str | None) -> None:
    """Duplicate names in a header line (pandas would silently rename the second ``x`` to ``x.1``)."""
    opener = gzip.open if compression == "gzip" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            names = [name.strip() for name in next(csv.reader([handle.readline()]), [])]
    except (OSError, UnicodeDecodeError, EOFError, csv.Error):
        return  # pandas read the file; its own header is what counts then
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(f"{path}: line 1: the header names column {name!r} twice (columns "
                            f"{seen[name]} and {position}); column names must be unique")
        seen[name] = position


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _column_key(frame: pd.DataFrame, spec: str, what: str, path: str):
    """Resolve a column given by name or by 0-based position."""
    columns = list(frame.columns)
    if spec in columns:
        return spec
    if spec.isdigit() and int(spec) < len(columns):
        return columns[int(spec)]
    raise DataError(f"{path}: no {what} column {spec!r} (columns: {_describe_columns(columns)})")


@dataclass(frozen=True)
class ColumnRoles:
    """What each column of a channel's files is, resolved on its first file."""

    label: object
    features: list  # keys, in order
    costs: dict  # cell -> key of its cost column
    cells: dict  # more than two classes: (true, decided) -> key of its cost column
    facet: object  # key, or None
    group: object  # key, or None
    text_ok: frozenset  # keys of the columns that may hold text
    names: list[str]  # the features' names
    named: bool  # names come from a header or Parquet, not positions

    @property
    def facet_feature(self) -> str | None:
        return self.names[self.features.index(self.facet)] if self.facet in self.features else None


def _to_dataset(frames: list[tuple[str, pd.DataFrame]], options: DataOptions, source: str) -> Dataset:
    roles = _column_roles(frames[0][1], frames[0][0], options)
    parts = [(path, _frame_dataset(frame, path, roles, options, source)) for path, frame in frames]
    _refuse_mixed_kinds(parts, roles)
    return Dataset.concat([part for _, part in parts])


def _column_roles(frame0: pd.DataFrame, path0: str, options: DataOptions) -> ColumnRoles:
    """Resolve ``options``' columns on a channel's first file (``frame0``: its rows, or at least
    its first)."""
    label_key = (_column_key(frame0, options.label_column, "label", path0)
                 if options.label_column else frame0.columns[0])
    special = {"label": label_key}
    roles = [(f"cost_{cell}", spec) for cell, spec in options.cost_columns]
    roles += [(_cell_role(cell), spec) for cell, spec in options.matrix_columns]
    for what, spec in roles + [("facet", options.facet_column), ("group", options.group_column)]:
        if spec:
            key = _column_key(frame0, spec, what, path0)
            for other, other_key in special.items():
                if key == other_key:
                    raise DataError(f"{path0}: the {what} column is the {other} column ({key!r})")
            special[what] = key
    cost_keys = {cell: special[f"cost_{cell}"] for cell, _ in options.cost_columns}
    cell_keys = {cell: special[_cell_role(cell)] for cell, _ in options.matrix_columns}
    facet_key, group_key = special.get("facet"), special.get("group")
    measured = {label_key, group_key, *cost_keys.values(), *cell_keys.values()}
    if not options.facet_is_feature:
        measured.add(facet_key)
    feature_keys = [c for c in frame0.columns if c not in measured]
    if not feature_keys:
        hint = ""
        if frame0.attrs["csv"] and len(frame0.columns) == 1 and len(frame0):
            first = str(frame0.iloc[0, 0])
            separator = next((name for char, name in SEPARATORS if char in first), None)
            if separator:
                hint = f" (the first line holds {first[:40]!r}: {separator}-separated? CSV needs commas)"
            elif re.match(r"\S+\s+\d+:", first):
                hint = (f" (the first line holds {first[:40]!r}: libsvm? set the channel's "
                        "ContentType to text/libsvm)")
        raise DataError(f"{path0}: no feature columns besides the label{hint}")
    # Columns that may hold text: measured, never features (Clarify's categorical facets and labels).
    text_ok = {key for key in (facet_key, group_key) if key is not None and key not in feature_keys}
    if isinstance(options.positive_label, list) or any(isinstance(c, str)
                                                       for c in options.classes or ()):
        text_ok.add(label_key)
    named = not all(isinstance(c, (int, np.integer)) for c in frame0.columns)
    names = [str(c) for c in feature_keys] if named else [f"f{i}" for i in range(len(feature_keys))]
    return ColumnRoles(label_key, feature_keys, cost_keys, cell_keys, facet_key, group_key,
                       frozenset(text_ok), names, named)


def _frame_dataset(frame: pd.DataFrame, path: str, roles: ColumnRoles, options: DataOptions,
                   source: str, text=frozenset()) -> Dataset:
    """A file's rows (or a batch of them) checked, as a :class:`Dataset`. ``text``: columns of
    ``roles.text_ok`` that hold text in the file, whether or not these rows do (a file read in
    batches is text or numbers as a whole, as when it is read at once)."""
    numeric = _numeric(frame, path, roles.text_ok)
    for key in text:
        numeric[key] = frame[key].astype(object)
    label_key = roles.label
    if options.classes is not None:
        label = _class_labels(numeric[label_key], path, frame, label_key, options.classes)
    else:
        label = _labels(numeric[label_key], path, frame, label_key, options.positive_label)
    features = _float32_features(numeric[roles.features].to_numpy(dtype=np.float64),
                                 path, frame, roles.features)
    costs = _row_costs(numeric, path, frame, options.costs, roles.costs)
    cells = (_cell_costs(numeric, path, frame, roles.cells, options.matrix, label)
             if roles.cells else None)
    facet = (None if roles.facet is None
             else _complete(numeric[roles.facet], path, frame, roles.facet, "facet"))
    group = (None if roles.group is None
             else _complete(numeric[roles.group], path, frame, roles.group, "group"))
    return Dataset(features=features, label=label, feature_names=roles.names, costs=costs,
                   source=source, named_columns=roles.named, facet=facet, group=group,
                   facet_feature=roles.facet_feature, cell_costs=cells)


def _refuse_mixed_kinds(parts: list[tuple[str, Dataset]], roles: ColumnRoles) -> None:
    """A facet or group column is text in every file of a channel or numbers in every one
    (``parts``: each file's rows, or any batch of them, with its path)."""
    for key, what in ((roles.facet, "facet"), (roles.group, "group")):
        if key is None:
            continue
        text = [path for path, part in parts if getattr(part, what).dtype.kind == "O"]
        numbers = [path for path, part in parts if getattr(part, what).dtype.kind != "O"]
        if text and numbers:
            raise DataError(f"{what} column {key!r} holds text in {text[0]} but numbers in "
                            f"{numbers[0]}")


def _line(frame: pd.DataFrame, row: int) -> str:
    # CSV and libsvm: the line number in the file; Parquet: the 1-based row; RecordIO: the record
    sparse = frame.attrs.get("sparse")
    where = sparse.unit if sparse else "line" if frame.attrs["csv"] else "row"
    return f"{where} {row + frame.attrs['first_line']}"


def _column_name(frame: pd.DataFrame, key) -> str:
    if frame.attrs.get("sparse"):
        return frame.attrs["sparse"].column(key)
    position = list(frame.columns).index(key) + 1
    return f"column {position}" + ("" if isinstance(key, (int, np.integer)) else f" ({key!r})")


def _numeric(frame: pd.DataFrame, path: str, text_ok=frozenset()) -> pd.DataFrame:
    """Every column as numbers; a column in ``text_ok`` that is not all numbers stays text."""
    out = {}
    for key in frame.columns:
        column = frame[key]
        if pd.api.types.is_bool_dtype(column):
            out[key] = column.astype(np.float64)
            continue
        if pd.api.types.is_numeric_dtype(column):
            out[key] = column
            continue
        if pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(column):
            raise DataError(f"{path}: {_column_name(frame, key)} holds {column.dtype} values; "
                            "columns must hold numbers")
        converted = pd.to_numeric(column, errors="coerce")
        bad = converted.isna() & column.notna() & (column.astype(str).str.strip() != "")
        if bad.any() and key in text_ok:
            out[key] = column.astype(object)
            continue
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}: {_line(frame, row)}, {_column_name(frame, key)}: "
                f"{str(column.iloc[row])[:40]!r} is not a number"
            )
        out[key] = converted
    return pd.DataFrame(out, index=frame.index)


def _complete(column: pd.Series, path: str, frame, key, what: str) -> np.ndarray:
    """A column without missing values: floats, or stripped strings for a text column."""
    if column.dtype.kind == "O":
        values = column.astype(str).str.strip().to_numpy(dtype=object)
        missing = column.isna().to_numpy() | (values == "")
    else:
        values = column.to_numpy(dtype=np.float64)
        missing = np.isnan(values)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(f"{path}: {_line(frame, row)}, {_column_name(frame, key)} ({what}): "
                        f"missing; every row needs a {what} value")
    return values


def _labels(column: pd.Series, path: str, frame, key, positive=None) -> np.ndarray:
    if positive is not None:  # Clarify's rule collapses any label values to the positive outcome
        values = _complete(column, path, frame, key, "label")
        try:
            return positive_label_index(values, positive).astype(np.int8)
        except ValueError as exc:  # the values match no label, nor convert to the column's type
            raise DataError(f"{path}: {_column_name(frame, key)} (label): {exc}") from None
    values = column.to_numpy(dtype=np.float64)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = "missing" if np.isnan(values[row]) else f"{values[row]:g}"
        raise DataError(
            f"{path}: {_line(frame, row)}, {_column_name(frame, key)} (label): {shown}; "
            "labels must be 0 or 1 (or set label_values_or_threshold; more than two classes: "
            "set cost_matrix or classes)"
        )
    return values.astype(np.int8)


def _class_labels(column: pd.Series, path: str, frame, key, classes: tuple) -> np.ndarray:
    """Each row's class index: its label's position in ``classes`` (text labels compared as
    text, numbers as numbers)."""
    values = _complete(column, path, frame, key, "label")
    index = {(c if isinstance(c, str) else float(c)): i for i, c in enumerate(classes)}
    if values.dtype.kind == "f":
        keys = values.tolist() if all(not isinstance(c, str) for c in classes) else \
            [f"{v:g}" for v in values.tolist()]
    else:
        keys = values.tolist()
    out = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    bad = np.flatnonzero(out < 0)
    if len(bad):
        row = int(bad[0])
        raise DataError(f"{path}: {_line(frame, row)}, {_column_name(frame, key)} (label): "
                        f"{str(keys[row])[:40]!r} is not one of the classes "
                        f"{json.dumps(list(classes))[:200]}")
    return out.astype(np.int8)


def _float32_features(block: np.ndarray, path: str, frame, keys) -> np.ndarray:
    """A file's features (float64, as read) as float32, which XGBoost holds them in. Refused,
    naming the line and column: an infinite value, and a finite one beyond float32's range,
    which would become one (XGBoost then stopped the job with a traceback)."""
    infinite = np.isinf(block)
    if infinite.any():
        row, col = (int(i[0]) for i in np.nonzero(infinite))
        raise DataError(f"{path}: {_line(frame, row)}, {_column_name(frame, keys[col])}: "
                        "infinite value; use an empty cell for a missing value")
    with np.errstate(over="ignore"):  # (said below, naming the cell)
        features = block.astype(np.float32)
    beyond = np.isinf(features)
    if beyond.any():
        row, col = (int(i[0]) for i in np.nonzero(beyond))
        raise DataError(f"{path}: {_line(frame, row)}, {_column_name(frame, keys[col])}: "
                        f"{block[row, col]:g} is beyond float32's range (magnitudes up to "
                        f"{np.finfo(np.float32).max:.4g}), in which features are held")
    return features


def _row_costs(numeric: pd.DataFrame, path: str, frame, class_costs: CostMatrix,
               keys: dict) -> RowCosts:
    """A file's rows' costs: the cost columns' values, the class cost for the other cells; every
    row checked by :func:`costaware.decisions.costs.check_row_costs`."""
    costs = RowCosts.from_columns(class_costs, len(frame), {
        cell: numeric[key].to_numpy(dtype=np.float64) for cell, key in keys.items()})
    names = {cell: (f"{_column_name(frame, keys[cell])} (cost_{cell})" if cell in keys
                    else f"cost_{cell} (the class cost, no column)") for cell in CELLS}
    check_row_costs(costs, lambda row: f"{path}: {_line(frame, row)}", names, training=True)
    return costs


def _cell_role(cell: tuple[int, int]) -> str:
    return f"cost_matrix C[{cell[0]}][{cell[1]}]"


def _cell_costs(numeric: pd.DataFrame, path: str, frame, keys: dict, matrix: tuple,
                label: np.ndarray) -> dict:
    """More than two classes: a file's rows' costs of the cells of ``cost_matrix`` that name a
    column, each a finite number >= 0; and each row's regret at its own matrix
    (:func:`costaware.decisions.multiclass.row_regrets`) >= 0, since the loss weights a row by it."""
    from ..decisions.multiclass import row_regrets

    cells = {}
    for cell, key in keys.items():
        values = numeric[key].to_numpy(dtype=np.float64)
        bad = bad_cost(values)
        if bad is not None:
            raise DataError(f"{path}: {_line(frame, bad[0])}, {_column_name(frame, key)} "
                            f"({_cell_role(cell)}): {bad[1]}; costs must be numbers >= 0")
        cells[cell] = values
    class_costs = np.array(matrix, dtype=np.float64)
    regret = row_regrets(label, class_costs, cells)
    negative = regret < -ROUNDING * max(1.0, float(class_costs.max()))
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise DataError(f"{path}: {_line(frame, row)}: the row's right decision (class "
                        f"{int(label[row])}) costs more than its mistakes on average (regret "
                        f"{regret[row]:g}); training weights each row by that regret, which must "
                        "be >= 0")
    return cells


def align_to(reference: Dataset, other: Dataset) -> Dataset:
    """Check that ``other`` has ``reference``'s features; reorder named columns to match."""
    if other.feature_names == reference.feature_names:
        return other
    short = len(reference.feature_names) - len(other.feature_names)
    if (other.sparse_columns and reference.sparse_columns and short > 0
            and other.feature_names == reference.feature_names[:len(other.feature_names)]):
        return replace(other, features=_padded(other.features, short),
                       feature_names=reference.feature_names)
    if other.named_columns and set(other.feature_names) == set(reference.feature_names):
        order = [other.feature_names.index(n) for n in reference.feature_names]
        return replace(other, features=other.features[:, order], feature_names=reference.feature_names)
    named = reference.named_columns and other.named_columns
    missing = [n for n in reference.feature_names if n not in other.feature_names]
    extra = [n for n in other.feature_names if n not in reference.feature_names]
    if named:
        detail = f"missing {missing[:5]}, unexpected {extra[:5]}"
    elif len(other.feature_names) != len(reference.feature_names):
        detail = f"{len(other.feature_names)} feature columns, train has {len(reference.feature_names)}"
    else:  # as many columns, other names: one side has a header, the other has not
        differ = [(i, a, b) for i, (a, b) in enumerate(zip(other.feature_names,
                                                            reference.feature_names)) if a != b]
        header = "this file" if other.named_columns else "the train channel"
        detail = (f"the same {len(other.feature_names)} feature columns by count, but named "
                  "differently: " + ", ".join(f"feature {i + 1} is {a!r} here, {b!r} in train"
                                              for i, a, b in differ[:3])
                  + (", ..." if len(differ) > 3 else "")
                  + f"; only {header} has a header line")
    raise DataError(f"{other.source}: columns differ from the train channel ({detail})")


def _padded(features, columns: int):
    """``features`` with ``columns`` more columns of missing values."""
    if hasattr(features, "padded"):  # features left in their files (external_features)
        return features.padded(columns)
    return pad_missing(features, columns)


def pad_missing(features: np.ndarray, columns: int) -> np.ndarray:
    """A matrix with ``columns`` more columns of missing values (NaN)."""
    return np.hstack([features, np.full((len(features), columns), np.nan, dtype=features.dtype)])
