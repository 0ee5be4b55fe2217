"""The image's ``train`` command: check SageMaker's configuration files, then run the toolkit's.

The sagemaker-training toolkit reads ``input/config/hyperparameters.json``,
``inputdataconfig.json`` and ``resourceconfig.json`` before it imports costaware. A file that is
missing or not JSON ends there: in a Python traceback as the job's failure reason, or, where
``output/`` does not exist yet (a hand-made local tree), in exit status 0 with no failure file at all,
so a job that never trained would look completed. This entry point checks the three files first and
fails the way bad data fails: a one-line reason naming the file in ``output/failure`` (which the
toolkit never overwrites), the same line on stderr, exit status 1. Otherwise it hands over to the
toolkit, which runs ``SAGEMAKER_TRAINING_MODULE`` (:func:`costaware.sagemaker_train.main`).

costaware's ``train`` console script replaces the toolkit's one of the same name (pip installs
costaware after its dependencies); the image's smoke test checks that it did.
"""

from __future__ import annotations

import os
import sys

from .config_files import first_problem

DEFAULT_BASE_DIR = "/opt/ml"
BASE_DIR_VARIABLE = "SAGEMAKER_BASE_DIR"  # the toolkit's: moves every /opt/ml path under it


def report_failure(base_dir: str, reason: str) -> None:
    """``output/failure`` as the toolkit writes it (never overwritten), and stderr. Without the base
    directory itself (``train`` run on a machine with no /opt/ml) only stderr."""
    print(f"costaware: training failed: {reason}", file=sys.stderr)
    if not os.path.isdir(base_dir):
        return
    output = os.path.join(base_dir, "output")
    os.makedirs(output, exist_ok=True)
    failure = os.path.join(output, "failure")
    if not os.path.exists(failure):
        with open(failure, "w", encoding="utf-8") as handle:
            handle.write(reason)


def main() -> int:
    base_dir = os.environ.get(BASE_DIR_VARIABLE) or DEFAULT_BASE_DIR
    problem = first_problem(os.path.join(base_dir, "input", "config"))
    if problem:
        report_failure(base_dir, problem)
        return 1
    # the toolkit writes output/failure without creating output/ (and exits 0 if it cannot)
    os.makedirs(os.path.join(base_dir, "output"), exist_ok=True)
    from sagemaker_training.cli.train import main as toolkit_train  # reads the files at import

    toolkit_train()  # exits the process with the job's status
    return 0
