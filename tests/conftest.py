"""Shared helpers: SageMaker-shaped training trees and the image's real ``train`` entry point."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PAYLOAD_MB = 1  # the test servers' SAGEMAKER_MAX_PAYLOAD_IN_MB


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


def pytest_terminal_summary(terminalreporter):
    """tests/test_combinations.py's matrix: its size, what works, what is refused and why."""
    matrix = sys.modules.get("test_combinations")
    for line in matrix.summary_lines(terminalreporter.stats) if matrix else []:
        terminalreporter.write_line(line)


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


class Mounts:
    """Real volumes for fault tests (as root, which CI is): a small tmpfs fills up as a disk does,
    a read-only bind mount refuses root too (chmod would not). Unmounted by the ``mounts`` fixture,
    last first, whatever the test did."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def _mount(self, *args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True, text=True)
        self.points.append(Path(args[-1]))

    def tmpfs(self, directory: Path, size: str) -> Path:
        """A fresh tmpfs of ``size`` (e.g. "16k") at ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory))
        return directory

    def bind(self, source: Path, target: Path, read_only: bool = False) -> Path:
        """``source`` seen at ``target`` too (read-only there with ``read_only``)."""
        target.mkdir(parents=True, exist_ok=True)
        self._mount("--bind", str(source), str(target))
        if read_only:  # a bind mount takes "ro" only on a remount
            subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True,
                           capture_output=True)
        return target

    def read_only(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        return self.bind(directory, directory, read_only=True)

    def unmount_all(self) -> None:
        for point in reversed(self.points):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
        self.points.clear()


@pytest.fixture
def mounts():
    if os.geteuid() != 0:
        pytest.fail("this fault test mounts a tmpfs or a read-only bind mount: run it as root (CI "
                    "does; see tests/run.sh)")
    volumes = Mounts()
    try:
        yield volumes
    finally:
        volumes.unmount_all()


# ------------------------------------------------------------------ the real `serve` on 127.0.0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _terminate_with_parent():
    """In the child before exec: SIGTERM it if pytest dies (killed by a timeout, say), so a server
    never outlives its test run."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - not glibc Linux
        pass


class Server:
    def __init__(self, model_dir: str, log_dir, workers: int = 2, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = os.path.join(log_dir, f"serve-{self.port}.out")
        self.stderr_path = os.path.join(log_dir, f"serve-{self.port}.err")
        full_env = dict(os.environ, COSTAWARE_MODEL_DIR=model_dir, COSTAWARE_BIND_HOST="127.0.0.1",
                        SAGEMAKER_BIND_TO_PORT=str(self.port),
                        SAGEMAKER_MODEL_SERVER_WORKERS=str(workers),
                        SAGEMAKER_MAX_PAYLOAD_IN_MB=str(PAYLOAD_MB), **env)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(["serve"], env=full_env, stdout=out, stderr=err,
                                         preexec_fn=_terminate_with_parent)
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited: {self.stderr()}"
            try:  # the socket listens before a worker has booted: wait for a 200
                if requests.get(self.url + "/ping", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"serve never answered /ping: {self.stderr()}")

    def stderr(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def access_log(self) -> list[dict]:
        with open(self.stdout_path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def workers(self) -> set[int]:
        children = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as handle:
                        stat = handle.read()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.pid:
                    children.add(int(entry))
        return children

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
