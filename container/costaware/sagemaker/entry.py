"""The image's ``train`` command: check SageMaker's configuration files, then run the toolkit's.

The sagemaker-training toolkit reads ``input/config/hyperparameters.json``,
``inputdataconfig.json`` and ``resourceconfig.json`` before it imports costaware. A file that is
missing or not JSON ends there: in a Python traceback as the job's failure reason, or, where
``output/`` does not exist yet (a hand-made local tree), in exit status 0 with no failure file at all,
so a job that never trained would look completed. This entry point checks the three files first and
fails the way bad data fails: a one-line reason naming the file in ``output/failure`` (which the
toolkit never overwrites), the same line on stderr, exit status 1. Otherwise it hands over to the
toolkit, which runs ``SAGEMAKER_TRAINING_MODULE`` (:func:`costaware.sagemaker.training_job.main`).

The toolkit's own status cannot be trusted: when it cannot write ``output/failure`` (a full
volume, a read-only ``output/``) its error handler fails and its ``finally`` exits 0, so a failed
job would be marked Completed with a broken model. This entry point therefore decides the exit
status itself once the toolkit is done: the job succeeded only if costaware's training says it
finished (:data:`costaware.sagemaker.training_job.outcome`), the toolkit exited 0 and wrote
``output/success``, and the saved model loads (:func:`costaware.model.artifact.load`). Otherwise it exits
non-zero, with a one-line reason on stderr (the log) and in ``output/failure`` when the toolkit left
none and one can still be written. A ``success`` or ``failure`` file of an earlier run in the same
tree (a rerun after a failure, a resumed spot job) is removed first.

costaware's ``train`` console script replaces the toolkit's one of the same name (pip installs
costaware after its dependencies); the image's smoke test checks that it did.
"""

from __future__ import annotations

import contextlib
import os
import sys

from .. import storage
from ..config_files import first_problem
from ..lean_imports import xgboost_without_sklearn

DEFAULT_BASE_DIR = "/opt/ml"
BASE_DIR_VARIABLE = "SAGEMAKER_BASE_DIR"  # the toolkit's: moves every /opt/ml path under it
MARKERS = ("success", "failure")  # in output/: how the job ended


def report_failure(base_dir: str, reason: str) -> None:
    """stderr, and ``output/failure`` unless it already holds a reason (the toolkit's, which it
    never overwrites); a failure file that cannot be written is said on stderr too. Without the
    base directory itself (``train`` run on a machine with no /opt/ml) only stderr."""
    print(f"costaware: training failed: {reason}", file=sys.stderr)
    if not os.path.isdir(base_dir):
        return
    failure = os.path.join(base_dir, "output", "failure")
    try:
        if os.path.isfile(failure) and os.path.getsize(failure) > 0:
            return
        os.makedirs(os.path.dirname(failure), exist_ok=True)
        storage.atomic_write(failure, reason.encode("utf-8"))
    except OSError as exc:
        print(f"costaware: the failure reason could not be written: {storage.reason(exc)}",
              file=sys.stderr)


def main() -> int:
    base_dir = os.environ.get(BASE_DIR_VARIABLE) or DEFAULT_BASE_DIR
    output = os.path.join(base_dir, "output")
    for name in MARKERS:  # an earlier run's: the toolkit never overwrites a failure file
        with contextlib.suppress(OSError):
            os.remove(os.path.join(output, name))
    problem = first_problem(os.path.join(base_dir, "input", "config"))
    if problem:
        report_failure(base_dir, problem)
        return 1
    try:  # the toolkit writes output/failure without creating output/
        os.makedirs(output, exist_ok=True)
    except OSError as exc:
        report_failure(base_dir, storage.reason(exc))
        return 1
    xgboost_without_sklearn()  # before the toolkit imports the training module, and XGBoost
    from sagemaker_training.cli.train import main as toolkit_train  # reads the files at import

    try:
        toolkit_train()  # exits the process with its status
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    return settle(base_dir, status)


def settle(base_dir: str, status: int) -> int:
    """The job's exit status once the toolkit has exited with ``status``: 0 only when the job
    really succeeded (see the module's docstring); otherwise the reason is reported."""
    from ..model import artifact  # the toolkit imported them when it ran the job
    from . import training_job as sagemaker_train  # the toolkit imported them when it ran the job

    ended = sagemaker_train.outcome
    problem = None
    if ended is None:
        problem = (f"the training toolkit exited with status {status} before costaware's "
                   "training ended (see the log)")
    elif ended.reason is not None:
        problem = ended.reason
    elif status != 0:
        problem = f"training finished, but the training toolkit exited with status {status} " \
                  "(see the log)"
    elif not os.path.isfile(os.path.join(base_dir, "output", "success")):
        problem = "training finished, but the training toolkit did not write output/success " \
                  "(see the log)"
    elif ended.model_dir is not None:
        try:
            artifact.load(ended.model_dir, nthread=1)
        except artifact.ModelLoadError as exc:
            problem = f"the saved model is not complete: {exc}"
    if problem is None:
        return 0
    with contextlib.suppress(OSError):
        os.remove(os.path.join(base_dir, "output", "success"))
    report_failure(base_dir, problem)
    return status or 1
