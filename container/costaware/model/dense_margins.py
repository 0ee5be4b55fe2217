"""A booster's margins on a dense array: XGBoost's own in-place prediction, with the proxy matrix
kept from call to call.

``Booster.inplace_predict`` calls XGBoost's C function ``XGBoosterPredictFromDense`` with no proxy
matrix, so XGBoost makes a new one for every call; for one request row that is most of the call.
Here each thread keeps one proxy (the C function sets the array into it before predicting; a proxy
is not shared between threads, whose predictions run at once) and the call's arguments are what
``inplace_predict`` passes: the same function on the same data, so the same float32 margins
(``tests/test_dense_margins.py`` compares them bit for bit). One row of a 100-tree, depth-4
model: ``python benchmarks/bench_serving.py`` prints both calls' rates.

Where a one-row call's time goes (a 100-tree, depth-4 booster, 30 features:
``python benchmarks/bench_margin_call.py MODEL_DIR``, and ``perf``; docs/serving.md, "Where the
rest goes"): XGBoost's C function about 17 us, of which about 14.5 us are the same with a one-tree
booster (a fixed cost: setting the array into the proxy re-reads the device ``"cpu"`` with
``std::regex`` at every call, about three quarters of the call, which no argument avoids);
costaware's side of the call asked XGBoost again, at every call, what a loaded booster never
changes. :class:`DenseMargins` asks that once per booster, keeps each thread's out-parameters
with its proxy, and takes the data's address and the margins out with the cheapest calls numpy
and ctypes have (``ctypes.data`` and ``np.empty`` + ``memmove`` were 0.8 and 1.3 us): about 2 us
now (``Model.margin`` 19.3 us against the C function's 17.2 in one run of the command above).
A booster is never changed in place once loaded (a new model is a new booster, which
``Model.margin`` sees), so what is asked once stays true.

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
_FLOAT_BYTES = ctypes.sizeof(ctypes.c_float)
_predict_from_dense = _LIB.XGBoosterPredictFromDense


class _ThreadCall:
    """A thread's proxy matrix of XGBoost's C API (freed with this object) and the
    out-parameters of its predictions, made once: a proxy is not shared between threads."""

    def __init__(self):
        self.proxy = ctypes.c_void_p()
        _check_call(_LIB.XGProxyDMatrixCreate(ctypes.byref(self.proxy)))
        self.shape = ctypes.POINTER(c_bst_ulong)()
        self.dims = c_bst_ulong()
        self.values = ctypes.POINTER(ctypes.c_float)()
        self.out = (ctypes.byref(self.shape), ctypes.byref(self.dims), ctypes.byref(self.values))

    def __del__(self):
        if self.proxy and _LIB is not None:
            _LIB.XGDMatrixFree(self.proxy)


_local = threading.local()


def _address(features: np.ndarray) -> int:
    """The address of ``features``' first byte: through the buffer protocol (0.2 us) where the
    array is writable, else numpy's ``ctypes.data`` (0.8 us)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(features))
    except TypeError:  # a read-only array (np.frombuffer of bytes, say)
        return features.ctypes.data


class DenseMargins:
    """:func:`margins` of one booster whose trees no longer change (a loaded model's): its handle
    and number of features asked of XGBoost once, not at every call. Shared by threads."""

    __slots__ = ("booster", "handle", "num_features")

    def __init__(self, booster: xgb.Booster):
        self.booster = booster
        self.handle = booster.handle
        self.num_features = booster.num_features()

    def __call__(self, features) -> np.ndarray:
        """``booster.inplace_predict(features, predict_type="margin", missing=np.nan)``, float32
        (``(rows,)``, or ``(rows, K)`` with K >= 3 classes), in a new array."""
        typestr = _TYPESTR.get(getattr(features, "dtype", None))
        if (typestr is None or not isinstance(features, np.ndarray) or features.ndim != 2
                or not features.flags.c_contiguous or features.shape[0] == 0):
            return np.array(self.booster.inplace_predict(features, predict_type="margin",
                                                         missing=np.nan))
        rows, columns = features.shape
        if columns != self.num_features:  # (inplace_predict's own check and words)
            raise ValueError(f"Feature shape mismatch, expected: {self.num_features}, "
                             f"got {columns}")
        call = getattr(_local, "call", None)
        if call is None:  # (this thread's first prediction)
            call = _local.call = _ThreadCall()
        interface = _INTERFACE % (_address(features), rows, columns, typestr)
        _check_call(_predict_from_dense(self.handle, interface, _MARGIN_CONFIG, call.proxy,
                                        *call.out))
        shape = call.shape
        if call.dims.value == 1:
            count, grid = shape[0], None
        else:
            grid = tuple(shape[i] for i in range(call.dims.value))
            count = int(np.prod(grid))
        # (XGBoost's buffer is the thread's until its next prediction: copied out now)
        out = np.frombuffer(bytearray(ctypes.string_at(call.values, count * _FLOAT_BYTES)),
                            dtype=np.float32)
        return out if grid is None else out.reshape(grid)


def margins(booster: xgb.Booster, features) -> np.ndarray:
    """``booster.inplace_predict(features, predict_type="margin", missing=np.nan)``, float32
    (``(rows,)``, or ``(rows, K)`` with K >= 3 classes), in a new array. A booster predicted
    again and again (a loaded model): keep its :class:`DenseMargins`."""
    return DenseMargins(booster)(features)
