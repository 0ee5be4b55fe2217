"""Trials as SageMaker runs them: a tree of their own, the real ``train`` entry point, the log parsed.

A trial directory is laid out like ``/opt/ml``: ``input/config/*.json`` written for the trial (its
own ``hyperparameters.json``, every value a string as SageMaker passes them), ``input/data`` a
symbolic link to the source tree's channels (a copy where links are not possible), and ``model/`` and
``output/`` written by training. The trial runs ``costaware train --base-dir DIR`` in a subprocess,
which execs the sagemaker-training toolkit's ``train`` with the costaware module, as the image does.
Its objective is read from the log with the published metric-definition regexes, exactly as SageMaker's
tuner reads it from CloudWatch: the last value printed is the kept model's.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from .. import config_files
from ..config import hyperparameters as hp
from ..metrics import log_lines as metric_log
from ..errors import HyperparameterError, InputError
from . import config as cfg

LOG_FILE = "train.log"
HELD_OUT = "held_out"  # the out-of-fold metrics' prefix, without a validation channel
_LIVE: set = set()  # training runs in flight (Popen), so that an interrupt can stop them
_LIVE_LOCK = threading.Lock()
_STOPPED = threading.Event()  # set by stop_all: runs ending now were stopped, not failed


class TrialFailed(Exception):
    """A training run that did not finish or did not report the metric asked for."""


@dataclass(frozen=True)
class Tree:
    """A prepared ``/opt/ml``-shaped tree: its hyperparameters and channels."""

    path: str
    hyperparameters: dict
    inputdataconfig: dict
    resourceconfig: dict

    @property
    def data_dir(self) -> str:
        return os.path.join(self.path, "input", "data")

    @property
    def channels(self) -> list[str]:
        return [c for c in self.inputdataconfig]

    def settings(self, statics: dict | None = None):
        """The tree's hyperparameters with ``statics`` (``--static``, checked one by one by
        :func:`config.parse_statics`) over them, parsed and validated by the schema; a
        :class:`config.ConfigError` says whose they are when they fail."""
        try:
            return hp.parse(merge(self.hyperparameters, statics or {}))
        except HyperparameterError as exc:
            mine = f"the tree's hyperparameters ({self.path}/input/config/hyperparameters.json)"
            try:
                hp.parse(self.hyperparameters)
            except HyperparameterError:
                raise cfg.ConfigError(f"{mine}{' with --static' if statics else ''}: {exc}") \
                    from None
            raise cfg.ConfigError(f"--static {' '.join(f'{k}={v}' for k, v in statics.items())} "
                                  f"on {mine}: {exc}") from None

    @property
    def has_validation(self) -> bool:
        return "validation" in self.inputdataconfig


def _read_json(path: str, default):
    try:
        return config_files.read_object(path, default)
    except InputError as exc:
        raise cfg.ConfigError(str(exc)) from None


def read_tree(path: str) -> Tree:
    path = os.path.abspath(path)
    config = os.path.join(path, "input", "config")
    data = os.path.join(path, "input", "data")
    if not os.path.isdir(data):
        raise cfg.ConfigError(f"{path} is not an /opt/ml-shaped tree: {data} is missing")
    channels = {c: {"ContentType": "text/csv"} for c in sorted(os.listdir(data))
                if os.path.isdir(os.path.join(data, c))}
    inputdataconfig = _read_json(os.path.join(config, "inputdataconfig.json"), channels)
    if "train" not in inputdataconfig:
        raise cfg.ConfigError(f"{path}: no 'train' channel")
    hyperparameters = _read_json(os.path.join(config, "hyperparameters.json"), {})
    resourceconfig = _read_json(os.path.join(config, "resourceconfig.json"),
                                {"current_host": "algo-1", "hosts": ["algo-1"]})
    return Tree(path, {k: str(v) for k, v in hyperparameters.items()}, inputdataconfig,
                resourceconfig)


def as_strings(values: dict) -> dict:
    """Hyperparameters as SageMaker passes them: every value a string (floats without noise)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, float):
            out[key] = repr(int(value)) if value.is_integer() else f"{value:.10g}"
        else:
            out[key] = str(value)
    return out


def merge(base: dict, overrides: dict) -> dict:
    """``base`` updated with ``overrides``; a base key that names the same parameter under another
    name (an alias such as ``learning_rate`` for ``eta``) is dropped, or training would see it twice."""
    def canonical(key):
        param = hp.BY_NAME.get(key)
        return param.name if param else key

    replaced = {canonical(k) for k in overrides}
    out = {k: v for k, v in base.items() if canonical(k) not in replaced}
    out.update(overrides)
    return out


def make_trial_dir(tree: Tree, dest: str, hyperparameters: dict) -> str:
    """Lay out ``dest`` as the trial's ``/opt/ml``: config written, channels linked."""
    dest = os.path.abspath(dest)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    config = os.path.join(dest, "input", "config")
    os.makedirs(config)
    files = {
        "hyperparameters.json": as_strings(hyperparameters),
        "inputdataconfig.json": tree.inputdataconfig,
        "resourceconfig.json": tree.resourceconfig,
    }
    for name, content in files.items():
        with open(os.path.join(config, name), "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
            handle.write("\n")
    link = os.path.join(dest, "input", "data")
    try:
        os.symlink(tree.data_dir, link, target_is_directory=True)
    except OSError:  # no symlinks here (some file systems): copy the channels
        shutil.copytree(tree.data_dir, link)
    return dest


def train_command(base_dir: str) -> list[str]:
    """``costaware train --base-dir DIR`` with this interpreter."""
    return [sys.executable, "-m", "costaware.cli", "train", "--base-dir", base_dir]


def _environment() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # `costaware train` execs the toolkit's `train`, installed beside this interpreter
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


@dataclass
class Run:
    directory: str
    returncode: int
    seconds: float
    log: str
    metrics: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def evaluation(self) -> dict:
        """The run's evaluation.json ({} when it wrote none)."""
        path = os.path.join(self.directory, "output", "data", "evaluation.json")
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def decided_1_shares(self) -> dict:
        """Per channel, the share of rows the kept model decides 1 for (from evaluation.json; not
        a tuning metric: it flags a model that decides the same for everyone)."""
        channels = self.evaluation().get("channels", {})
        out = {}
        for name, channel in channels.items():
            cm = channel.get("served", {}).get("confusion_matrix")
            if cm:
                rows = cm["tp"] + cm["fp"] + cm["fn"] + cm["tn"]
                out[name] = (cm["tp"] + cm["fp"]) / rows if rows else math.nan
        return out

    def failure(self) -> str:
        path = os.path.join(self.directory, "output", "failure")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                text = " ".join(handle.read().split())
            if text:
                return text[:500]
        tail = [line for line in self.log.strip().splitlines() if line.strip()][-1:] or ["no output"]
        return f"exit status {self.returncode}: {tail[0][:300]}"


def run_training(directory: str, timeout: float | None = None) -> Run:
    """Run ``costaware train`` on ``directory``; the combined stdout and stderr go to train.log."""
    start = time.monotonic()
    log_path = os.path.join(directory, LOG_FILE)
    timed_out = False
    with open(log_path, "w", encoding="utf-8") as log:
        # A session of its own: on a timeout or an interrupt the whole run (the toolkit may start
        # children) is stopped by its process group, and nothing else.
        proc = subprocess.Popen(train_command(directory), stdout=log, stderr=subprocess.STDOUT,
                                env=_environment(), start_new_session=True)
        with _LIVE_LOCK:
            _LIVE.add(proc)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc)
            code = proc.returncode
        except BaseException:
            _stop(proc)
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
    with open(log_path, encoding="utf-8", errors="replace") as log:
        text = log.read()
    if code < 0 and _STOPPED.is_set() and not timed_out:
        text += "\ntrial stopped: interrupted\n"
    if timed_out:
        text += f"\ntrial stopped after {timeout:g} s (--timeout)\n"
    run = Run(directory, code, time.monotonic() - start, text)
    run.metrics = parse_log(text)
    return run


def held_out_metrics(run: Run) -> dict:
    """A run without a validation channel: the kept round's out-of-fold metrics, as
    ``held_out:<name>``.

    Training then holds out every train row by cross-fitting, and each round's ``[N]`` line
    prints the metrics of those rows' out-of-fold margins as ``train:<name>`` (at the Bayes rule,
    with that round's calibrator: what early stopping watches); the ``[final] train:`` line
    scores the train rows with the model itself, in sample. The kept round is
    ``rounds.kept`` of evaluation.json."""
    kept = run.evaluation().get("rounds", {}).get("kept")
    line = re.search(rf"^\[{kept - 1}\]\t.*$", run.log, re.M) if kept else None
    if line is None:
        return {}
    train = [d for d in metric_log.metric_definitions(None) if d["Name"].startswith("train:")]
    return {f"{HELD_OUT}:{name.split(':', 1)[1]}": value
            for name, value in parse_log(line.group(0), train).items()}


def _stop(proc: subprocess.Popen) -> None:
    """Kill the run's process group (its session, started by us) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def stop_all() -> int:
    """Stop every training run this process started and that is still running (on an interrupt)."""
    _STOPPED.set()
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(live)


def parse_log(log: str, definitions: list[dict] | None = None) -> dict:
    """``{metric name: last value}`` for every metric definition whose regex matches the log, as
    SageMaker reads the log (it reports a training job's final metric as the last value emitted)."""
    out = {}
    for definition in definitions or metric_log.metric_definitions(None):  # any K's names
        found = re.findall(definition["Regex"], log)
        if found:
            value = float(found[-1])
            if math.isfinite(value):
                out[definition["Name"]] = value
    return out
