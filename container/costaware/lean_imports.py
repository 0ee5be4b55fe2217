"""XGBoost without scikit-learn's import time, in costaware's own processes.

XGBoost imports scikit-learn, and with it ``scipy.stats``, whenever scikit-learn is installed, only
to define its scikit-learn estimator classes, which costaware never uses. That import is 2.3 of the
4.0 s a ``train`` process spends importing before it reads a row (``python -X importtime``), and
the same for every ``costaware`` command that touches a model. The entry points call
:func:`xgboost_without_sklearn` first; the serving workers go further and keep scikit-learn out for
good (:func:`without_sklearn`).
"""

from __future__ import annotations

import sys


def xgboost_without_sklearn() -> None:
    """Import XGBoost with scikit-learn hidden, then make scikit-learn importable again: what
    needs it later (the Clarify reference's FT metric) imports it then, and pays for it then.
    A no-op when either is already imported."""
    if "xgboost" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # `import sklearn` raises ImportError: XGBoost goes without
    try:
        import xgboost  # noqa: F401
    finally:
        if "sklearn" in sys.modules and sys.modules["sklearn"] is None:
            del sys.modules["sklearn"]


def without_sklearn() -> None:
    """Keep scikit-learn out of this process (a worker, or the model-check child), before XGBoost
    is imported. XGBoost imports scikit-learn, and with it scipy.stats, whenever it is installed,
    only for its scikit-learn wrapper, which serving never uses: that was 1.4 of a worker's 2.2 s
    boot here, and so of the time a killed worker's replacement takes to answer."""
    sys.modules.setdefault("sklearn", None)  # `import sklearn` then raises ImportError
