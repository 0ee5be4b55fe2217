"""``serve``: gunicorn + the Flask app, as SageMaker runs the image (``docker run IMAGE serve``).

Order of events:

1. Read the settings from the environment (config.py), and with data capture on check that its
   directory can be written (capture.py); a bad value stops here with a one-line reason and exit
   status 2.
2. Check the model in a short-lived forked child (so this master process never imports XGBoost
   or numpy, and every worker later forks from a process that has no XGBoost/OpenMP threads).
   A missing, empty or corrupt model directory stops here: one line on stderr, exit status 1.
   With ``SAGEMAKER_MULTI_MODEL=true`` there is no model to check: SageMaker loads each through
   ``POST /models`` once the server is up (multi_model.py), and the workers share the loaded
   models' entries in the ``models`` directory of the master's state directory (and the
   archives ``/invocations`` names, for the SDK's local mode, are unpacked into a directory of
   the master's on disk).
3. Start gunicorn with worker.py's workers: an asyncio front per worker that buffers each whole
   request (within COSTAWARE_READ_TIMEOUT seconds, up to the payload limit; 408/413 otherwise)
   before the app sees it, so slow clients never hold a request thread. Each worker builds the
   app with ``create_app``, which loads its own booster (``nthread`` = COSTAWARE_PREDICT_THREADS,
   default 1) before the worker accepts a connection; scikit-learn is kept out of the workers
   (``without_sklearn``). A worker that cannot load the model while others serve leaves them
   serving (``/ping`` then says what is wrong). SIGTERM drains in-flight requests (up to
   COSTAWARE_GRACEFUL_TIMEOUT seconds) and exits 0.

Logs are JSON lines: gunicorn's and the app's messages on stderr, one access line per request on
stdout (method, path, status, latency_ms, bytes in and out, rows, the error message of a 4xx, and
on a multi-model endpoint the model and the ``X-Amzn-SageMaker-Target-Model`` header).

Environment: see docs/serving.md (SAGEMAKER_BIND_TO_PORT, SAGEMAKER_MODEL_SERVER_WORKERS,
SAGEMAKER_MODEL_SERVER_TIMEOUT, SAGEMAKER_MAX_PAYLOAD_IN_MB, COSTAWARE_BIND_HOST,
COSTAWARE_MODEL_DIR / SM_MODEL_DIR / SAGEMAKER_BASE_DIR, COSTAWARE_READ_TIMEOUT,
COSTAWARE_WORKER_THREADS, COSTAWARE_PREDICT_THREADS, COSTAWARE_GRACEFUL_TIMEOUT,
COSTAWARE_KEEPALIVE, COSTAWARE_LOG_LEVEL; data capture: COSTAWARE_DATA_CAPTURE_DIR,
COSTAWARE_ENDPOINT_NAME, COSTAWARE_VARIANT_NAME, COSTAWARE_CAPTURE_PERCENTAGE, capture.py;
multi-model: SAGEMAKER_MULTI_MODEL, COSTAWARE_MODELS_ROOT, COSTAWARE_MODELS_MEMORY_MB).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
from datetime import datetime, timezone

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from ..errors import load_failure_reason
from ..lean_imports import without_sklearn
from .capture import check_root as check_capture_root
from .config import ServerConfigError, ServerSettings


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": _now(), "level": record.levelname.lower(), "logger": record.name,
                 "pid": record.process, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, default=str)


class JsonLogger(glogging.Logger):
    """gunicorn's logger with JSON lines: error log via :class:`JsonFormatter`, and one access line
    per request carrying the latency and what the app put in the WSGI environ."""

    def setup(self, cfg):
        super().setup(cfg)
        formatter = JsonFormatter()
        for handler in self.error_log.handlers:
            handler.setFormatter(formatter)
        app_log = logging.getLogger("costaware")
        app_log.setLevel(self.loglevel)
        app_log.propagate = False
        for handler in list(app_log.handlers):
            if getattr(handler, "_costaware", False):
                app_log.removeHandler(handler)
        handler = logging.StreamHandler(sys.stderr)
        handler._costaware = True
        handler.setFormatter(formatter)
        app_log.addHandler(handler)

    def access(self, resp, req, environ, request_time):
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        try:
            request_bytes = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            request_bytes = None
        entry = {
            "time": _now(), "level": "info", "logger": "access", "pid": os.getpid(),
            "method": environ.get("REQUEST_METHOD"), "path": environ.get("PATH_INFO"),
            "status": int(status), "latency_ms": round(request_time.total_seconds() * 1000, 3),
            "request_bytes": request_bytes, "response_bytes": getattr(resp, "sent", None),
            "remote": environ.get("REMOTE_ADDR"),
        }
        if "costaware.rows" in environ:
            entry["rows"] = environ["costaware.rows"]
        if "costaware.timing" in environ:
            entry.update(environ["costaware.timing"])
        if "costaware.error" in environ:
            entry["error"] = environ["costaware.error"]
        if "costaware.model" in environ:  # a multi-model endpoint's model (multi_model.py)
            entry["model"] = environ["costaware.model"]
        if "HTTP_X_AMZN_SAGEMAKER_TARGET_MODEL" in environ:  # InvokeEndpoint's TargetModel
            entry["target_model"] = environ["HTTP_X_AMZN_SAGEMAKER_TARGET_MODEL"]
        try:
            self.access_log.info(json.dumps(entry, default=str))
        except Exception:  # pragma: no cover - never let logging fail a request
            self.error(traceback.format_exc())


class CostawareServer(BaseApplication):
    """gunicorn configured in code (no config file, no command-line parsing of gunicorn's own)."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.capture = None  # a worker's CaptureWriter, made in load() after the fork
        # what the workers tell each other (worker.WorkerRoster): in memory where there is some
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.state_dir = tempfile.mkdtemp(prefix="costaware-serve-", dir=shm)
        # where a multi-model endpoint unpacks the archives /invocations names: on disk, since
        # a container's /dev/shm is small (64 MiB by default)
        self.unpack_dir = (tempfile.mkdtemp(prefix="costaware-unpacked-")
                           if settings.multi_model else None)
        super().__init__()

    def load_config(self):
        s = self.settings
        options = {
            "bind": [f"[{s.host}]:{s.port}" if ":" in s.host else f"{s.host}:{s.port}"],
            "workers": s.workers,
            # an asyncio front per worker, the app on complete requests only: worker.py
            "worker_class": "costaware.serving.worker.AsyncWorker",
            "timeout": s.timeout,
            "graceful_timeout": s.graceful_timeout,
            "keepalive": s.keepalive,
            "preload_app": False,  # each worker loads its own booster after the fork
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": s.log_level,
            "logger_class": JsonLogger,
            "proc_name": "costaware-serve",
            "control_socket_disable": True,
            "worker_exit": close_capture,
        }
        if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            options["worker_tmp_dir"] = "/dev/shm"  # heartbeat file off the container's overlay fs
        for key, value in options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        without_sklearn()
        from .app import create_app  # in the worker: numpy, XGBoost and Flask load here
        from .capture import CaptureWriter
        from .worker import WorkerRoster

        self.capture = CaptureWriter.from_settings(self.settings)  # this worker's own files
        return create_app(self.settings.model_dir, self.settings,
                          health=WorkerRoster(self.state_dir).problem, capture=self.capture,
                          registry_dir=os.path.join(self.state_dir, "models"),
                          unpack_dir=self.unpack_dir)


def close_capture(arbiter, worker) -> None:
    """gunicorn's ``worker_exit`` hook, in the worker that exits: its capture file closed."""
    capture = getattr(worker.app, "capture", None)
    if capture is not None:
        capture.close()


def check_model(model_dir: str) -> str | None:
    """Load the model in a forked child; ``None`` if it loads, else a one-line reason."""
    if not os.path.isdir(model_dir):
        if os.path.exists(model_dir):
            return f"model directory {model_dir} is not a directory"
        return f"model directory {model_dir} does not exist"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        message = b""
        try:
            os.close(read_end)
            try:
                without_sklearn()
                from ..model import artifact

                artifact.load(model_dir, nthread=1)
            except Exception as exc:
                message = load_failure_reason(exc).encode("utf-8", "replace")[:4000]
            os.write(write_end, message)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if message:
        return message
    if status != 0:
        if os.WIFSIGNALED(status):
            return f"loading the model from {model_dir} crashed (signal {os.WTERMSIG(status)})"
        return f"loading the model from {model_dir} failed (exit status {os.WEXITSTATUS(status)})"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="serve", description="Serve a costaware model on SageMaker's hosting contract "
                                  "(settings from the environment; see docs/serving.md).")
    parser.parse_known_args(argv)  # only -h; SageMaker passes nothing we need
    try:
        settings = ServerSettings.from_env()
    except ServerConfigError as exc:
        print(f"serve: cannot start: {exc}", file=sys.stderr, flush=True)
        return 2
    reason = check_capture_root(settings)
    if reason:
        print(f"serve: cannot start: {reason}", file=sys.stderr, flush=True)
        return 2
    reason = None if settings.multi_model else check_model(settings.model_dir)
    if reason:
        print(f"serve: cannot start: {reason}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps({"time": _now(), "level": "info", "logger": "serve", "pid": os.getpid(),
                      "message": "starting",
                      **({"multi_model": {"models_root": settings.models_root,
                                          "models_memory_mb": settings.models_memory_mb}}
                         if settings.multi_model else {"model_dir": settings.model_dir}),
                      "bind": f"{settings.host}:{settings.port}", "workers": settings.workers,
                      "threads": settings.threads, "predict_threads": settings.predict_threads,
                      "timeout": settings.timeout, "read_timeout": settings.read_timeout,
                      "max_payload_mb": settings.max_payload_mb,
                      "data_capture": settings.capture_dir and {
                          "dir": settings.capture_dir, "endpoint": settings.endpoint_name,
                          "variant": settings.variant_name,
                          "percentage": settings.capture_percentage}}),
          file=sys.stderr, flush=True)
    server = CostawareServer(settings)
    master = os.getpid()
    try:
        server.run()
    finally:
        if os.getpid() == master:  # a worker's exit unwinds through here too (it was forked)
            for directory in (server.state_dir, server.unpack_dir):
                if directory is not None:
                    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
