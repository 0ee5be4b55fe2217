"""Data capture in ``serve``: each worker appends the requests it answered to capture files in
SageMaker's layout and record format (:mod:`costaware.data_capture` owns both), so a monitoring job
reads a local run as it reads an endpoint's capture from S3.

On when ``COSTAWARE_DATA_CAPTURE_DIR`` is set (config.py). Each worker writes its own file per
UTC hour, named as SageMaker names them (a random id in the name, and the file created with
``O_EXCL``: no two workers, nor a restarted one, ever write the same file); a new file when the
hour changes; closed when the worker exits. A record is one ``write`` of its whole line to a
file opened ``O_APPEND`` without a buffer in this process: once the request is answered its
record is in the kernel, so a killed worker loses at most the request in flight.

A write that fails (a full disk) never fails the request: the record is counted, each distinct
reason logged once (and the counts when the worker exits). A record cut short by a full disk is
cut off the file again (this worker alone writes it), so the file holds only whole lines.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import threading

from .. import data_capture, storage
from .config import ServerSettings

log = logging.getLogger("costaware.serving.capture")

OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


def check_root(settings: ServerSettings) -> str | None:
    """Why capture files cannot be written where the settings say (``None`` when they can, or
    capture is off): the variant's directory is made and a file written in it and removed."""
    if settings.capture_dir is None:
        return None
    directory = data_capture.variant_directory(settings.capture_dir, settings.endpoint_name,
                                               settings.variant_name)
    try:
        storage.check_writable(directory)
    except OSError as exc:
        return (f"COSTAWARE_DATA_CAPTURE_DIR={settings.capture_dir}: cannot write capture files "
                f"in {directory}: {exc.strerror or exc}")
    return None


class CaptureWriter:
    """One worker's capture files. :meth:`sampled` says whether to capture a request (each with
    probability ``percentage`` / 100), :meth:`write` appends its record."""

    def __init__(self, root: str, endpoint: str, variant: str, percentage: int):
        self.root, self.endpoint, self.variant = root, endpoint, variant
        self.fraction = percentage / 100
        self.lock = threading.Lock()  # COSTAWARE_WORKER_THREADS > 1: requests on several threads
        self.fd = None
        self.path = None
        self.hour = None  # the UTC hour (hours since the epoch) of the open file
        self.size = 0  # bytes of whole records in the open file
        self.written = 0
        self.failures = {}  # reason -> records not written for it

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> "CaptureWriter | None":
        if settings.capture_dir is None:
            return None
        return cls(settings.capture_dir, settings.endpoint_name, settings.variant_name,
                   settings.capture_percentage)

    def sampled(self) -> bool:
        return self.fraction >= 1 or random.random() < self.fraction

    def write(self, when: float, input_type: str | None, input_body: bytes,
              output_type: str | None, output_body: bytes, inference_id: str | None,
              target_model: str | None = None) -> None:
        """Append the record of an answered invocation made at POSIX time ``when`` (of
        ``target_model`` on a multi-model endpoint); never raises for a file that cannot be
        written (counted and logged instead)."""
        line = data_capture.to_line(data_capture.record(input_type, input_body, output_type,
                                                        output_body, when, inference_id,
                                                        target_model=target_model))
        hour = int(when // 3600)
        with self.lock:
            written = 0
            try:
                if self.fd is None or hour != self.hour:
                    self._open(when, hour)
                written = os.write(self.fd, line)
                while written < len(line):  # cut short: the next write says why (a full disk)
                    more = os.write(self.fd, line[written:])
                    if not more:
                        raise OSError(errno.ENOSPC, "nothing more could be written")
                    written += more
            except OSError as exc:
                if written:
                    self._cut_back()
                self._failed(exc.strerror or type(exc).__name__,
                             exc.filename or self.path or self.root)
                return
            self.size += written
            self.written += 1

    def _open(self, when: float, hour: int) -> None:
        self.close_file()
        directory = data_capture.hour_directory(self.root, self.endpoint, self.variant, when)
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, data_capture.file_name(when))
        self.fd = os.open(path, OPEN_FLAGS, 0o644)
        self.path, self.hour, self.size = path, hour, 0

    def _cut_back(self) -> None:
        """Part of a line was written: cut it off, so the file ends on a whole record."""
        try:
            os.ftruncate(self.fd, self.size)
        except OSError:  # then start another file: the part line ends this one
            self.close_file()

    def _failed(self, reason: str, where: str) -> None:
        count = self.failures.get(reason, 0)
        self.failures[reason] = count + 1
        if count == 0:
            log.warning("data capture: a record could not be written to %s: %s; the request was "
                        "answered; records that fail for this reason are counted, not logged "
                        "again", where, reason)

    def close_file(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        """At the worker's exit: the file closed, and what could not be written said."""
        with self.lock:
            self.close_file()
            if self.failures:
                lost = sum(self.failures.values())
                log.warning("data capture: %d records of this worker were not written (%s); "
                            "%d were", lost, "; ".join(f"{n}: {reason}" for reason, n in
                                                       self.failures.items()), self.written)
