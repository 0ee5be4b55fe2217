"""Shared helpers: SageMaker-shaped training trees and the image's real ``train`` entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def write_tree(base: Path, hyperparameters: dict | None = None, channels: dict | None = None,
               content_types: dict | None = None) -> Path:
    """Lay out ``base`` like ``/opt/ml``. ``channels`` maps a channel to {file name: text or bytes}."""
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters or {}))
    channels = channels or {}
    content_types = content_types or {}
    (config / "inputdataconfig.json").write_text(json.dumps(
        {name: {"ContentType": content_types.get(name, "text/csv")} for name in channels}))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"]}))
    for name, files in channels.items():
        directory = base / "input" / "data" / name
        directory.mkdir(parents=True, exist_ok=True)
        for file_name, content in files.items():
            path = directory / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
    return base


def run_train(base: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the image's real ``train`` console script (costaware's check, then the toolkit) on ``base``."""
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base),
               SAGEMAKER_TRAINING_MODULE="costaware.sagemaker_train:main")
    return subprocess.run([str(BIN / "train")], env=env, capture_output=True, text=True,
                          timeout=timeout)


def failure_reason(base: Path) -> str:
    return (base / "output" / "failure").read_text()


def csv_text(label, features, fmt="%.6g") -> str:
    rows = np.column_stack([label, features])
    lines = [",".join(fmt % v for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def synthetic(n: int, d: int = 5, seed: int = 0):
    """A learnable binary problem: ``y = 1`` with probability sigmoid(x . beta)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    beta = np.linspace(1.5, -1.0, d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ beta - 1.0)))).astype(int)
    return x, y


@pytest.fixture(scope="session")
def breast_cancer_tree(tmp_path_factory) -> Path:
    """The demo's tree (breast-cancer data, case-study costs), trained once per session."""
    base = tmp_path_factory.mktemp("bc") / "ml"
    subprocess.run([sys.executable, str(REPO / "local_test" / "prepare_breast_cancer.py"), str(base)],
                   check=True, capture_output=True)
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (base / "train.log").write_text(result.stdout + result.stderr)
    return base
