"""RecordIO-wrapped protobuf -> rows; the one reader of ``application/x-recordio-protobuf`` for
training channels and requests, as SageMaker's built-in algorithms (XGBoost among them) read it.

The format (SageMaker's "common data formats"; what the SageMaker Python SDK's
``write_numpy_to_dense_tensor``, ``write_spmatrix_to_sparse_tensor`` and ``RecordSerializer``
write): a body is RecordIO records, each ``magic (0xced7230a) | flags:3 length:29 | payload |
padding to 4 bytes`` (little-endian words; MXNet's framing: a payload cut in parts, flags 1, 2, 3,
is joined with the magic word between its parts, as MXNet's reader joins it), and each payload is
one ``aialgs.data.Record`` protobuf message::

    message Record { map<string, Value> features = 1; map<string, Value> label = 2; ... }
    message Value { oneof value { Float32Tensor float32_tensor = 2; Float64Tensor float64_tensor = 3;
                                  Int32Tensor int32_tensor = 7; Bytes bytes = 9; } }
    message Float32Tensor { repeated float values = 1; repeated uint64 keys = 2;
                            repeated uint64 shape = 3; }   (Float64Tensor, Int32Tensor: the same)

A record is one row: its ``features["values"]`` tensor, dense (no keys: value ``i`` is column
``i``) or sparse (``keys``: 0-based columns; a column without a key is a missing value, NaN, as
XGBoost reads a sparse row); ``label["values"]``, one number, is the row's label. Column ``i`` is
what CSV cell ``i`` is (in a request, the ``i``-th request column).

Refused, each naming the record (1-based) and its byte offset: framing that is not RecordIO (a
wrong magic word, a length past the end, an unfinished split record), a payload that is not a
protobuf message of this schema (a truncated field, a wire type the field cannot have), a record
without a ``values`` feature tensor or with other feature tensors (read by no one, so refused, not
ignored), a ``bytes`` value, a key given twice, a key or a shape beyond ``width``, keys and values
of different lengths, a dense tensor whose shape does not hold its values, an infinite value or
one beyond float32's range (XGBoost reads float32); for training, a record without exactly one
label value. NaN is a missing value, as in every format.

Three readers, one set of rules. :func:`_read_uniform` reads a body whose records all have the
first record's bytes outside its values (the SDK's dense rows: one numpy view for all rows);
:func:`_read_canonical` a body of records in the SDK's layout (its sparse rows too: each field read
for all records at once); both give up on anything else, and on anything the rules refuse.
:func:`_read_records`, record by record, reads the rest and is the one that explains a refusal.
``tests/test_recordio_protobuf.py`` holds all three to the SDK's bytes and to protobuf's own
encoder, and holds ``parse`` to the record reader's answer on broken bodies. A 6 MiB body of the
demo's rows (``benchmarks/bench_decoding.py``): dense 0.12x the time CSV's decode takes, sparse
with a fifth of the values left out 2.47x, where record by record took 34x.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .libsvm_rows import F32_MAX, SparseRows

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_BITS = 29
# a channel's ContentType and a request's Content-Type, as the built-in algorithms take them
CHANNEL_TYPES = ("application/x-recordio-protobuf",)
FEATURES_KEY = LABEL_KEY = "values"
# Value's tensor fields: number -> (name, dtype of its values, wire type of one unpacked value)
_TENSORS = {2: ("float32_tensor", np.dtype("<f4"), 5), 3: ("float64_tensor", np.dtype("<f8"), 1),
            7: ("int32_tensor", None, 0)}
_BYTES_FIELD = 9
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


class RecordError(ValueError):
    """A record that is not RecordIO-protobuf; ``record`` is 1-based, ``offset`` its byte."""

    def __init__(self, record: int, offset: int, message: str):
        super().__init__(f"record {record} (byte {offset}): {message}")
        self.record, self.offset, self.reason = record, offset, message

    def moved(self, records_before: int, bytes_before: int) -> "RecordError":
        """The same error, for a body that was the part of a file after ``records_before``
        records and ``bytes_before`` bytes."""
        return RecordError(self.record + records_before, self.offset + bytes_before, self.reason)


@dataclass(frozen=True)
class _Tensor:
    values: np.ndarray  # float64
    keys: np.ndarray | None  # int64 (None: dense)
    shape: tuple[int, ...]
    # where the values lie in the record's payload, when packed as one run of fixed-width numbers
    # (for the uniform reader): (offset, bytes, dtype)
    packed_at: tuple[int, int, np.dtype] | None


def parse(body: bytes, labels: str, width: int | None = None, width_means: str = "",
          dense_widths: tuple[int, ...] | None = None) -> SparseRows:
    """Parse RecordIO-protobuf ``body`` into rows. ``labels``: ``"required"`` (training: each
    record's ``label["values"]`` is its label, kept as text, as libsvm's labels are) or
    ``"optional"`` (requests: a label is read and not used, so that a labelled file can be sent as
    it is). ``width``: the columns a row may have (``None``: any); ``width_means``: what those
    columns are, for the message of a key or shape beyond them. ``dense_widths``: the lengths a
    dense row may have (``None``: any; a shorter row's last columns are missing, as a libsvm
    line's left-out indices are)."""
    args = labels, width, width_means, dense_widths
    # (a signalling NaN, as a float32 bit pattern may be, is a missing value like any NaN: its
    # cast to float64 sets the invalid flag, which numpy would print as a warning per body)
    with np.errstate(invalid="ignore"):
        rows = _read_uniform(body, *args)
        if rows is None:
            rows = _read_canonical(body, *args)
        if rows is not None:
            return rows
        return _read_records(body, _frames(body), *args)


# -- framing ------------------------------------------------------------------------------------

def _frames(body: bytes) -> Iterator[tuple[int, bytes | memoryview]]:
    """``(offset, payload)`` of each record (a split record's parts joined), one at a time: a
    framing fault is raised when reading reaches it, after the records before it were read."""
    view, end = memoryview(body), len(body)
    count, pos, parts, start = 0, 0, None, 0
    while pos < end:
        number = count + 1
        if end - pos < 8:
            raise RecordError(number, pos, f"{end - pos} byte(s) left, too few for a RecordIO "
                                           "header (8 bytes)")
        magic, word = struct.unpack_from("<II", body, pos)
        if magic != MAGIC:
            raise RecordError(number, pos, f"not a RecordIO record: its first word is "
                                           f"0x{magic:08x}, not 0x{MAGIC:08x} (is the body "
                                           "application/x-recordio-protobuf?)")
        flag, length = word >> _LENGTH_BITS, word & ((1 << _LENGTH_BITS) - 1)
        if pos + 8 + length > end:
            raise RecordError(number, pos, f"its header gives {length} bytes, but the body ends "
                                           f"after {end - pos - 8}")
        payload = view[pos + 8:pos + 8 + length]
        if flag == 0 and parts is None:
            count += 1
            yield pos, payload
        elif flag == 1 and parts is None:
            parts, start = [bytes(payload)], pos
        elif flag in (2, 3) and parts is not None:
            parts += [_MAGIC_BYTES, bytes(payload)]
            if flag == 3:
                count += 1
                yield start, b"".join(parts)
                parts = None
        else:
            what = {0: "a whole record", 1: "the start of a split record",
                    2: "the middle of a split record", 3: "the end of a split record"}
            raise RecordError(number, pos, f"{what.get(flag, f'flags {flag}')} "
                                           + ("inside a split record" if parts is not None
                                              else "where no split record began"))
        pos += 8 + ((length + 3) & ~3)
    if parts is not None:
        raise RecordError(count + 1, start, "a split record that never ends")


def read_block(handle, count: int) -> tuple[bytes, int]:
    """The bytes of the next ``count`` records of a RecordIO stream (a split record's parts
    counted as one record), and how many it holds; at a fault or the end, what is left, which
    :func:`parse` then refuses or reads."""
    parts, records, inside = [], 0, False
    while records < count or inside:
        header = handle.read(8)
        parts.append(header)
        if len(header) < 8:
            break
        magic, word = struct.unpack("<II", header)
        if magic != MAGIC:
            break  # (parse names this record)
        length, flag = word & ((1 << _LENGTH_BITS) - 1), word >> _LENGTH_BITS
        payload = handle.read((length + 3) & ~3)
        parts.append(payload)
        if len(payload) < length:
            break
        inside = flag in (1, 2)
        records += flag in (0, 3)
    return b"".join(parts), records


# -- the record reader ----------------------------------------------------------------------------

def _read_records(body: bytes, frames, labels: str, width: int | None, width_means: str,
                  dense_widths: tuple[int, ...] | None) -> SparseRows:
    """:func:`parse` record by record: the reference, and the reader that explains."""
    label_texts: list[str] | None = [] if labels == "required" else None
    lengths, columns, values = [], [], []
    for n, (offset, payload) in enumerate(frames):  # (records read as they are framed)
        number = n + 1
        features, label = _record(payload, number, offset)
        tensor = _only_values(features, "feature", number, offset)
        if tensor is None:
            raise RecordError(number, offset, "no 'values' feature tensor: the row's features "
                                              "are features[\"values\"]")
        row_columns = _columns(tensor, number, offset, width, width_means, dense_widths)
        _check_values(tensor.values, row_columns, number, offset)
        lengths.append(len(row_columns))
        columns.append(row_columns)
        values.append(tensor.values)
        if label_texts is not None:
            label_texts.append(_label_text(_only_values(label, "label", number, offset),
                                           number, offset))
    if not lengths:
        raise RecordError(1, 0, "no records: the body is empty")
    return SparseRows(label_texts, np.array(lengths, dtype=np.int64),
                      np.concatenate(columns).astype(np.int64, copy=False),
                      np.concatenate(values), len(lengths))


def _only_values(tensors: dict, what: str, number: int, offset: int) -> _Tensor | None:
    other = sorted(set(tensors) - {FEATURES_KEY})
    if other:
        raise RecordError(number, offset, f"{what} tensor(s) {', '.join(map(repr, other))}: "
                                          f"costaware reads {what}s from 'values' only")
    return tensors.get(FEATURES_KEY)


def _columns(tensor: _Tensor, number: int, offset: int, width: int | None, width_means: str,
             dense_widths: tuple[int, ...] | None) -> np.ndarray:
    """The row's 0-based column of each value."""
    declared = math.prod(tensor.shape) if tensor.shape else None  # (Python's ints: no wrap)
    model = f" (the model takes {width}{width_means})" if width is not None else ""
    if tensor.keys is None:
        if declared is not None and declared != len(tensor.values):
            raise RecordError(number, offset, f"a dense tensor of shape {list(tensor.shape)} "
                                              f"holds {len(tensor.values)} values")
        allowed = dense_widths if dense_widths is not None else (
            range(width + 1) if width is not None else None)
        if allowed is not None and len(tensor.values) not in allowed:
            takes = " or ".join(map(str, dense_widths)) if dense_widths else f"at most {width}"
            raise RecordError(number, offset, f"a dense tensor of {len(tensor.values)} values, "
                                              f"the model takes {takes}{width_means}")
        return np.arange(len(tensor.values), dtype=np.int64)
    keys = tensor.keys
    if len(keys) != len(tensor.values):
        raise RecordError(number, offset, f"{len(keys)} keys for {len(tensor.values)} values")
    if declared is not None and width is not None and declared > width:
        raise RecordError(number, offset, f"shape {list(tensor.shape)}: {declared} columns{model}")
    if len(keys):
        for limit, what in ((declared, f"its shape {list(tensor.shape)}"), (width, None)):
            if limit is not None and int(keys.max()) >= limit:
                key = int(keys[np.argmax(keys >= limit)])
                where = what or f"the model's {width} columns{width_means}"
                raise RecordError(number, offset, f"key {key} is beyond {where} (keys are "
                                                  "0-based)")
        unique, counts = np.unique(keys, return_counts=True)
        if (counts > 1).any():
            raise RecordError(number, offset, f"key {int(unique[np.argmax(counts > 1)])} is "
                                              "given twice")
    return keys


def _check_values(values: np.ndarray, columns: np.ndarray, number: int, offset: int) -> None:
    bad = np.abs(values) > F32_MAX  # inf, and what float32 would make inf (NaN: False)
    if bad.any():
        i = int(np.argmax(bad))
        raise RecordError(number, offset, f"column {int(columns[i])}: {float(values[i])!r} is infinite "
                                          "or beyond float32's range; send a finite value, or NaN "
                                          "for a missing one")


def _label_text(tensor: _Tensor | None, number: int, offset: int) -> str:
    if tensor is None or len(tensor.values) != 1 or tensor.keys is not None and len(tensor.keys):
        got = "none" if tensor is None else f"{len(tensor.values)} value(s)"
        raise RecordError(number, offset, f"label[\"values\"] must hold one value, the row's "
                                          f"label (it holds {got})")
    return _label_texts(tensor.values)[0]


def _label_texts(values: np.ndarray) -> list[str]:
    """Labels as text, as a libsvm line writes them: a whole number without a point."""
    whole = np.isfinite(values) & (values == np.round(values))
    return [str(int(v)) if w else repr(float(v)) for v, w in zip(values.tolist(), whole.tolist())]


# -- protobuf's wire format, for this schema --------------------------------------------------

class _Malformed(Exception):
    pass


def _varint(data, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Malformed("a number runs past the end of its message")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("a number longer than 10 bytes")


def _fields(data, start: int, end: int):
    """``(field number, wire type, value, value's start)`` of each field of a message: a varint's
    value, a fixed-width field's or a length-delimited field's bytes as ``(start, stop)``."""
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == _VARINT:
            value, after = _varint(data, pos, end)
        elif wire in (_FIXED64, _FIXED32):
            after = pos + (8 if wire == _FIXED64 else 4)
            value = (pos, after)
        elif wire == _LEN:
            size, pos = _varint(data, pos, end)
            after = pos + size
            value = (pos, after)
        else:
            raise _Malformed(f"wire type {wire} (groups are not part of this schema)")
        if after > end:
            raise _Malformed(f"field {number} runs past the end of its message")
        yield number, wire, value, pos
        pos = after


def _record(payload, number: int, offset: int) -> tuple[dict, dict]:
    """A Record's ``features`` and ``label`` maps (key -> :class:`_Tensor`)."""
    data = bytes(payload)
    maps: dict[int, dict] = {1: {}, 2: {}}
    try:
        for field, wire, value, _ in _fields(data, 0, len(data)):
            if field in maps:
                _need(wire, _LEN, f"Record field {field}")
                key, tensor = _map_entry(data, *value)
                maps[field][key] = tensor
    except _Malformed as exc:
        raise RecordError(number, offset, f"not a Record protobuf message: {exc}") from None
    return maps[1], maps[2]


def _need(wire: int, wanted: int, what: str) -> None:
    if wire != wanted:
        raise _Malformed(f"{what} has wire type {wire}, not {wanted}")


def _map_entry(data: bytes, start: int, end: int) -> tuple[str, _Tensor]:
    key, tensor = "", None
    for field, wire, value, _ in _fields(data, start, end):
        if field == 1:
            _need(wire, _LEN, "a map key")
            try:
                key = data[value[0]:value[1]].decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed("a map key that is not UTF-8") from None
        elif field == 2:
            _need(wire, _LEN, "a map value")
            tensor = _value(data, *value)
    if tensor is None:
        raise _Malformed(f"the tensor {key!r} has no value (a Float32Tensor, Float64Tensor or "
                         "Int32Tensor)")
    return key, tensor


def _value(data: bytes, start: int, end: int) -> _Tensor | None:
    tensor = None
    for field, wire, value, _ in _fields(data, start, end):
        if field == _BYTES_FIELD:
            raise _Malformed("a Bytes value: costaware reads numeric tensors only")
        if field in _TENSORS:
            _need(wire, _LEN, _TENSORS[field][0])
            tensor = _tensor(data, *value, field)  # (a oneof: the last one set wins)
    return tensor


def _tensor(data: bytes, start: int, end: int, field: int) -> _Tensor:
    name, dtype, unpacked_wire = _TENSORS[field]
    values, keys, shape, runs = [], [], [], []
    for number, wire, value, _ in _fields(data, start, end):
        if number == 1:
            if wire == _LEN and dtype is not None:
                if (value[1] - value[0]) % dtype.itemsize:
                    raise _Malformed(f"{name} values of {value[1] - value[0]} bytes, not a "
                                     f"multiple of {dtype.itemsize}")
                values.append(np.frombuffer(data, dtype, (value[1] - value[0]) // dtype.itemsize,
                                            value[0]))
                runs.append(value)
            elif wire == _LEN:
                values.append(np.array([_int32(v) for v in _varints(data, *value)], np.float64))
                runs.append(value)
            else:
                _need(wire, unpacked_wire, f"a {name} value")
                values.append(np.array([_int32(value)], np.float64) if dtype is None
                              else np.frombuffer(data, dtype, 1, value[0]))
                runs.append(None)
        elif number in (2, 3):
            target = keys if number == 2 else shape
            if wire == _LEN:
                target.extend(_varints(data, *value))
            else:
                _need(wire, _VARINT, f"a {name} {'key' if number == 2 else 'shape'}")
                target.append(value)
    joined = (np.concatenate(values).astype(np.float64, copy=False) if values
              else np.empty(0, np.float64))
    packed_at = None
    if len(runs) == 1 and runs[0] is not None:  # (int32: one packed run of varints)
        packed_at = (runs[0][0], runs[0][1] - runs[0][0], dtype)
    if any(k >= 1 << 63 for k in keys):
        raise _Malformed(f"a {name} key beyond 2**63")
    # no keys: dense, unless there are no values either (a sparse row without an entry, as the
    # SDK writes an all-zero row of a sparse matrix: every column missing)
    sparse = bool(keys) or not len(joined)
    return _Tensor(joined, np.array(keys, dtype=np.int64) if sparse else None,
                   tuple(int(s) for s in shape), packed_at)


def _varints(data: bytes, start: int, end: int) -> list[int]:
    if start < end and max(data[start:end]) < 0x80:  # every number one byte (keys below 128)
        return list(data[start:end])
    out, pos = [], start
    while pos < end:
        value, pos = _varint(data, pos, end)
        out.append(value)
    return out


def _int32(value: int) -> int:
    """An int32 field's varint (a negative one is its 64-bit two's complement)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


# -- the uniform reader ---------------------------------------------------------------------------

def _read_uniform(body: bytes, labels: str, width: int | None, width_means: str,
                  dense_widths: tuple[int, ...] | None) -> SparseRows | None:
    """:func:`parse` of a body whose records are the first record's bytes but for their packed
    feature (and label) values, at the same places: one view of the body for every row. ``None``
    (the record reader reads it) for any other body, or one the first record refuses."""
    if len(body) < 16:
        return None
    magic, word = struct.unpack_from("<II", body, 0)
    length = word & ((1 << _LENGTH_BITS) - 1)
    stride = 8 + ((length + 3) & ~3)
    if magic != MAGIC or word >> _LENGTH_BITS or len(body) % stride or len(body) == stride:
        return None  # (not RecordIO, a split record, records of other lengths, or one record)
    grid = np.frombuffer(body, np.uint8).reshape(len(body) // stride, stride)
    payload = memoryview(body)[8:8 + length]
    try:
        first = _read_records(body, [(0, payload)], labels, width, width_means, dense_widths)
    except RecordError:
        return None
    features, label = _record(payload, 1, 0)
    # the label's values vary by record too, read or not
    regions = [features[FEATURES_KEY]] + ([label[LABEL_KEY]] if LABEL_KEY in label else [])
    if any(t.packed_at is None for t in regions):
        return None
    fixed = np.ones(stride, dtype=bool)  # (the headers too: the same magic and length)
    for tensor in regions:
        start, size, _ = tensor.packed_at
        fixed[8 + start:8 + start + size] = False
    if not (grid[:, fixed] == grid[0, fixed]).all():
        return None

    def read(tensor: _Tensor) -> np.ndarray | None:
        start, size, dtype = tensor.packed_at
        cells = np.ascontiguousarray(grid[:, 8 + start:8 + start + size])
        if dtype is not None:
            return cells.view(dtype).astype(np.float64)
        # int32 varints of the same total length in every record: read here when each is one
        # byte (0 to 127, class labels), else by the record reader
        return cells.astype(np.float64) if (cells < 0x80).all() else None

    block = read(features[FEATURES_KEY])
    if block is None or (np.abs(block) > F32_MAX).any():
        return None  # (the record reader names the record)
    label_values = read(label[LABEL_KEY]) if LABEL_KEY in label else None
    if LABEL_KEY in label and label_values is None:
        return None  # (read or not, a label is checked as the record reader checks it)
    label_texts = None
    if labels == "required":
        label_values = label_values[:, 0]
        label_texts = _label_texts(label_values)
    count = len(grid)
    return SparseRows(label_texts, int(first.lengths[0]), np.tile(first.columns, count),
                      block.reshape(-1), count)


# -- the canonical reader ---------------------------------------------------------------------

_VALUES_KEY = b"\x0a\x06values"  # a map entry's key field holding "values"
_TENSOR_TAGS = {0x12: np.dtype("<f4"), 0x1A: np.dtype("<f8")}  # Value's float tensors, LEN
_INT32_TENSOR_TAG = 0x3A
_MAX_RECORDS_VARINT = 5  # lengths and shapes: below 2**35


class _Columns:
    """Every record's bytes as numpy arrays, for reading one field of all records at a time."""

    def __init__(self, body: bytes, ends: np.ndarray):
        self.buf = np.frombuffer(body, np.uint8)
        self.ends = ends
        self.ok = True

    def byte(self, pos: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The byte at ``pos`` where ``valid`` (and inside its record), else 0."""
        inside = valid & (pos < self.ends)
        return np.where(inside, self.buf[np.where(inside, pos, 0)], 0)

    def expect(self, pos: np.ndarray, pattern: bytes, where: np.ndarray) -> None:
        for k, value in enumerate(pattern):
            self.ok &= bool((self.byte(pos + k, where) == value)[where].all())

    def varint(self, pos: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(value, position after)`` of the varint at ``pos`` in each record ``where``."""
        value = np.zeros(len(pos), np.int64)
        more = where.copy()
        after = pos.copy()
        for k in range(_MAX_RECORDS_VARINT):
            byte = self.byte(after, more).astype(np.int64)
            value |= np.where(more, (byte & 0x7F) << (7 * k), 0)
            after = after + more
            more &= byte >= 0x80
            if not more.any():
                return value, after
        self.ok = False
        return value, after

    def field(self, pos: np.ndarray, tag: int, where: np.ndarray, limit: np.ndarray):
        """An optional length-delimited field ``tag`` at ``pos``: ``(present, start, length,
        position after)`` in each record ``where``."""
        present = where & (pos < limit) & (self.byte(pos, where) == tag)
        length, start = self.varint(pos + 1, present)
        self.ok &= bool((start + length <= limit)[present].all())
        return present, np.where(present, start, pos), np.where(present, length, 0), \
            np.where(present, start + length, pos)

    def gather(self, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The bytes ``starts[i] : starts[i] + lengths[i]`` of every record, joined."""
        total = int(lengths.sum())
        if not total:
            return np.empty(0, np.uint8)
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return self.buf[offsets + np.arange(total)]


def _record_starts(body: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Each whole record's payload ``(starts, ends)``; ``None`` for split records or a framing
    fault (the record reader names it)."""
    starts, ends, pos, end = [], [], 0, len(body)
    unpack = struct.Struct("<II").unpack_from
    mask = (1 << _LENGTH_BITS) - 1
    while pos < end:
        if end - pos < 8:
            return None
        magic, word = unpack(body, pos)
        length = word & mask
        if magic != MAGIC or word != length or pos + 8 + length > end:
            return None
        starts.append(pos + 8)
        ends.append(pos + 8 + length)
        pos += 8 + ((length + 3) & ~3)
    if not starts:
        return None
    return np.array(starts, np.int64), np.array(ends, np.int64)


def _split_varints(data: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Packed varints, each record's ``lengths[i]`` bytes of ``data``: ``(values, how many each
    record holds)``; ``None`` when a number runs past its record or beyond 2**63."""
    if not len(data):
        return np.empty(0, np.int64), np.zeros(len(lengths), np.int64)
    ends = data < 0x80
    last = np.cumsum(lengths) - 1
    if not ends[last[lengths > 0]].all():
        return None
    if ends.all():  # every number one byte
        return data.astype(np.int64), lengths.copy()
    number = np.concatenate([[0], np.cumsum(ends)[:-1]])  # each byte's number
    first = np.flatnonzero(np.concatenate([[True], ends[:-1]]))
    place = np.arange(len(data)) - first[number]
    if place.max() >= 9:
        return None
    values = np.zeros(int(ends.sum()), np.int64)
    np.add.at(values, number, (data & 0x7F).astype(np.int64) << (7 * place))
    record = np.repeat(np.arange(len(lengths)), lengths)
    return values, np.bincount(record[ends], minlength=len(lengths)).astype(np.int64)


def _read_canonical(body: bytes, labels: str, width: int | None, width_means: str,
                    dense_widths: tuple[int, ...] | None) -> SparseRows | None:
    """:func:`parse` of a body of records in the SDK's layout (a ``values`` feature tensor of
    float32 or float64 values, with keys and shape or without, and an optional ``values`` label
    of one number), their fields read for all records at once. ``None`` (the record reader
    reads it) for any other body or a record the rules refuse."""
    framed = _record_starts(body)
    if framed is None:
        return None
    starts, ends = framed
    count = len(starts)
    every = np.ones(count, bool)
    at = _Columns(body, ends)
    # features { key: "values", value { float32_tensor | float64_tensor { values keys shape } } }
    at.expect(starts, b"\x0a", every)
    entry_length, entry = at.varint(starts + 1, every)
    entry_end = entry + entry_length
    at.expect(entry, _VALUES_KEY + b"\x12", every)
    value_length, value = at.varint(entry + 9, every)
    tags = at.byte(value, every)
    if not at.ok or not (tags == tags[0]).all() or int(tags[0]) not in _TENSOR_TAGS:
        return None
    dtype = _TENSOR_TAGS[int(tags[0])]
    tensor_length, tensor = at.varint(value + 1, every)
    tensor_end = tensor + tensor_length
    at.ok &= bool((value + value_length == entry_end).all() & (tensor_end == entry_end).all())
    _, values_at, values_bytes, pos = at.field(tensor, 0x0A, every, tensor_end)
    has_keys, keys_at, keys_bytes, pos = at.field(pos, 0x12, every, tensor_end)
    has_shape, shape_at, shape_bytes, pos = at.field(pos, 0x1A, every, tensor_end)
    at.ok &= bool((pos == tensor_end).all() and (values_bytes % dtype.itemsize == 0).all())
    # label { key: "values", value { a tensor of one number } }, or none
    has_label = at.byte(entry_end, every) == 0x12
    label_length, label = at.varint(entry_end + 1, has_label)
    record_end = np.where(has_label, label + label_length, entry_end)
    at.ok &= bool((record_end == ends).all())
    if not at.ok:
        return None
    if labels == "required" and not has_label.all():
        return None
    label_values = _canonical_labels(at, label, ends, has_label)
    if label_values is None:
        return None
    label_texts = None
    if labels == "required":
        label_texts = _label_texts(label_values)
    values = at.gather(values_at, values_bytes).view(dtype).astype(np.float64)
    lengths = values_bytes // dtype.itemsize
    keys = _split_varints(at.gather(keys_at, keys_bytes), keys_bytes)
    shapes = _split_varints(at.gather(shape_at, shape_bytes), shape_bytes)
    if keys is None or shapes is None or (shapes[1] > 1).any():
        return None  # (a shape of several dimensions: the record reader)
    key_values, key_counts = keys
    declared = np.full(count, -1, np.int64)
    declared[shapes[1] == 1] = shapes[0]
    sparse = has_keys | (lengths == 0)
    row = np.repeat(np.arange(count), lengths)
    place = np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    columns = place.copy()
    if sparse.any():
        if (key_counts != np.where(sparse, lengths, 0)).any():
            return None
        columns[sparse[row]] = key_values
    dense = ~sparse
    if ((declared >= 0) & dense & (declared != lengths)).any():
        return None
    if dense_widths is not None and not np.isin(lengths[dense], dense_widths).all():
        return None
    limit = np.where(declared >= 0, declared, np.iinfo(np.int64).max)
    if width is not None:
        if (dense & (lengths > width)).any() or (sparse & (declared > width)).any():
            return None
        limit = np.minimum(limit, width)
    if (columns >= limit[row]).any() or (np.abs(values) > F32_MAX).any():
        return None
    if sparse.any() and len(columns):  # a key given twice in a record
        pairs = np.sort(row[sparse[row]] * (int(columns.max()) + 1) + columns[sparse[row]])
        if (np.diff(pairs) == 0).any():
            return None
    return SparseRows(label_texts, lengths, columns, values, count)


def _canonical_labels(at: _Columns, label: np.ndarray, ends: np.ndarray,
                      where: np.ndarray) -> np.ndarray | None:
    """Each record's label (NaN where it has none): ``{key: "values", value {a float tensor of one
    value, or an int32 tensor of one value of one byte}}`` ending its record; ``None`` for any
    other label."""
    at.expect(label, _VALUES_KEY + b"\x12", where)
    value_length, value = at.varint(label + 9, where)
    tag = at.byte(value, where)
    tensor_length, tensor = at.varint(value + 1, where)
    present, number_at, number_bytes, after = at.field(tensor, 0x0A, where, ends)
    at.ok &= bool(((value + value_length == ends) & (tensor + tensor_length == ends)
                   & present & (after == ends))[where].all())
    if not at.ok:
        return None
    out = np.full(len(label), np.nan)
    for kind_tag, kind in _TENSOR_TAGS.items():
        chosen = where & (tag == kind_tag)
        if (number_bytes[chosen] != kind.itemsize).any():
            return None
        out[chosen] = at.gather(number_at[chosen], number_bytes[chosen]).view(kind)
    chosen = where & (tag == _INT32_TENSOR_TAG)
    raw = at.gather(number_at[chosen], number_bytes[chosen])
    if (number_bytes[chosen] != 1).any() or (raw >= 0x80).any():
        return None  # (one-byte labels only: 0 to 127)
    out[chosen] = raw
    if (where & ~np.isin(tag, [*_TENSOR_TAGS, _INT32_TENSOR_TAG])).any():
        return None
    return out
