"""Request bodies -> feature matrices, predictions -> response bodies; content negotiation.

Input (``Content-Type``)
  ``text/csv``                one row per line, no header, no label, ``,``-separated, ``\\n`` or
                              ``\\r\\n`` line ends. Parameters: ``charset`` (utf-8 / us-ascii only),
                              ``label_size`` (only ``0``), ``header`` (only ``absent``); others ignored.
  ``application/json``        ``{"instances": [ROW, ...]}``
  ``application/jsonlines``   one ROW per line (also ``application/jsonl``, ``application/x-jsonlines``)

  A JSON ROW is a list of numbers in the model's ``request_columns`` order, ``{"features": [...]}``
  (SageMaker's built-in "dense" form), or an object keyed by the column names (``{"f0": 1.5,
  ...}``); in a keyed object an absent feature is missing, an unknown name is an error.

Per-row costs (models trained with cost columns): a CSV line or a JSON list may carry the row's
costs as extra values after the features (and the facet), in the order of ``request_columns``; a
keyed object carries them under the cost columns' names. A row without them is decided at the class
costs; a row with them must carry all of them.

Missing values and non-finite numbers (one rule for every format)
  * missing: an empty CSV cell (spaces allowed), ``nan`` in any case (CSV), JSON ``null``, the JSON
    extension token ``NaN``, and an absent key in a keyed JSON object. XGBoost routes missing values
    down each tree's learned default branch.
  * refused (400): ``inf``/``Infinity`` (either sign) and any magnitude beyond float32's range
    (about 3.4e38), because XGBoost reads float32 and such a value would silently become infinite.
  * refused (400): anything else that is not a plain number: JSON strings and booleans, CSV cells
    such as ``abc``, ``1_000``, ``0x10``, quoted CSV fields. A wholly empty line is an error (it is
    not a row of missing values); trailing line ends at the very end of a body are ignored.

Output (``Accept``)
  ``application/json`` (default; also for a missing Accept, ``*/*`` and ``application/*``)::

      {"predictions": [{"score": 0.91, "decision": 1, "expected_cost_if_1": ..., ...}, ...],
       "policy": {"costs": {"cost_fp": ..., ...}, "costs_source": "model", "rule": {"kind": ...},
                  "cost_columns": [...]}}

  ``application/jsonlines``   one object per row (also ``application/jsonl``, ``application/x-jsonlines``)
  ``text/csv`` (also ``text/*``) one line per row, the fields in the order asked, no header.

  Rows come back in input order, exactly one per input row, separated by ``\\n`` with no final
  line end (batch transform's ``AssembleWith=Line`` adds one after each response).

Selecting fields: an ``Accept`` parameter ``fields``, e.g. ``text/csv;fields=decision`` or
``application/json;fields=score,decision`` (the list may also be quoted:
``fields="score,decision"``). Fields: ``score`` (calibrated probability of class 1), ``decision``
(0/1), ``expected_cost_if_1``, ``expected_cost_if_0`` (expected cost of deciding 1 / 0 at the row's
costs), ``threshold`` (the probability at which the row's rule decides 1), ``costs`` (``row``: the
row's own; ``model``: the model's class costs; ``request``: the custom attributes' override) and
``rule`` (``bayes``, ``empirical`` or ``constrained``); the default is all seven in that order. An
unknown or repeated field is a 406. Numbers are printed with up to 15 significant digits, the same
digits for a row whether it comes alone or in a batch of any size.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd  # imported at worker boot, not by the first big request

from ..inference import OUTPUT_FIELDS, TEXT_FIELDS, Layout

F32_MAX = float(np.finfo(np.float32).max)
NAN = float("nan")

CSV_TYPES = {"text/csv": "csv"}
JSON_TYPES = {"application/json": "json"}
JSONLINES_TYPES = {"application/jsonlines": "jsonlines", "application/jsonl": "jsonlines",
                   "application/x-jsonlines": "jsonlines"}
INPUT_TYPES = {**CSV_TYPES, **JSON_TYPES, **JSONLINES_TYPES}
OUTPUT_TYPES = {**JSON_TYPES, **JSONLINES_TYPES, **CSV_TYPES}
OUTPUT_MIMETYPES = {"json": "application/json", "jsonlines": "application/jsonlines",
                    "csv": "text/csv"}
OUTPUT_WILDCARDS = {"*/*": "json", "application/*": "json", "text/*": "csv"}
CHARSETS = {"utf-8", "utf8", "us-ascii", "ascii"}

SMALL_BODY = 16 * 1024  # bodies up to this size are parsed line by line in Python (no pandas)
SMALL_ROWS = 64  # responses up to this many rows are formatted value by value
UTF8_BOM = b"\xef\xbb\xbf"


class RequestError(Exception):
    """A request the server will not answer; ``status`` is the HTTP status, ``details`` extra JSON."""

    def __init__(self, status: int, message: str, **details):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def _bad(message: str, **details) -> RequestError:
    return RequestError(400, message, **details)


# --------------------------------------------------------------------------------------------------
# Media types


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    if '"' not in text:
        return text.split(sep)
    parts, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``"text/csv; charset=UTF-8"`` -> ``("text/csv", {"charset": "UTF-8"})`` (type lower-cased)."""
    pieces = _split_outside_quotes(value, ";")
    essence = pieces[0].strip().lower()
    params = {}
    for piece in pieces[1:]:
        key, sep, val = piece.partition("=")
        key = key.strip().lower()
        if key:
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            params[key] = val
    return essence, params


@functools.lru_cache(maxsize=256)  # a client sends the same header with every request
def input_kind(content_type: str | None) -> str:
    """The parser for a ``Content-Type``: ``csv``, ``json`` or ``jsonlines``; otherwise a 415."""
    if not content_type or not content_type.strip():
        raise RequestError(415, "Content-Type is missing; send text/csv, application/json or "
                                "application/jsonlines")
    essence, params = parse_media_type(content_type)
    kind = INPUT_TYPES.get(essence)
    if kind is None:
        raise RequestError(415, f"Content-Type {essence!r} is not supported; send text/csv, "
                                "application/json or application/jsonlines",
                           supported=sorted(INPUT_TYPES))
    charset = params.get("charset", "utf-8").lower()
    if charset not in CHARSETS:
        raise RequestError(415, f"Content-Type charset {charset!r} is not supported; send UTF-8")
    if kind == "csv":
        label_size = params.get("label_size", "0")
        if label_size != "0":
            raise RequestError(415, f"text/csv;label_size={label_size}: inference takes features "
                                    "only; drop the label column and send label_size=0")
        header = params.get("header", "absent").lower()
        if header != "absent":
            raise RequestError(415, f"text/csv;header={header}: send CSV without a header line "
                                    "(columns in training's feature order)")
    return kind


@dataclass(frozen=True)
class OutputSpec:
    kind: str  # json | jsonlines | csv
    fields: tuple[str, ...] = OUTPUT_FIELDS

    @property
    def mimetype(self) -> str:
        return OUTPUT_MIMETYPES[self.kind]


def _accept_ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    """Media ranges of an Accept header, tolerating unquoted commas inside ``fields=a,b``."""
    pieces = _split_outside_quotes(accept, ",")
    merged: list[str] = []
    for piece in pieces:
        if (merged and "/" not in piece
                and re.search(r";\s*fields\s*=", merged[-1], re.IGNORECASE)):
            merged[-1] += "," + piece.strip()  # "text/csv;fields=score,decision;q=0.5"
        elif piece.strip():
            merged.append(piece)
    return [parse_media_type(piece) for piece in merged]


@functools.lru_cache(maxsize=256)
def output_spec(accept: str | None) -> OutputSpec:
    """The response format an ``Accept`` header asks for; a 406 when none can be given."""
    if not accept or not accept.strip():
        return OutputSpec("json")
    candidates = []
    for order, (essence, params) in enumerate(_accept_ranges(accept)):
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            candidates.append((-q, order, essence, params))
    for _, _, essence, params in sorted(candidates):
        kind = OUTPUT_TYPES.get(essence) or OUTPUT_WILDCARDS.get(essence)
        if kind:
            return OutputSpec(kind, _fields(params.get("fields")))
    raise RequestError(406, f"Accept {accept.strip()!r}: this server answers application/json, "
                            "application/jsonlines or text/csv",
                       supported=sorted(set(OUTPUT_MIMETYPES.values())))


def _fields(value: str | None) -> tuple[str, ...]:
    if value is None:
        return OUTPUT_FIELDS
    names = [name.strip() for name in re.split(r"[,+ ]", value) if name.strip()]
    if not names:
        raise RequestError(406, f"Accept: fields is empty; choose from {', '.join(OUTPUT_FIELDS)}")
    for name in names:
        if name not in OUTPUT_FIELDS:
            raise RequestError(406, f"Accept: unknown field {name!r}; choose from "
                                    f"{', '.join(OUTPUT_FIELDS)}", fields=list(OUTPUT_FIELDS))
    if len(set(names)) != len(names):
        raise RequestError(406, f"Accept: fields={value} names a field twice")
    return tuple(names)


# --------------------------------------------------------------------------------------------------
# Decoding


def decode(body: bytes, kind: str, layout: Layout) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse a request body into a float64 ``(rows, len(layout.names))`` array (NaN = missing),
    and which rows carry their own costs (``None``: none does)."""
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
    if kind == "csv":
        rows = _parse_csv(body, layout)
    elif kind == "json":
        rows = _parse_json(body, layout)
    else:
        rows = _parse_jsonlines(body, layout)
    return _with_costs(rows, layout)


def row_label(kind: str):
    """How errors name row ``i`` (0-based) of a body of this kind."""
    if kind == "json":
        return lambda i: f"instances[{i}]"
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
    if features is None:  # pandas disagreed with the rules: the exact parser decides and explains
        return _parse_csv_lines(body.rstrip(b"\r\n").decode("utf-8").split("\n"), layout)
    _check_range(features, layout.names, lambda i: f"line {i + 1}")
    return features


def _parse_csv_bulk(body: bytes, widths: tuple[int, ...]) -> np.ndarray | None:
    """pandas' C parser for big bodies; ``None`` when anything looks off (then the exact parser runs)."""
    if b"\r" in body and body.count(b"\r") != body.count(b"\r\n"):
        return None  # pandas would also end lines at a lone CR; the rules say only LF / CRLF
    try:
        frame = pd.read_csv(io.BytesIO(body), header=None, dtype=np.float64, engine="c",
                            keep_default_na=False, na_values=["", "nan", "NaN", "NAN"],
                            skip_blank_lines=False, quoting=3)
    except (ValueError, pd.errors.ParserError, OverflowError):
        return None
    n = frame.shape[1]
    if n not in widths:
        return None
    # No line has more than n-1 commas (pandas would have raised), so n-1 per line on average means
    # exactly n-1 on every line: no line is short (pandas pads those with NaN).
    commas = int(np.count_nonzero(np.frombuffer(body, np.uint8) == 44))
    if commas != frame.shape[0] * (n - 1):
        return None
    features = frame.to_numpy(dtype=np.float64)
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


# --------------------------------------------------------------------------------------------------
# Encoding

_POW_OFFSET = 40
_POW = np.array([float(f"1e{k}") for k in range(-_POW_OFFSET, _POW_OFFSET + 1)])
_POW_LIST = _POW.tolist()
_P10F = np.array([float(10 ** k) for k in range(2 * _POW_OFFSET)])
_SIG = 15


def format_float(x: float) -> str:
    """Up to 15 significant digits; fixed notation for 1e-4 <= |x| < 1e15. The scalar twin of
    :func:`_format_float_column`: both give the same characters for the same value."""
    a = abs(x)
    if a == 0:
        return "0"
    if not math.isfinite(a):  # no such output is valid JSON, and none should exist: fail loudly
        raise ValueError(f"a non-finite number ({x!r}) in a response")
    e = min(max(math.floor(math.log10(a)), 1 - _POW_OFFSET), _POW_OFFSET - 1)
    e += a >= _POW_LIST[e + 1 + _POW_OFFSET]
    e -= a < _POW_LIST[e + _POW_OFFSET]
    if -4 <= e <= _SIG - 1:
        s = _SIG - 1 - e
        digits = round(a * _POW_LIST[s + _POW_OFFSET])
        if digits >= 10 ** _SIG:
            digits, s, e = 10 ** (_SIG - 1), s - 1, e + 1
        if e <= _SIG - 1:
            while s > 0 and digits % 10 == 0:
                digits //= 10
                s -= 1
            text = str(digits)
            if s:
                text = text.rjust(s + 1, "0")
                text = f"{text[:-s]}.{text[-s:]}"
            return "-" + text if x < 0 else text
    return "%.15g" % x


def _format_float_column(values: np.ndarray) -> np.ndarray:
    """``(n, width)`` uint8 matrix, each row the ASCII of :func:`format_float`, right-aligned and
    left-padded with NUL bytes (which the assembler drops). Vectorised: no Python per value.

    Digit strings are integers below 1e15 held exactly in float64, so ``floor(d / 10)`` and
    ``d - 10 * floor(d / 10)`` are exact.
    """
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    a = np.abs(v)
    positive = np.isfinite(a) & (a > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.floor(np.log10(np.where(positive, a, 1.0))).astype(np.int64)
    e = np.clip(e, 1 - _POW_OFFSET, _POW_OFFSET - 1)
    e += a >= _POW[e + 1 + _POW_OFFSET]
    e -= (a < _POW[e + _POW_OFFSET]) & positive
    fixed = (a == 0) | (positive & (e >= -4) & (e <= _SIG - 1))
    s = np.where(fixed & positive, _SIG - 1 - e, 0)
    digits = np.rint(np.where(fixed, a, 0.0) * _POW[s + _POW_OFFSET])
    carry = digits >= 10.0 ** _SIG
    if carry.any():
        digits[carry] = 10.0 ** (_SIG - 1)
        s = s - carry
        e = e + carry
        fixed &= ~(carry & (e > _SIG - 1))
        digits[~fixed] = 0.0
    while True:  # drop trailing zeros of the fraction
        tens = np.floor(digits / 10.0)
        strip = (s > 0) & (digits == tens * 10.0)
        if not strip.any():
            break
        digits = np.where(strip, tens, digits)
        s = s - strip
    ndigits = np.maximum(np.searchsorted(_P10F, digits, side="right"), 1)
    total = np.maximum(ndigits, s + 1)  # digits shown, with leading zeros such as "0.0012"
    dot_at = np.where(s > 0, s, -1)  # position of "." counted from the right, -1 for none
    negative = v < 0
    end = total + (s > 0)  # characters before the sign
    width = int((end + negative).max()) if n else 1
    shortest = int(end.min()) if n else 0
    sign_at = np.where(negative, end, -1) if negative.any() else None
    matrix = np.empty((n, width), np.uint8)
    for pos in range(width):  # right to left: peel one digit per position, except at the dot
        tens = np.floor(digits / 10.0)
        is_dot = dot_at == pos
        char = np.where(is_dot, 46.0, 48.0 + digits - 10.0 * tens)
        if pos >= shortest:  # past some values' first character: padding, or their sign
            fill = 0.0 if sign_at is None else np.where(sign_at == pos, 45.0, 0.0)
            char = np.where(pos < end, char, fill)
        matrix[:, width - 1 - pos] = char
        digits = np.where(is_dot, digits, tens)
    other = np.flatnonzero(~fixed)
    if len(other):  # exponent notation or non-finite: few values, formatted one by one
        texts = [format_float(x).encode("ascii") for x in v[other].tolist()]
        wide = max(width, max(map(len, texts)))
        if wide > width:
            matrix = np.pad(matrix, ((0, 0), (wide - width, 0)))
        matrix[other] = 0
        for row, text in zip(other.tolist(), texts):
            matrix[row, wide - len(text):] = np.frombuffer(text, np.uint8)
    return matrix


def _constant(text: str, n: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text.encode("ascii"), np.uint8), (n, len(text)))


@functools.lru_cache(maxsize=256)
def _layout(kind: str, fields: tuple[str, ...]) -> tuple[list[str], str, str, str]:
    """Per field the text before its value, the text after the last one, the row separator, and
    a %-template of a whole row."""
    if kind == "csv":
        prefixes = [""] + [","] * (len(fields) - 1)
        suffix, separator = "", "\n"
    else:
        prefixes = [("{" if i == 0 else ",") + json.dumps(f) + ":" for i, f in enumerate(fields)]
        suffix, separator = "}", ("\n" if kind == "jsonlines" else ",")
    template = "".join(p.replace("%", "%%") + "%s" for p in prefixes) + suffix
    return prefixes, suffix, separator, template


def policy_json(policy_info: dict) -> bytes:
    """The ``"policy"`` member of a JSON response, serialised once per policy."""
    return json.dumps(policy_info, separators=(",", ":"), allow_nan=False).encode("ascii")


def encode(result: dict, spec: OutputSpec, policy: bytes) -> bytes:
    """Predictions (``inference.predict``'s dict of arrays) -> response body; ``policy`` is
    :func:`policy_json` of the policy used (only JSON responses carry it)."""
    n = len(result["score"])
    fields = spec.fields
    quoted = spec.kind != "csv"
    prefixes, suffix, separator, template = _layout(spec.kind, fields)
    if n <= SMALL_ROWS:
        columns = [_format_small(result[f], f, quoted) for f in fields]
        body = separator.join(template % row for row in zip(*columns)).encode("ascii")
    else:
        blocks = []
        for prefix, field in zip(prefixes, fields):
            if prefix:
                blocks.append(_constant(prefix, n))
            blocks.append(_format_large(result[field], field, quoted))
        blocks.append(_constant(suffix + separator, n))
        flat = np.concatenate(blocks, axis=1).ravel()
        body = flat[flat != 0].tobytes()[:-len(separator)]
    if spec.kind == "json":
        return b'{"predictions":[' + body + b'],"policy":' + policy + b"}"
    return body


@functools.lru_cache(maxsize=64)  # a handful of words ("model", "row", "bayes", ...)
def _text(value: str, quoted: bool) -> str:
    return json.dumps(value) if quoted else value


def _format_small(values: np.ndarray, field: str, quoted: bool) -> list[str]:
    if field == "decision":
        return [str(int(d)) for d in values.tolist()]
    if field in TEXT_FIELDS:
        return [_text(v, quoted) for v in values.tolist()]
    if field == "threshold" and len(values) and (values == values[0]).all():
        return [format_float(float(values[0]))] * len(values)
    return [format_float(x) for x in values.tolist()]


def _format_large(values: np.ndarray, field: str, quoted: bool) -> np.ndarray:
    n = len(values)
    if field == "decision":
        return (48 + np.asarray(values, dtype=np.uint8)).reshape(n, 1)
    if field in TEXT_FIELDS:  # a few distinct words: each row picks its word's bytes
        words, which = np.unique(np.asarray(values, dtype=str), return_inverse=True)
        texts = [_text(w, quoted).encode("ascii") for w in words]
        width = max(map(len, texts))
        table = np.zeros((len(texts), width), np.uint8)
        for k, text in enumerate(texts):
            table[k, width - len(text):] = np.frombuffer(text, np.uint8)
        return table[which.ravel()]
    if field == "threshold" and (values == values[0]).all():
        return _constant(format_float(float(values[0])), n)
    return _format_float_column(values)
