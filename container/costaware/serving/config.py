"""Server settings from the environment, checked once, each bad value a one-line reason.

Imports nothing heavy: the gunicorn master reads these before any worker (and before numpy or
XGBoost are imported anywhere in the server's process tree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import data_capture
from ..machine import cpu_count
from .media_types import DEFAULT_ACCEPT, SELECTABLE_KEYS, SHAPES, default_accept_problem

DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_MODELS_ROOT = "/opt/ml/models"  # where SageMaker copies a multi-model endpoint's models
DEFAULT_ENDPOINT_NAME = "local-endpoint"
DEFAULT_VARIANT_NAME = "AllTraffic"  # SageMaker's name for an endpoint's only variant
MAX_PAYLOAD_LIMIT_MB = 100
DRAIN_LIMIT = 256 * 1024 * 1024  # a refused body up to this size is read and dropped


class ServerConfigError(ValueError):
    """An environment variable holds a value the server cannot use."""


def payload_too_large(limit_mb: int, length: int | None = None) -> str:
    """The message of a 413: the body's size if it was announced, the limit and its setting."""
    size = f"the body is {length} bytes, over" if length is not None else "the body is over"
    return (f"{size} this server's limit of {limit_mb} MiB (SAGEMAKER_MAX_PAYLOAD_IN_MB); "
            "send fewer rows per request")


def model_dir_from_env(env=None) -> str:
    """``COSTAWARE_MODEL_DIR``, else ``SM_MODEL_DIR``, else ``$SAGEMAKER_BASE_DIR/model``, else
    ``/opt/ml/model`` (where SageMaker unpacks ``ModelDataUrl``)."""
    env = os.environ if env is None else env
    for name in ("COSTAWARE_MODEL_DIR", "SM_MODEL_DIR"):
        if env.get(name):
            return env[name]
    if env.get("SAGEMAKER_BASE_DIR"):
        return os.path.join(env["SAGEMAKER_BASE_DIR"], "model")
    return DEFAULT_MODEL_DIR


def _int(env, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ServerConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ServerConfigError(f"{name}={value} must be {bounds}")
    return value


def _switch(env, name: str) -> bool:
    """A variable SageMaker sets to ``true`` (case as it comes); unset or empty is off."""
    raw = env.get(name, "").strip().lower()
    if raw in ("", "false"):
        return False
    if raw == "true":
        return True
    raise ServerConfigError(f"{name}={env[name]!r}: set it to true or false")


def _directory(env, variable: str) -> str | None:
    """An absolute path (the workers may not share the master's idea of ``.``), or ``None``."""
    value = env.get(variable, "").strip()
    return os.path.abspath(value) if value else None


def _name(env, variable: str, default: str) -> str:
    value = env.get(variable, "").strip() or default
    problem = data_capture.check_name(value)
    if problem:
        raise ServerConfigError(f"{variable}={value!r} {problem}")
    return value


@dataclass(frozen=True)
class ServerSettings:
    model_dir: str
    host: str
    port: int
    workers: int
    threads: int  # request threads per worker (1: requests run on the worker's event loop)
    predict_threads: int  # XGBoost nthread per worker
    timeout: int
    read_timeout: int  # seconds from a request's first byte to its last
    graceful_timeout: int
    keepalive: int
    max_payload_mb: int
    log_level: str
    # data capture (serving/capture.py): off when capture_dir is None
    capture_dir: str | None = None
    endpoint_name: str = DEFAULT_ENDPOINT_NAME
    variant_name: str = DEFAULT_VARIANT_NAME
    capture_percentage: int = 100  # of the answered requests, each sampled on its own
    response_shape: str = "costaware"  # or "builtin": the SageMaker XGBoost container's answers
    default_accept: str = DEFAULT_ACCEPT["costaware"]  # for a request without Accept, or */*
    # SAGEMAKER_INFERENCE_OUTPUT's keys: the built-in container's selectable answers (none: off)
    inference_output: tuple[str, ...] = ()
    # multi-model endpoint (serving/multi_model.py): models loaded by POST /models under models_root
    multi_model: bool = False
    models_root: str = DEFAULT_MODELS_ROOT
    models_memory_mb: int | None = None  # None: half the container's memory (multi_model.py)

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_mb * 1024 * 1024

    @classmethod
    def from_env(cls, env=None) -> "ServerSettings":
        env = os.environ if env is None else env
        log_level = env.get("COSTAWARE_LOG_LEVEL", "info").strip().lower() or "info"
        if log_level not in ("debug", "info", "warning", "error", "critical"):
            raise ServerConfigError(f"COSTAWARE_LOG_LEVEL={log_level!r}: choose debug, info, warning, "
                              "error or critical")
        return cls(
            model_dir=model_dir_from_env(env),
            host=env.get("COSTAWARE_BIND_HOST", "").strip() or "0.0.0.0",
            port=_int(env, "SAGEMAKER_BIND_TO_PORT", 8080, 1, 65535),
            workers=_int(env, "SAGEMAKER_MODEL_SERVER_WORKERS", cpu_count(), 1, 1024),
            # one request thread per worker (its event loop's): the work is CPU-bound, and a
            # worker's threads only contend for its GIL (benchmarks/bench_serving.py, with the
            # earlier gthread worker: 1,381 single-row requests/s with 1 thread, 1,122 with 2, on
            # 2 workers and 2 cores); slow clients never hold a thread (worker.py)
            threads=_int(env, "COSTAWARE_WORKER_THREADS", 1, 1, 64),
            predict_threads=_int(env, "COSTAWARE_PREDICT_THREADS", 1, 1, 256),
            timeout=_int(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", 60, 1),
            # SageMaker gives an invocation 60 s: a request not even received by then is lost
            read_timeout=_int(env, "COSTAWARE_READ_TIMEOUT", 60, 1, 3600),
            graceful_timeout=_int(env, "COSTAWARE_GRACEFUL_TIMEOUT", 30, 1),
            keepalive=_int(env, "COSTAWARE_KEEPALIVE", 75, 0, 3600),
            max_payload_mb=_int(env, "SAGEMAKER_MAX_PAYLOAD_IN_MB", 6, 1, MAX_PAYLOAD_LIMIT_MB),
            log_level=log_level,
            capture_dir=_directory(env, "COSTAWARE_DATA_CAPTURE_DIR"),
            endpoint_name=_name(env, "COSTAWARE_ENDPOINT_NAME", DEFAULT_ENDPOINT_NAME),
            variant_name=_name(env, "COSTAWARE_VARIANT_NAME", DEFAULT_VARIANT_NAME),
            capture_percentage=_int(env, "COSTAWARE_CAPTURE_PERCENTAGE", 100, 0, 100),
            **_answers(env),
            multi_model=_switch(env, "SAGEMAKER_MULTI_MODEL"),
            models_root=_directory(env, "COSTAWARE_MODELS_ROOT") or DEFAULT_MODELS_ROOT,
            models_memory_mb=_int(env, "COSTAWARE_MODELS_MEMORY_MB", 0, 1) or None,
        )


def _answers(env) -> dict:
    """``COSTAWARE_RESPONSE_SHAPE``, ``SAGEMAKER_INFERENCE_OUTPUT`` (the built-in container's
    selectable answers: its keys, which imply the built-in shape) and
    ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` (whose default is the shape's: JSON for costaware's,
    CSV for the built-in container's)."""
    shape = env.get("COSTAWARE_RESPONSE_SHAPE", "").strip().lower()
    if shape and shape not in SHAPES:
        raise ServerConfigError(f"COSTAWARE_RESPONSE_SHAPE={shape!r}: choose "
                                f"{' or '.join(SHAPES)}")
    selected = _inference_output(env)
    if selected and shape == "costaware":
        raise ServerConfigError("SAGEMAKER_INFERENCE_OUTPUT asks for the built-in XGBoost "
                                "container's answers, COSTAWARE_RESPONSE_SHAPE=costaware for "
                                "costaware's: unset one")
    shape = shape or ("builtin" if selected else "costaware")
    accept = env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "").strip() or DEFAULT_ACCEPT[shape]
    problem = default_accept_problem(accept, bool(selected))
    if problem:
        raise ServerConfigError(f"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT={accept!r} {problem}")
    return {"response_shape": shape, "default_accept": accept, "inference_output": selected}


def _inference_output(env) -> tuple[str, ...]:
    """``SAGEMAKER_INFERENCE_OUTPUT``'s keys, as the built-in container reads them (blanks
    dropped, lower case, comma-separated); a key it does not have for a classifier stops
    ``serve``."""
    if "SAGEMAKER_INFERENCE_OUTPUT" not in env:
        return ()
    value = env["SAGEMAKER_INFERENCE_OUTPUT"]
    keys = tuple(value.replace(" ", "").lower().split(","))
    for key in keys:
        if key not in SELECTABLE_KEYS:
            also = (" (predicted_score is a regressor's; costaware's models classify)"
                    if key == "predicted_score" else "")
            raise ServerConfigError(f"SAGEMAKER_INFERENCE_OUTPUT={value!r}: {key!r} is not a "
                                    f"key of a classifier's answers; choose from "
                                    f"{', '.join(SELECTABLE_KEYS)}{also}")
    if len(set(keys)) != len(keys):
        raise ServerConfigError(f"SAGEMAKER_INFERENCE_OUTPUT={value!r} names a key twice")
    return keys
