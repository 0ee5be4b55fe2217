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

Two readers, one set of rules: :func:`_read_uniform` reads a body whose records all have the
first record's bytes outside its values (a dense body from the SDK: one numpy view for all rows),
and gives up on anything else; :func:`_read_records`, record by record, reads the rest and is the
one that explains a refusal (``tests/test_recordio_protobuf.py`` holds both to the SDK's bytes and
to protobuf's own encoder).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

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
    rows = _read_uniform(body, *args)
    if rows is not None:
        return rows
    frames = _frames(body)
    if not frames:
        raise RecordError(1, 0, "no records: the body is empty")
    return _read_records(body, frames, *args)


# -- framing ------------------------------------------------------------------------------------

def _frames(body: bytes) -> list[tuple[int, bytes | memoryview]]:
    """``(offset, payload)`` of each record (a split record's parts joined)."""
    view, end = memoryview(body), len(body)
    frames, pos, parts, start = [], 0, None, 0
    while pos < end:
        number = len(frames) + 1
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
            frames.append((pos, payload))
        elif flag == 1 and parts is None:
            parts, start = [bytes(payload)], pos
        elif flag in (2, 3) and parts is not None:
            parts += [_MAGIC_BYTES, bytes(payload)]
            if flag == 3:
                frames.append((start, b"".join(parts)))
                parts = None
        else:
            what = {0: "a whole record", 1: "the start of a split record",
                    2: "the middle of a split record", 3: "the end of a split record"}
            raise RecordError(number, pos, f"{what.get(flag, f'flags {flag}')} "
                                           + ("inside a split record" if parts is not None
                                              else "where no split record began"))
        pos += 8 + ((length + 3) & ~3)
    if parts is not None:
        raise RecordError(len(frames) + 1, start, "a split record that never ends")
    return frames


# -- the record reader ----------------------------------------------------------------------------

def _read_records(body: bytes, frames, labels: str, width: int | None, width_means: str,
                  dense_widths: tuple[int, ...] | None) -> SparseRows:
    """:func:`parse` record by record: the reference, and the reader that explains."""
    label_texts: list[str] | None = [] if labels == "required" else None
    lengths, columns, values = [], [], []
    for n, (offset, payload) in enumerate(frames):
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
    return SparseRows(label_texts, np.array(lengths, dtype=np.int64),
                      np.concatenate(columns).astype(np.int64, copy=False),
                      np.concatenate(values), len(frames))


def _only_values(tensors: dict, what: str, number: int, offset: int) -> _Tensor | None:
    other = sorted(set(tensors) - {FEATURES_KEY})
    if other:
        raise RecordError(number, offset, f"{what} tensor(s) {', '.join(map(repr, other))}: "
                                          f"costaware reads {what}s from 'values' only")
    return tensors.get(FEATURES_KEY)


def _columns(tensor: _Tensor, number: int, offset: int, width: int | None, width_means: str,
             dense_widths: tuple[int, ...] | None) -> np.ndarray:
    """The row's 0-based column of each value."""
    declared = int(np.prod(tensor.shape)) if tensor.shape else None
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
    value = float(tensor.values[0])
    return str(int(value)) if value.is_integer() else repr(value)


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
    label_texts = None
    if labels == "required":
        label_values = read(label[LABEL_KEY])
        if label_values is None:
            return None
        label_values = label_values[:, 0]
        integral = label_values == np.round(label_values)
        label_texts = [str(int(v)) if whole else repr(float(v))
                       for v, whole in zip(label_values.tolist(), integral.tolist())]
    count = len(grid)
    return SparseRows(label_texts, int(first.lengths[0]), np.tile(first.columns, count),
                      block.reshape(-1), count)
