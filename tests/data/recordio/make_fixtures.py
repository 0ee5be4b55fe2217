"""Writes this directory's RecordIO-protobuf fixtures with the SageMaker Python SDK's own writers,
the bytes a user of the SDK sends (tests/test_recordio_protobuf.py reads them).

The SDK is not a test dependency (sagemaker 2.x pins protobuf below the 7.x that this project's
environment resolves), so the files are kept, with what each holds beside it in fixtures.json.
To write them again, in a virtual environment of their own:

    python3 -m venv /tmp/sdk && /tmp/sdk/bin/pip install sagemaker==2.257.7 scipy
    SAGEMAKER_SUPPRESS_V2_WARNING=1 /tmp/sdk/bin/python tests/data/recordio/make_fixtures.py
"""

import io
import json
import math
import os

import numpy as np
import sagemaker
import scipy.sparse as sp
from sagemaker.amazon.common import (RecordSerializer, write_numpy_to_dense_tensor,
                                     write_spmatrix_to_sparse_tensor)

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261207)


def cells(matrix):
    return [[None if math.isnan(v) else float(v) for v in row] for row in matrix.tolist()]


def written(write, *args) -> bytes:
    buffer = io.BytesIO()
    write(buffer, *args)
    return buffer.getvalue()


dense32 = rng.normal(size=(6, 4)).astype(np.float32)
dense32[1, 2] = np.nan
dense64 = rng.normal(size=(5, 3))
sparse = sp.random(7, 9, density=0.3, random_state=7, format="csr")
sparse32 = sp.random(4, 5, density=0.4, random_state=8, format="csr", dtype=np.float32)
int_labels = np.array([0, 1, 1, 0, 1, 0])
cases = {
    # name: (bytes, dense rows with NaN where a sparse row has no key, labels or None)
    "dense_float32_int_labels": (written(write_numpy_to_dense_tensor, dense32, int_labels),
                                 dense32.astype(np.float64), int_labels.tolist()),
    "dense_float64_float_labels": (written(write_numpy_to_dense_tensor, dense64,
                                           np.array([0.0, 1.0, 2.0, 1.0, 0.5])),
                                   dense64, [0.0, 1.0, 2.0, 1.0, 0.5]),
    "sparse_float64_labels": (written(write_spmatrix_to_sparse_tensor, sparse,
                                      np.arange(7) % 2),
                              np.where(sparse.toarray() != 0, sparse.toarray(), np.nan),
                              (np.arange(7) % 2).tolist()),
    "sparse_float32_no_labels": (written(write_spmatrix_to_sparse_tensor, sparse32),
                                 np.where(sparse32.toarray() != 0, sparse32.toarray(),
                                          np.nan).astype(np.float64), None),
    # what predictor.predict(rows) sends with serializer=RecordSerializer()
    "record_serializer_request": (RecordSerializer().serialize(dense32).getvalue(),
                                  dense32.astype(np.float64),
                                  None),
}
described = {"sagemaker": sagemaker.__version__, "cases": {}}
for name, (data, rows, labels) in cases.items():
    with open(os.path.join(HERE, f"{name}.rio"), "wb") as handle:
        handle.write(data)
    described["cases"][name] = {"rows": cells(np.asarray(rows)), "labels": labels}
with open(os.path.join(HERE, "fixtures.json"), "w") as handle:
    json.dump(described, handle, indent=1)
    handle.write("\n")
