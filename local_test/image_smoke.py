"""Build-time smoke test of the image's virtual environment, run after it was slimmed (tests and
headers deleted, shared libraries stripped): every compiled dependency is loaded and exercised once.
Also usable on a running image:  docker run --rm IMAGE python /dev/stdin < local_test/image_smoke.py
"""

import ctypes
import importlib
import io
import os
import re
import shutil
import sys
import sysconfig

MODULES = [
    "numpy", "pandas", "pyarrow", "pyarrow.compute", "pyarrow.csv", "pyarrow.dataset", "pyarrow.parquet",
    "scipy.sparse", "scipy.special", "scipy.optimize", "scipy.stats", "sklearn.metrics",
    "sklearn.model_selection", "sklearn.linear_model", "xgboost", "matplotlib", "PIL.Image", "fontTools.ttLib",
    "kiwisolver", "contourpy", "cryptography.hazmat.primitives.hashes", "nacl.secret", "bcrypt", "gevent",
    "greenlet", "psutil", "google.protobuf", "zope.interface", "flask", "gunicorn", "boto3",
    "sagemaker_training.environment", "sagemaker_training.entry_point", "costaware",
]


def main() -> int:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a dependency dropped from pyproject: not our concern here
            if exc.name != name.split(".")[0]:
                raise
            print(f"(not installed: {name})")

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] + rng.normal(scale=0.5, size=200) > 0).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(x, label=y), 5)
    auc = roc_auc_score(y, booster.predict(xgb.DMatrix(x)))
    assert auc > 0.8, auc
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(x, columns=list("abcd"))), buffer)
    assert pq.read_table(io.BytesIO(buffer.getvalue())).num_rows == 200
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.figure import Figure
        figure = Figure()
        figure.add_subplot().plot([0, 1], [1, 0], label="line")
        figure.legend()
        png = io.BytesIO()
        figure.savefig(png, format="png")
        assert png.getvalue().startswith(b"\x89PNG")
    except ModuleNotFoundError:
        pass
    # every shared library still loads (dlopen resolves all its symbols): catches a library that
    # the slimming damaged even when no import above reaches it
    site = sysconfig.get_paths()["purelib"]
    libraries = [os.path.join(root, name) for root, _, names in os.walk(site)
                 for name in names if re.search(r"\.so(\.[0-9.]+)?$", name)]
    broken = []
    for path in libraries:
        try:
            ctypes.CDLL(path)
        except OSError as exc:
            broken.append(str(exc))
    # `train` must be costaware's entry point (it replaces the toolkit's script of the same name)
    train = shutil.which("train")
    if not train or "costaware.sagemaker.entry" not in open(train, encoding="utf-8").read():
        print(f"`train` on PATH ({train}) is not costaware.sagemaker.entry", file=sys.stderr)
        return 1
    if broken:
        print("shared libraries that do not load:\n  " + "\n  ".join(broken), file=sys.stderr)
        return 1
    print(f"image smoke test passed: {len(MODULES)} modules, {len(libraries)} shared libraries "
          f"(xgboost {xgb.__version__}, python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter finalization: libraries loaded by ctypes may crash in it
