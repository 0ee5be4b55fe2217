"""Request bodies -> float matrices in the model's ``request_columns`` order (features, then a
row's optional cost cells), NaN = missing. The formats' rules: :mod:`costaware.serving.codecs`."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pyarrow as pa  # imported at worker boot, not by the first big request
import pyarrow.csv as pa_csv

from ..data import libsvm_rows, recordio_protobuf
from ..data.arrow_numbers import float_rows  # not Table.to_pandas: no pandas in a worker
from ..data.libsvm_rows import F32_MAX
from ..model.inference import Layout
from .media_types import BINARY_INPUTS
from .request_error import bad as _bad

NAN = float("nan")
SMALL_BODY = 16 * 1024  # bodies up to this size are parsed line by line in Python (no Arrow)
# Arrow's CSV block (its default): a 6 MiB body read in 1 MiB blocks took 35.4 ms of CPU, in one
# 16 MiB block 38.7 ms (best of 21, the columns copied out as below; a block's cells stay in the
# cache while they are converted)
BULK_BLOCK_BYTES = 1 << 20
UTF8_BOM = b"\xef\xbb\xbf"


def decode(body: bytes, kind: str, layout: Layout) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse a request body into a float64 ``(rows, len(layout.names))`` array (NaN = missing),
    and which rows carry their own costs (``None``: none does)."""
    if kind in BINARY_INPUTS:
        if not body:
            raise _bad("the body is empty: send at least one row")
        return _with_costs(PARSERS[kind](body, layout), layout)
    if body.startswith(UTF8_BOM):
        body = body[len(UTF8_BOM):]
    if not body or body.isspace():  # isspace stops at the first other byte: no copy, no full scan
        raise _bad("the body is empty: send at least one row")
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = body.count(b"\n", 0, exc.start) + 1
            raise _bad(f"line {line}: the body is not valid UTF-8 (byte {exc.start})",
                       line=line) from None
    return _with_costs(PARSERS[kind](body, layout), layout)


def row_label(kind: str):
    """How errors name row ``i`` (0-based) of a body of this kind."""
    if kind == "json":
        return lambda i: f"instances[{i}]"
    if kind in BINARY_INPUTS:
        return lambda i: f"record {i + 1}"
    return lambda i: f"line {i + 1}"


def _with_costs(rows: list | np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows of the required width or with their costs -> one array of the full width."""
    width = len(layout.names)
    if isinstance(rows, np.ndarray):
        if rows.shape[1] == width and layout.cost_cells:
            return rows, np.ones(len(rows), dtype=bool)
        if rows.shape[1] == width:
            return rows, None
        return np.pad(rows, ((0, 0), (0, width - rows.shape[1])), constant_values=NAN), None
    return rows  # (already full width, with flags)


def _describe_names(names: list[str]) -> str:
    if len(names) <= 12:
        return ", ".join(names)
    return f"{', '.join(names[:10])}, ... ({len(names)} in all)"


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


# CSV ---------------------------------------------------------------------------------------------


def _widths(layout: Layout) -> tuple[int, ...]:
    """The cell counts a row may have: the required columns, and with the costs."""
    return (layout.required, len(layout.names)) if layout.cost_cells else (layout.required,)


def _width_message(got: int, layout: Layout) -> str:
    costs = ""
    if layout.cost_cells:
        costs = (f" ({len(layout.names)} with its costs: "
                 f"{', '.join(layout.names[layout.required:])})")
    return f"{got} values, the model takes {layout.required}{costs}"


def _parse_csv(body: bytes, layout: Layout):
    quote = body.find(b'"')
    if quote >= 0:
        line = body.count(b"\n", 0, quote) + 1
        raise _bad(f"line {line}: quoted CSV fields are not supported; send bare numbers",
                   line=line)
    if len(body) <= SMALL_BODY:
        return _parse_csv_lines(body.rstrip(b"\r\n").decode("utf-8").split("\n"), layout)
    features = _parse_csv_bulk(body, _widths(layout))
    if features is None:  # Arrow disagreed with the rules: the exact parser decides and explains
        return _parse_csv_lines(body.rstrip(b"\r\n").decode("utf-8").split("\n"), layout)
    _check_range(features, layout.names, lambda i: f"line {i + 1}")
    return features


def _parse_csv_bulk(body: bytes, widths: tuple[int, ...]) -> np.ndarray | None:
    """Arrow's CSV reader on one thread for big bodies (``benchmarks/bench_decoding.py``: a 6 MiB
    libsvm body's rows as CSV decoded in 30.2 ms, 40.1 ms with pandas' C parser and the checks it
    needed); ``None`` when anything looks off (then the exact parser runs).

    Arrow refuses a line whose cell count differs from the first line's, a cell that is not a
    number as it reads numbers (spaces around it, ``_``, a sign it does not take: the exact parser
    then decides), and parses each number correctly rounded, as Python's ``float`` does."""
    if b"\r" in body and body.count(b"\r") != body.count(b"\r\n"):
        return None  # Arrow would also end lines at a lone CR; the rules say only LF / CRLF
    end = body.find(b"\n")
    n = (body if end < 0 else body[:end]).count(b",") + 1
    if n not in widths:
        return None
    try:
        table = pa_csv.read_csv(
            io.BytesIO(body),
            read_options=pa_csv.ReadOptions(autogenerate_column_names=True, use_threads=False,
                                            block_size=BULK_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(quote_char=False, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types={f"f{j}": pa.float64() for j in range(n)},
                null_values=["", "nan", "NaN", "NAN"], strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_columns != n:
        return None
    features = float_rows(table)  # the rows XGBoost reads
    if n == 1 and np.isnan(features).any():  # an empty line would look like a missing value
        return None
    return features


def _parse_csv_lines(lines: list[str], layout: Layout):
    names = layout.names
    widths = _widths(layout)
    rows, flags = [], []
    for i, line in enumerate(lines, 1):
        if line.endswith("\r"):
            line = line[:-1]
        cells = line.split(",")
        if len(cells) not in widths:
            if not line.strip():
                raise _bad(f"line {i}: empty line; each line must hold {layout.required} values",
                           line=i)
            raise _bad(f"line {i}: {_width_message(len(cells), layout)}", line=i,
                       expected=layout.required, got=len(cells))
        try:
            if not line.isascii() or "_" in line:
                raise ValueError
            row = [float(c) if c.strip() else NAN for c in cells]
        except ValueError:
            _raise_bad_cell(cells, i, names)
        flags.append(len(cells) > layout.required)
        rows.append(row + [NAN] * (len(names) - len(row)))
    features = np.array(rows, dtype=np.float64)
    _check_range(features, names, lambda r: f"line {r + 1}")
    return features, (np.array(flags) if any(flags) else None)


def _raise_bad_cell(cells: list[str], line: int, names: list[str]):
    for j, cell in enumerate(cells):
        text = cell.strip()
        if not text and cell.isascii():
            continue  # missing
        try:  # a cell of non-ASCII spaces (U+00A0, ...) failed its line's isascii check, so it is
            # the one to report (it used to be skipped as missing: a 500; found by fuzzing)
            if not cell.isascii() or "_" in text:
                raise ValueError
            float(text)
        except ValueError:
            shown = _show(text if cell.isascii() else cell)
            raise _bad(f"line {line}, column {j + 1} ({names[j]}): {shown} is not a number "
                       "(leave the cell empty for a missing value)", line=line,
                       column=j + 1) from None
    raise AssertionError("no bad cell found")  # pragma: no cover


def _check_range(features: np.ndarray, names: list[str], where) -> None:
    """Refuse infinities and magnitudes beyond float32 (NaN = missing passes)."""
    if features.size <= 64:
        if all(-F32_MAX <= x <= F32_MAX or x != x for x in features.flat):
            return
    with np.errstate(invalid="ignore"):
        bad = np.abs(features) > F32_MAX
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        value = features[i, j]
        what = "is infinite" if math.isinf(value) else "is beyond float32's range (about 3.4e38)"
        raise _bad(f"{where(i)}, column {j + 1} ({names[j]}): {value:g} {what}; send a finite "
                   "number, or a missing value", **_location(where(i)), column=j + 1)


def _location(label: str) -> dict:
    match = re.fullmatch(r"line (\d+)", label)
    if match:
        return {"line": int(match.group(1))}
    match = re.fullmatch(r"instances\[(\d+)\]", label)
    return {"instance": int(match.group(1))} if match else {}


# JSON --------------------------------------------------------------------------------------------

_NUMERIC = {float, int, type(None)}


def _parse_json(body: bytes, layout: Layout):
    try:  # decoded here: json.loads(bytes) would guess UTF-16/32 from NUL bytes (found by fuzzing)
        doc = json.loads(body.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise _bad(f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column "
                   f"{exc.colno})", line=exc.lineno) from None
    except RecursionError:
        raise _bad("the body is not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict) or "instances" not in doc:
        got = "an object without 'instances'" if isinstance(doc, dict) else _json_type(doc)
        raise _bad('expected a JSON object {"instances": [ROW, ...]}, got ' + got)
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise _bad(f"'instances' must be a list of rows, got {_json_type(instances)}")
    if not instances:
        raise _bad("'instances' is empty: send at least one row")
    return _rows(instances, layout, lambda i: f"instances[{i}]")


def _parse_jsonlines(body: bytes, layout: Layout):
    # str, not bytes: json.loads(bytes) would guess UTF-16/32 from NUL bytes (found by fuzzing)
    lines = body.decode("utf-8").rstrip("\r\n").split("\n")
    try:  # one C-speed parse of the whole body as a JSON array of the lines
        records = json.loads("[" + ",".join(lines) + "]")
        if len(records) != len(lines):
            records = None
    except (json.JSONDecodeError, RecursionError):
        records = None
    if records is None:  # find the line at fault
        records = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                raise _bad(f"line {i}: empty line; each line must hold one JSON row", line=i)
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise _bad(f"line {i}: not valid JSON: {exc.msg} (column {exc.colno})",
                           line=i) from None
            except RecursionError:
                raise _bad(f"line {i}: not valid JSON: nested too deeply", line=i) from None
    return _rows(records, layout, lambda i: f"line {i + 1}")


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _rows(records: list, layout: Layout, where):
    """JSON rows (lists, ``{"features": [...]}`` or keyed objects) -> full-width float64 array
    and the rows with costs."""
    names = layout.names
    widths = _widths(layout)
    width = len(names)
    index = None
    rows, flags = [], []
    for i, record in enumerate(records):
        if isinstance(record, dict):
            if len(record) == 1 and "features" in record and "features" not in names:
                record = record["features"]
            else:
                if index is None:
                    index = {name: j for j, name in enumerate(names)}
                row, has = _keyed_row(record, index, layout, where(i))
                rows.append(row)
                flags.append(has)
                continue
        if not isinstance(record, list):
            raise _bad(f"{where(i)}: expected a list of {layout.required} numbers or an object "
                       f"keyed by column names, got {_json_type(record)}", **_location(where(i)))
        if len(record) not in widths:
            raise _bad(f"{where(i)}: {_width_message(len(record), layout)}",
                       **_location(where(i)), expected=layout.required, got=len(record))
        if not set(map(type, record)) <= _NUMERIC:
            for j, value in enumerate(record):
                if type(value) not in _NUMERIC:
                    raise _bad(f"{where(i)}, column {j + 1} ({names[j]}): {_json_value(value)} is "
                               "not a number (use null for a missing value)",
                               **_location(where(i)), column=j + 1)
        flags.append(len(record) > layout.required)
        rows.append(record if len(record) == width else record + [None] * (width - len(record)))
    try:
        features = np.array(rows, dtype=np.float64)  # None -> NaN
    except OverflowError:
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                if isinstance(value, int) and abs(value) > F32_MAX:
                    raise _bad(f"{where(i)}, column {j + 1} ({names[j]}): an integer of "
                               f"{len(str(abs(value)))} digits is beyond float32's range (about "
                               "3.4e38)", **_location(where(i)), column=j + 1) from None
        raise  # pragma: no cover
    _check_range(features, names, where)
    return features, (np.array(flags) if any(flags) else None)


def _keyed_row(record: dict, index: dict, layout: Layout, label: str) -> tuple[list, bool]:
    names = layout.names
    row = [None] * len(names)
    has_costs = False
    for key, value in record.items():
        j = index.get(key)
        if j is None:
            raise _bad(f"{label}: unknown column {_show(str(key))}; the model's columns are "
                       f"{_describe_names(list(names))}", **_location(label))
        if type(value) not in _NUMERIC:
            raise _bad(f"{label}, {key!r}: {_json_value(value)} is not a number (use null "
                       "or leave the key out for a missing value)", **_location(label))
        row[j] = value
        has_costs = has_costs or j >= layout.required
    return row, has_costs


def _json_value(value) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):  # pragma: no cover
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# libsvm ------------------------------------------------------------------------------------------


def _parse_libsvm(body: bytes, layout: Layout):
    """Index ``i`` is request column ``i`` (as cell ``i`` of a CSV line: the features, then the
    facet and the costs when the model takes them); a row carrying any cost index carries them all
    (:mod:`costaware.data.libsvm_rows` for the line rules)."""
    costs = (f" ({layout.required} columns, then its costs: "
             f"{', '.join(layout.names[layout.required:])})") if layout.cost_cells else ""
    try:
        sparse = libsvm_rows.parse(body, "optional", len(layout.names), costs)
    except libsvm_rows.LibsvmError as exc:
        extra = {} if exc.pair is None else {"pair": exc.pair}
        raise _bad(str(exc), line=exc.line, **extra) from None
    return _sparse_rows(sparse, layout, lambda i: f"line {i + 1}", lambda j: f"index {j + 1}",
                        lambda i: {"line": i + 1})


def _parse_recordio(body: bytes, layout: Layout):
    """Key ``i`` of a sparse row, value ``i`` of a dense one, is request column ``i`` (0-based,
    as the SDK writes a matrix's columns); a dense row holds the features, or the features and
    its costs; a sparse row carrying any cost key carries them all
    (:mod:`costaware.data.recordio_protobuf` for the format's rules)."""
    costs = (f" (with its costs: {', '.join(layout.names[layout.required:])})"
             if layout.cost_cells else "")
    try:
        sparse = recordio_protobuf.parse(body, "optional", len(layout.names), costs,
                                         _widths(layout))
    except recordio_protobuf.RecordError as exc:
        raise _bad(str(exc), record=exc.record, byte=exc.offset) from None
    return _sparse_rows(sparse, layout, lambda i: f"record {i + 1}", lambda j: f"key {j}",
                        lambda i: {"record": i + 1})


def _sparse_rows(sparse, layout: Layout, row_name, column_name, where):
    """Sparse rows at the request's full width, and which carry their costs: a row carrying any
    cost column carries them all."""
    rows = sparse.dense(len(layout.names))
    if not layout.cost_cells:
        return rows, None
    cost_values = rows[:, layout.required:]
    has = ~np.isnan(cost_values)
    some, every = has.any(axis=1), has.all(axis=1)
    partial = np.flatnonzero(some & ~every)
    if len(partial):
        i = int(partial[0])
        absent = [f"{layout.names[layout.required + j]} ({column_name(layout.required + j)})"
                  for j in np.flatnonzero(~has[i]).tolist()]
        raise _bad(f"{row_name(i)}: the row carries some of its costs but not "
                   f"{', '.join(absent)}; a row carries all its costs or none", **where(i))
    return rows, (some if some.any() else None)


# input kind (negotiation.INPUT_TYPES' values) -> parser: a new input format is a parser here and
# its media type there
PARSERS = {"csv": _parse_csv, "json": _parse_json, "jsonlines": _parse_jsonlines,
           "libsvm": _parse_libsvm, "recordio": _parse_recordio}
