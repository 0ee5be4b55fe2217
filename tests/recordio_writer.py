"""RecordIO-protobuf bodies for tests, written with protobuf's own encoder (the ``aialgs.data.Record``
schema declared here from SageMaker's record.proto, packed as the SDK's generated code packs it, or
unpacked, as a proto2 writer may) and MXNet's RecordIO framing. The SDK's own bytes are in
tests/data/recordio (make_fixtures.py)."""

from __future__ import annotations

import math
import struct

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

MAGIC = 0xCED7230A
_F = descriptor_pb2.FieldDescriptorProto
_TENSORS = (("Float32Tensor", _F.TYPE_FLOAT), ("Float64Tensor", _F.TYPE_DOUBLE),
            ("Int32Tensor", _F.TYPE_INT32))


def _record_class(packed: bool):
    package = "aialgs.data" if packed else "unpacked.aialgs.data"
    proto = descriptor_pb2.FileDescriptorProto(name=f"{package}.record.proto", package=package,
                                               syntax="proto2")
    for name, value_type in _TENSORS:
        message = proto.message_type.add(name=name)
        for number, field, kind in ((1, "values", value_type), (2, "keys", _F.TYPE_UINT64),
                                    (3, "shape", _F.TYPE_UINT64)):
            message.field.add(name=field, number=number, label=_F.LABEL_REPEATED, type=kind,
                              options=descriptor_pb2.FieldOptions(packed=packed))
    blob = proto.message_type.add(name="Bytes")
    blob.field.add(name="value", number=1, label=_F.LABEL_REPEATED, type=_F.TYPE_BYTES)
    blob.field.add(name="content_type", number=2, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
    value = proto.message_type.add(name="Value")
    value.oneof_decl.add(name="value")
    for number, field, type_name in ((2, "float32_tensor", "Float32Tensor"),
                                     (3, "float64_tensor", "Float64Tensor"),
                                     (7, "int32_tensor", "Int32Tensor"), (9, "bytes", "Bytes")):
        value.field.add(name=field, number=number, label=_F.LABEL_OPTIONAL, type=_F.TYPE_MESSAGE,
                        type_name=f".{package}.{type_name}", oneof_index=0)
    record = proto.message_type.add(name="Record")
    for number, field, entry in ((1, "features", "FeaturesEntry"), (2, "label", "LabelEntry")):
        nested = record.nested_type.add(name=entry,
                                        options=descriptor_pb2.MessageOptions(map_entry=True))
        nested.field.add(name="key", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
        nested.field.add(name="value", number=2, label=_F.LABEL_OPTIONAL, type=_F.TYPE_MESSAGE,
                         type_name=f".{package}.Value")
        record.field.add(name=field, number=number, label=_F.LABEL_REPEATED,
                         type=_F.TYPE_MESSAGE, type_name=f".{package}.Record.{entry}")
    for number, field in ((3, "uid"), (4, "metadata"), (5, "configuration")):
        record.field.add(name=field, number=number, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Record"))


Record = _record_class(packed=True)
UnpackedRecord = _record_class(packed=False)


def frame(payload: bytes, flag: int = 0) -> bytes:
    """One RecordIO record: magic, flags and length, payload, zeros to 4 bytes."""
    return (struct.pack("<II", MAGIC, (flag << 29) | len(payload)) + payload
            + b"\0" * (-len(payload) % 4))


def _fill(tensor_owner, kind: str, values, keys=None, shape=None):
    tensor = getattr(tensor_owner, {"f4": "float32_tensor", "f8": "float64_tensor",
                                    "i4": "int32_tensor"}[kind])
    tensor.values.extend(values)
    if keys is not None:
        tensor.keys.extend(keys)
    if shape is not None:
        tensor.shape.extend(shape)
    if not (values or keys or shape):
        tensor.SetInParent()


def record(features, label=None, kind: str = "f4", sparse: bool = False, shape=None,
           packed: bool = True, label_kind: str = "f4") -> bytes:
    """One record's payload: a row (NaN, as a sparse row's missing values, left out when
    ``sparse``), its label if given."""
    message = (Record if packed else UnpackedRecord)()
    row = [float(v) for v in features]
    if sparse:
        keys = [i for i, v in enumerate(row) if not math.isnan(v)]
        _fill(message.features["values"], kind, [_cast(row[i], kind) for i in keys], keys,
              [len(row)] if shape is None else shape)
    else:
        _fill(message.features["values"], kind, [_cast(v, kind) for v in row], None, shape)
    if label is not None:
        _fill(message.label["values"], label_kind, [_cast(float(label), label_kind)])
    return message.SerializeToString()


def _cast(value: float, kind: str):
    return int(value) if kind == "i4" else value


def body(rows: np.ndarray, labels=None, **options) -> bytes:
    """Every row a record, framed."""
    labels = [None] * len(rows) if labels is None else labels
    return b"".join(frame(record(row, label, **options)) for row, label in zip(rows, labels))
