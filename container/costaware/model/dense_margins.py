"""A booster's margins on a dense array: XGBoost's own in-place prediction, with the proxy matrix
kept from call to call.

``Booster.inplace_predict`` calls XGBoost's C function ``XGBoosterPredictFromDense`` with no proxy
matrix, so XGBoost makes a new one for every call; for one request row that is most of the call.
Here each thread keeps one proxy (the C function sets the array into it before predicting; a proxy
is not shared between threads, whose predictions run at once) and the call's arguments are what
``inplace_predict`` passes: the same function on the same data, so the same float32 margins
(``tests/test_dense_margins.py`` compares them bit for bit). One row of a 100-tree, depth-4
model: ``python benchmarks/bench_serving.py`` prints both calls' rates.

Anything but a C-contiguous 2-D float32 or float64 numpy array goes to ``inplace_predict``.
"""

from __future__ import annotations

import ctypes
import json
import threading

import numpy as np
import xgboost as xgb
from xgboost.core import _LIB, _check_call, c_bst_ulong

# inplace_predict's arguments for margins of every tree (xgboost/core.py, make_jcargs), NaN missing
_MARGIN_CONFIG = json.dumps({"type": 1, "training": False, "iteration_begin": 0,
                             "iteration_end": 0, "missing": float("nan"),
                             "strict_shape": False, "cache_id": 0}).encode()
_TYPESTR = {np.dtype(np.float32): b"<f4", np.dtype(np.float64): b"<f8"}
# the array's interface (numpy's __array_interface__ in XGBoost's JSON), formatted, not dumped: a
# one-row call is a few microseconds, and json.dumps was 3 of them
_INTERFACE = b'{"data":[%d,true],"shape":[%d,%d],"strides":null,"typestr":"%s","version":3}'


class _Proxy:
    """A proxy matrix of XGBoost's C API, freed with this object."""

    def __init__(self):
        self.handle = ctypes.c_void_p()
        _check_call(_LIB.XGProxyDMatrixCreate(ctypes.byref(self.handle)))

    def __del__(self):
        if self.handle and _LIB is not None:
            _LIB.XGDMatrixFree(self.handle)


_local = threading.local()


def _proxy() -> _Proxy:
    proxy = getattr(_local, "proxy", None)
    if proxy is None:
        proxy = _local.proxy = _Proxy()
    return proxy


def margins(booster: xgb.Booster, features) -> np.ndarray:
    """``booster.inplace_predict(features, predict_type="margin", missing=np.nan)``, float32
    (``(rows,)``, or ``(rows, K)`` with K >= 3 classes), in a new array."""
    typestr = _TYPESTR.get(getattr(features, "dtype", None))
    if (typestr is None or not isinstance(features, np.ndarray) or features.ndim != 2
            or not features.flags.c_contiguous or features.shape[0] == 0):
        return np.array(booster.inplace_predict(features, predict_type="margin",
                                                missing=np.nan))
    if features.shape[1] != booster.num_features():  # (inplace_predict's own check and words)
        raise ValueError(f"Feature shape mismatch, expected: {booster.num_features()}, "
                         f"got {features.shape[1]}")
    interface = _INTERFACE % (features.ctypes.data, features.shape[0], features.shape[1], typestr)
    shape, dims = ctypes.POINTER(c_bst_ulong)(), c_bst_ulong()
    values = ctypes.POINTER(ctypes.c_float)()
    _check_call(_LIB.XGBoosterPredictFromDense(booster.handle, interface, _MARGIN_CONFIG,
                                               _proxy().handle, ctypes.byref(shape),
                                               ctypes.byref(dims), ctypes.byref(values)))
    out = np.empty(tuple(shape[i] for i in range(dims.value)), dtype=np.float32)
    # (XGBoost's buffer is the thread's until its next prediction: copied out now)
    ctypes.memmove(out.ctypes.data, values, out.nbytes)
    return out
