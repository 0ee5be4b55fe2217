"""The gunicorn worker: an asyncio front that buffers each whole request, then the Flask app.

Why not gunicorn's gthread worker: its request threads read the body themselves, so a client that
sends the headers and part of a body and then stalls holds a thread until it closes; with the
defaults (one thread per worker) two such clients stopped all serving. Here each worker runs one
event loop that owns every connection. A request reaches the app only once it is complete (head
and the whole body, by ``Content-Length`` or chunked), so a slow or stalled client costs its own
connection and buffer, never a request thread:

* from its first byte, a request must arrive within ``COSTAWARE_READ_TIMEOUT`` seconds, else the
  client gets ``408`` (JSON) and the connection closes; an idle connection (no request begun) is
  closed after ``COSTAWARE_KEEPALIVE`` seconds, without an answer;
* a ``Content-Length`` over the payload limit is answered ``413`` at once, before the body
  arrives (the rest of the body is then read and dropped, so the client sees the answer); a
  chunked body is answered ``413`` as soon as it passes the limit, and the connection closes;
* the complete request goes the direct way (below) or through gunicorn's own parser and WSGI
  layer, on the loop's thread, or on one of ``COSTAWARE_WORKER_THREADS`` threads if
  that is above 1; the answer is written by the loop, so a client slow to read does not hold a
  thread either;
* gunicorn's own protocol errors (a malformed request line, a control character in a header) are
  answered as JSON (``write_json_error``), like every error of this server (docs/serving.md);
* a plainly formed invocation skips gunicorn's parser and Flask (direct.py: the direct way, the
  same answers), and the requests that become complete in one pass of the loop are answered
  together, in the next pass (``answer_arrived``): the rows of those to one model predicted in one
  XGBoost call, whose cost is per call (invocation.respond_together).

Two faults of the worker pool are handled here too, through a small directory the master makes
(``WorkerRoster``):

* when a worker becomes ready, the other workers close each of their kept-alive connections after
  its next answer, so clients reconnect, and after each such close the worker takes no new
  connection for ``REBALANCE_PAUSE`` seconds, so the reconnection reaches another worker (every
  worker wakes for a new connection, and the one that just answered often wins the race: a CI
  run saw 0 of 8 reconnections reach the new worker); without it, after a worker was killed and
  replaced, the kept-alive clients all stayed on the survivor and the replacement got no traffic;
* a worker that cannot load the model while another worker serves it (the model file was
  damaged on disk after the start) does not stop the server: it records why, takes no
  connections, and exits after ``MODEL_RETRY_SECONDS`` so that gunicorn starts another, which
  tries again; meanwhile ``/ping`` answers ``{"status": "degraded", "error": ...}``. Only when no
  worker holds the model does the server stop, as it does at the start.

Imports nothing heavy: the gunicorn master loads this class before any worker exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import NamedTuple

from gunicorn import http, util
from gunicorn.http import wsgi
from gunicorn.workers import base

from ..errors import load_failure_reason
from .config import DRAIN_LIMIT, ServerSettings, payload_too_large
from .direct import PlainRequest, plain_request, response_bytes

MAX_HEAD_BYTES = 64 * 1024  # request line and headers (gunicorn's own limits apply after)
MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions
MODEL_RETRY_SECONDS = 10  # a worker that could not load the model waits this long, then exits
REBALANCE_PAUSE = 0.05  # seconds without accepting after a connection was closed to rebalance
ROSTER_LOOK_INTERVAL = 0.05  # seconds: a worker that became ready is seen this late, at most
RECENT_STAMP_NS = 1_000_000_000  # a directory time this close to now may hide a later change
STOP_ACCEPT_LIMIT = 1024  # queued connections a stopping worker takes, at most (the backlog's size)
TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"  # InvokeEndpoint's TargetModel, logged
STOP_LINGER = 2.0  # seconds an idle connection stays open after SIGTERM (gunicorn's gthread: 2)
# a body with more than this still to come is kept as the pieces the socket gives and joined once
# complete: appending 256 KiB pieces to one growing buffer, then copying it out, took 6.3 ms for
# 6 MiB, joining 0.5 ms
COLLECT_BYTES = 64 * 1024


def json_error_bytes(status_int: int, reason: str, message: str, close: bool = True,
                     **details) -> bytes:
    """A whole HTTP/1.1 response carrying ``{"error": message, "status": status_int, ...}``."""
    body = json.dumps({"error": message[:1000], "status": status_int, **details}).encode("ascii")
    connection = "close" if close else "keep-alive"
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: {connection}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error``: the same status line, a JSON body."""
    detail = " ".join(str(mesg or "").split())  # one line
    if status_int >= 500:
        message = f"internal error: {detail or reason}; the request was not processed"
    else:
        message = f"malformed HTTP request: {detail or reason}"
    util.write_nonblock(sock, json_error_bytes(status_int, reason, message))


# ------------------------------------------------------------------------------ framing


class Framing:
    """Where the request at the start of a buffer ends, read from its head; no validation beyond
    what finding the end needs (gunicorn's parser checks the complete request).

    ``length``: the body's ``Content-Length``; ``chunked``: a chunked body; ``refuse``: a
    ``(status, reason, message)`` to answer before the body arrives; ``malformed``: framing that
    cannot be trusted (the head alone goes to gunicorn's parser, which says what is wrong).
    """

    def __init__(self, head: bytes, limit: int, limit_mb: int):
        self.length = 0
        self.chunked = False
        self.malformed = False
        self.refuse = None
        self.expect_continue = False
        lines = head.split(b"\r\n")
        http11 = lines[0].rstrip().endswith(b"HTTP/1.1")
        lengths, codings = [], []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                lengths.append(value.strip())
            elif name == b"transfer-encoding":
                codings.extend(c.strip().lower() for c in value.split(b","))
            elif name == b"expect" and value.strip().lower() == b"100-continue":
                self.expect_continue = http11
        if codings:
            self.chunked = codings[-1] == b"chunked" and not lengths
            self.malformed = not self.chunked
        elif lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                self.malformed = True
            else:
                self.length = int(lengths[0])
                if self.length > limit:
                    self.refuse = (413, "Payload Too Large",
                                   payload_too_large(limit_mb, self.length))


class ChunkScanner:
    """Finds the end of a chunked body in a growing buffer, one pass over each byte."""

    def __init__(self, start: int, limit: int):
        self.pos = start  # the next chunk-size line
        self.size = 0  # body bytes so far
        self.limit = limit

    def scan(self, buffer: bytearray):
        """The end of the request (after the trailers), ``None`` while incomplete, ``-1`` if the
        chunk framing is broken, ``-2`` once the body is over the limit."""
        while True:
            line_end = buffer.find(b"\r\n", self.pos, self.pos + MAX_CHUNK_LINE)
            if line_end < 0:
                return -1 if len(buffer) - self.pos > MAX_CHUNK_LINE else None
            size_field = bytes(buffer[self.pos:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                return -1
            if size < 0:
                return -1
            if size == 0:  # the last chunk, then trailer lines up to an empty line
                end = buffer.find(b"\r\n\r\n", line_end)
                if end < 0:
                    return -1 if len(buffer) - line_end > MAX_HEAD_BYTES else None
                return end + 4
            self.size += size
            if self.size > self.limit:
                return -2
            data_end = line_end + 2 + size
            if len(buffer) < data_end + 2:
                self.size -= size  # counted again on the next pass
                return None
            self.pos = data_end + 2


# ------------------------------------------------------------------------------ connections


class Arrived(NamedTuple):
    """A complete request: its head (the request line and headers, and the blank line) and its
    body as sent, apart, so that the direct way reads a 6 MiB body without copying it out."""

    head: bytes
    body: bytes

    def whole(self) -> bytes:
        return self.head + self.body


class Connection(asyncio.Protocol):
    """One client connection: buffers a request until it is complete, hands it to the worker."""

    def __init__(self, worker: "AsyncWorker"):
        self.worker = worker
        self.transport = None
        self.peer = ("", -1)
        self.buffer = bytearray()
        self.pieces = None  # the rest of a long body, as it arrives (COLLECT_BYTES)
        self.pieces_due = 0  # bytes of it still to come
        self.framing = None
        self.head_end = 0
        self.chunks = None
        self.discard = 0  # bytes of a refused body still to drop
        self.busy = False  # a request of this connection is in the app
        self.advancing = False  # advance() is running (pipelined requests: no recursion)
        self.closing = False
        self.timer = None
        self.started = 0.0  # when the current request's first byte arrived
        self.epoch = worker.epoch

    # -- asyncio callbacks

    def connection_made(self, transport):
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or ("", -1)
        self.worker.connections.add(self)
        if self.worker.alive:
            self.idle()
        else:  # taken from the queue at SIGTERM: its request may be on its way
            self.timer = self.worker.loop.call_later(STOP_LINGER, self.close)

    def connection_lost(self, exc):
        self.worker.connections.discard(self)
        self.cancel_timer()
        self.closing = True

    def data_received(self, data: bytes):
        if self.closing:
            return
        if self.discard:
            dropped = min(self.discard, len(data))
            self.discard -= dropped
            data = data[dropped:]
            if not self.discard:
                self.idle()
            if not data:
                return
        if not self.buffer and not self.busy:
            self.begin()
        if self.pieces is None:
            self.buffer += data
        else:
            self.pieces.append(data)
            self.pieces_due -= len(data)
            if self.pieces_due <= 0:
                self.body_arrived()
            return
        if not self.busy:
            self.advance()

    # -- timers

    def cancel_timer(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def idle(self):
        """No request begun: close quietly after the keep-alive time."""
        self.cancel_timer()
        if not self.worker.alive:
            self.close()
            return
        keepalive = self.worker.cfg.keepalive or self.worker.read_timeout
        self.timer = self.worker.loop.call_later(keepalive, self.close)

    def begin(self):
        """A request's first byte: it must be complete within the read timeout."""
        self.cancel_timer()
        self.started = time.monotonic()
        self.timer = self.worker.loop.call_later(self.worker.read_timeout, self.read_timed_out)

    def read_timed_out(self):
        self.timer = None
        received = len(self.buffer) + sum(map(len, self.pieces or ()))
        timeout = self.worker.read_timeout
        message = (f"the request was not complete within {timeout:g} s (COSTAWARE_READ_TIMEOUT): "
                   f"{received} bytes arrived; send the whole request without pausing")
        self.refuse(408, "Request Timeout", message, close=True)

    # -- requests

    def advance(self):
        """Serve every complete request in the buffer (pipelined ones in order)."""
        if self.advancing:  # called back from finished() inside the loop below
            return
        self.advancing = True
        try:
            while self.buffer and not self.closing and not self.busy:
                end = self.request_end()
                if end is None:
                    return
                request = Arrived(bytes(self.buffer[:self.head_end]),
                                  bytes(self.buffer[self.head_end:end]))
                del self.buffer[:end]
                self.complete(request)
        finally:
            self.advancing = False

    def body_arrived(self):
        """The last piece of a collected body came: joined once, its request goes to the app;
        bytes after it (the next request's) stay in the buffer."""
        body = b"".join([self.buffer[self.head_end:], *self.pieces])
        head = bytes(self.buffer[:self.head_end])
        length = self.framing.length
        self.buffer = bytearray(body[length:])
        self.pieces = None
        self.complete(Arrived(head, body if len(body) == length else body[:length]))

    def complete(self, request: Arrived):
        self.framing, self.chunks, self.head_end = None, None, 0
        self.cancel_timer()
        self.worker.dispatch(self, request)

    def request_end(self):
        """The end of the complete request at the start of the buffer, else ``None`` (and any
        answer due before the body is complete is sent)."""
        worker = self.worker
        if self.framing is None:
            head_end = self.buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
            if head_end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self.refuse(431, "Request Header Fields Too Large",
                                f"malformed HTTP request: the request line and headers are over "
                                f"{MAX_HEAD_BYTES} bytes", close=True)
                return None
            self.head_end = head_end + 4
            self.framing = Framing(bytes(self.buffer[:head_end]), worker.limit, worker.limit_mb)
            framing = self.framing
            if framing.malformed:
                return self.head_end  # gunicorn's parser answers it; the connection then closes
            if framing.refuse:
                status, reason, message = framing.refuse
                self.refuse(status, reason, message, close=framing.length > DRAIN_LIMIT,
                            limit_bytes=worker.limit)
                if not self.closing:  # drop the body as it comes, then serve the next request
                    self.discard = framing.length - (len(self.buffer) - self.head_end)
                    del self.buffer[:]
                    self.framing, self.head_end = None, 0
                    self.cancel_timer()
                    self.timer = worker.loop.call_later(worker.read_timeout, self.close)
                return None
            if framing.chunked:
                self.chunks = ChunkScanner(self.head_end, worker.limit)
            if framing.expect_continue and len(self.buffer) == self.head_end:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.chunks is not None:
            end = self.chunks.scan(self.buffer)
            if end == -1:
                return len(self.buffer)  # gunicorn's parser names the broken chunk
            if end == -2:
                self.refuse(413, "Payload Too Large", payload_too_large(worker.limit_mb),
                            close=True, limit_bytes=worker.limit)
                return None
            return end
        end = self.head_end + self.framing.length
        if len(self.buffer) >= end:
            return end
        if self.pieces is None and end - len(self.buffer) > COLLECT_BYTES:
            self.pieces, self.pieces_due = [], end - len(self.buffer)
        return None

    def refuse(self, status: int, reason: str, message: str, close: bool, **details):
        """Answer before the app sees the request (408, 413, 431), and log it like any request."""
        line = bytes(self.buffer[:min(len(self.buffer), 8192)]).split(b"\r\n", 1)[0]
        method, _, rest = line.decode("latin-1").partition(" ")
        data = json_error_bytes(status, reason, message, close=close, **details)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        environ = {"REQUEST_METHOD": method or None, "PATH_INFO": rest.split(" ", 1)[0] or None,
                   "REMOTE_ADDR": self.peer[0], "costaware.error": message,
                   "CONTENT_LENGTH": self.framing.length if self.framing else None}
        elapsed = timedelta(seconds=time.monotonic() - self.started) if self.started else \
            timedelta(0)
        self.worker.log.access(SimpleNamespace(status=status, sent=len(data)), None, environ,
                               elapsed)
        if close:
            self.close()

    def finished(self, data: bytes, keep: bool):
        """The app's answer (on the loop's thread): write it, then go on or close."""
        self.busy = False
        if self.closing:
            return
        if self.worker.pool is not None:
            self.transport.resume_reading()
        self.transport.write(memoryview(data))  # what the socket does not take at once is
        # buffered: from a memoryview without first copying the rest into new bytes
        if not keep:
            self.close()
            return
        if self.buffer:
            self.begin()
            self.advance()
        else:
            self.idle()

    def close(self):
        self.cancel_timer()
        if not self.closing:
            self.closing = True
            self.transport.close()  # after what was written is sent
        self.worker.connections.discard(self)


class CapturedSocket:
    """What gunicorn's response writer needs of a socket; collects the bytes for the loop."""

    def __init__(self):
        self.parts = []

    def sendall(self, data):
        self.parts.append(bytes(data))

    def send(self, data):  # gunicorn's "100 Continue": the front sent it when the body was due
        return len(data)

    def gettimeout(self):
        return 0.0

    def data(self) -> bytes:
        return b"".join(self.parts)


# ------------------------------------------------------------------------------ the worker pool


class WorkerRoster:
    """What the workers know of each other, in a directory the master made: ``ready-<pid>`` for
    each worker that holds the model, ``load-error`` for why a worker could not load it."""

    def __init__(self, directory: str):
        self.directory = directory
        self.error_path = os.path.join(directory, "load-error")
        self.stamp = None
        self.known = set()

    def ready_pids(self) -> set[int]:
        """Workers that hold the model and are alive (a killed one's file is removed here)."""
        pids = set()
        for name in os.listdir(self.directory):
            if not name.startswith("ready-"):
                continue
            pid = int(name[6:])
            if _alive(pid):
                pids.add(pid)
            else:
                try:
                    os.unlink(os.path.join(self.directory, name))
                except FileNotFoundError:
                    pass
        return pids

    def mark_ready(self, pid: int) -> None:
        with open(os.path.join(self.directory, f"ready-{pid}"), "w"):
            pass
        try:
            os.unlink(self.error_path)  # a worker loaded the model: whatever failed is over
        except FileNotFoundError:
            pass
        self.known = self.ready_pids()
        self.stamp = settled_stamp(os.stat(self.directory).st_mtime_ns)

    def record_load_failure(self, message: str) -> None:
        temporary = f"{self.error_path}.{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(message)
        os.replace(temporary, self.error_path)

    def problem(self) -> str | None:
        """Why the server is degraded, or ``None``."""
        try:
            with open(self.error_path, encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            return None

    def another_became_ready(self) -> bool:
        """Whether a worker became ready since the last call (one ``stat`` when nothing did)."""
        try:
            stamp = os.stat(self.directory).st_mtime_ns
        except OSError:  # the master is gone and removed it: nothing to balance
            return False
        if stamp == self.stamp:
            return False
        self.stamp = settled_stamp(stamp)
        pids = self.ready_pids()
        grew = bool(pids - self.known)
        self.known = pids
        return grew


def settled_stamp(stamp: int) -> int | None:
    """A directory's ``st_mtime_ns`` to compare the next look with, or ``None`` (list again next
    time) while it is recent: file systems stamp with a coarse clock, so a file made in the same
    tick as the last look leaves the directory's time unchanged and would go unseen."""
    return stamp if time.time_ns() - stamp > RECENT_STAMP_NS else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (not a zombie: a killed worker is one until the master reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class AsyncWorker(base.Worker):
    """One asyncio loop per worker for the connections; the app sees only complete requests."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings: ServerSettings = self.app.settings
        self.read_timeout = settings.read_timeout
        self.limit = settings.max_payload_bytes
        self.limit_mb = settings.max_payload_mb
        self.threads = settings.threads
        self.roster = WorkerRoster(self.app.state_dir)
        self.connections = set()
        self.epoch = 0  # bumped when another worker becomes ready: connections older rebalance
        self.loop = None
        self.pool = None
        self.listening = []  # the listening sockets' descriptors
        self.listeners = []  # the listening sockets
        self.resume = None  # the timer that takes connections again after a rebalancing close
        self.arriving = 0  # connections accepted, not yet made (asyncio makes them in a task)
        self.load_failure = None
        self.direct_routes = None  # app.DirectRoutes: the paths answered without gunicorn's parser
        self.arrived = []  # (connection, request) complete in this pass of the loop, unanswered
        self.next_roster_look = 0.0  # the loop's time after which a request looks at the roster

    def init_process(self):
        # gunicorn's worker base class calls util.write_error for protocol errors; this process
        # is a worker of ours only, so replacing the function here changes nothing else
        util.write_error = write_json_error
        super().init_process()

    def load_wsgi(self):
        try:
            super().load_wsgi()
        except Exception as exc:
            reason = load_failure_reason(exc)
            serving = self.roster.ready_pids() - {os.getpid()}
            if not serving:
                raise  # nobody holds the model: gunicorn stops the server, as at the start
            self.load_failure = (f"a worker could not load the model: {reason}; "
                                 f"{len(serving)} of {self.cfg.workers} workers serve")
            self.roster.record_load_failure(self.load_failure)
            self.log.error("%s (retrying in %d s)", self.load_failure, MODEL_RETRY_SECONDS)
            return
        self.roster.mark_ready(os.getpid())
        self.direct_routes = getattr(self.wsgi, "costaware_direct", None)

    # -- the loop

    def run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop, sig != signal.SIGTERM)
        self.notify()
        self.loop.call_soon(self.tick)
        if self.load_failure is not None:  # take no connections; let gunicorn start another
            self.loop.call_later(MODEL_RETRY_SECONDS, self.loop.stop)
            self.loop.run_forever()
            sys.exit(1 if self.alive else 0)
        if self.threads > 1:
            self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="request")
        self.listeners = [listener.sock for listener in self.sockets]
        for sock in self.listeners:
            sock.setblocking(False)
        self.start_accepting()
        if not self.alive:  # SIGTERM while booting: gunicorn's handler only marked it; exit now
            self.loop.call_soon(self.loop.stop)
        try:
            self.loop.run_forever()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=False)

    def accept(self, listener) -> bool:
        """One connection per readiness event: every worker wakes for a new connection and the
        first free one takes it, so they share the clients (asyncio's own server would take all
        the waiting connections at once, leaving the other workers idle). Whether one was taken."""
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False  # another worker took it
        except OSError as exc:  # out of file descriptors, say: the connection waits in the queue
            self.log.warning("cannot accept a connection: %s", exc)
            return False
        sock.setblocking(False)
        self.arriving += 1
        self.loop.create_task(self.adopt(sock))
        return True

    async def adopt(self, sock):
        try:
            await self.loop.connect_accepted_socket(lambda: Connection(self), sock)
        except OSError:  # the client went away before the transport was made
            sock.close()
        finally:
            self.arriving -= 1

    def start_accepting(self):
        self.resume = None
        if not self.alive or self.listening:
            return
        for sock in self.listeners:
            self.loop.add_reader(sock.fileno(), self.accept, sock)
            self.listening.append(sock.fileno())

    def step_back(self):
        """No new connections for ``REBALANCE_PAUSE`` seconds: the client whose connection this
        worker closes to rebalance reconnects at once, and should reach another worker."""
        for fd in self.listening:
            self.loop.remove_reader(fd)
        self.listening = []
        if self.resume is not None:
            self.resume.cancel()
        self.resume = self.loop.call_later(REBALANCE_PAUSE, self.start_accepting)

    def tick(self):
        """The heartbeat gunicorn's master watches, and the check that the master still lives."""
        self.notify()
        heartbeat = getattr(getattr(self, "wsgi", None), "costaware_heartbeat", None)
        if heartbeat is not None:  # a multi-model endpoint: models unloaded elsewhere dropped here
            try:
                heartbeat()
            except OSError:  # the master is gone and removed its state directory
                pass
        if self.alive and self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.stop(False)
        self.loop.call_later(min(1.0, self.timeout), self.tick)

    def stop(self, quick: bool):
        """SIGTERM: no new connections, idle ones closed, requests under way answered (for at
        most the graceful timeout). SIGQUIT/SIGINT: at once."""
        if quick:
            self.loop.stop()
            return
        if not self.alive and not self.listening:
            return
        self.alive = False
        if self.resume is not None:
            self.resume.cancel()
        for fd in self.listening:
            self.loop.remove_reader(fd)
        self.listening = []
        for sock in self.listeners:  # connections the kernel queued before the signal are
            for _ in range(STOP_ACCEPT_LIMIT):  # answered, not reset when the socket closes
                if not self.accept(sock):
                    break
        for conn in list(self.connections):
            if not conn.buffer and not conn.busy and not conn.discard:
                # a request may be on its way (or unread in the kernel): it is answered, with
                # Connection: close, if it arrives within the linger
                conn.cancel_timer()
                conn.timer = self.loop.call_later(STOP_LINGER, conn.close)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        self.loop.call_soon(self.wait_for_drain, deadline)

    def wait_for_drain(self, deadline: float):
        if (not self.connections and not self.arriving) or time.monotonic() > deadline:
            self.loop.stop()
        else:
            self.loop.call_later(0.05, self.wait_for_drain, deadline)

    # -- requests

    def dispatch(self, conn: Connection, request: Arrived):
        now = self.loop.time()
        if now >= self.next_roster_look:  # a stat a request was 1.5% of a small model's request
            self.next_roster_look = now + ROSTER_LOOK_INTERVAL
            if self.roster.another_became_ready():
                self.epoch += 1
        if conn.epoch != self.epoch and self.alive:
            self.step_back()  # handle() closes this connection after the answer
        conn.busy = True
        if self.pool is None:  # answered with the others that arrive in this pass of the loop
            self.arrived.append((conn, request))
            if len(self.arrived) == 1:
                self.loop.call_soon(self.answer_arrived)
            return
        conn.transport.pause_reading()  # the next pipelined request waits in the kernel
        future = self.pool.submit(self.handle_together, [(conn, request)])
        future.add_done_callback(
            lambda done: self.loop.call_soon_threadsafe(conn.finished, *done.result()[0]))

    def answer_arrived(self):
        """The requests that arrived in the last pass of the loop, answered together (the rows
        of those to one model predicted in one call: invocation.respond_together), each then
        written to its connection."""
        arrived, self.arrived = self.arrived, []
        for (conn, _), answer in zip(arrived, self.handle_together(arrived)):
            conn.finished(*answer)

    def handle_together(self, arrived: list[tuple[Connection, Arrived]]
                        ) -> list[tuple[bytes, bool]]:
        """Complete requests, answered: (response bytes, whether the connection stays open) for
        each. Plainly formed ones to a path the app answers directly go the direct way
        (direct.py), together; any other through gunicorn's parser and the Flask app."""
        answers = [None] * len(arrived)
        if self.direct_routes is not None:
            plain = [(i, plain_request(*request)) for i, (_, request) in enumerate(arrived)]
            plain = [(i, request) for i, request in plain if request is not None]
            if plain:
                start = time.perf_counter()
                direct = self.direct_routes.answers([request for _, request in plain])
                elapsed = timedelta(seconds=time.perf_counter() - start)
                for (i, request), answered in zip(plain, direct):
                    if answered is not None:
                        answers[i] = self.direct_response(arrived[i][0], request, *answered,
                                                          elapsed)
        return [answer or self.handle(conn, request)
                for answer, (conn, request) in zip(answers, arrived)]

    def handle(self, conn: Connection, request: Arrived) -> tuple[bytes, bool]:
        """One complete request through gunicorn's parser and the app: (response bytes, whether
        the connection stays open)."""
        sock = CapturedSocket()
        req, resp = None, None
        try:
            req = next(http.RequestParser(self.cfg, [request.whole()], conn.peer))
            request_start = datetime.now()
            resp, environ = wsgi.create(req, sock, conn.peer, self.server_address, self.cfg)
            environ["wsgi.multithread"] = self.pool is not None
            self.nr += 1
            if not self.alive or not self.cfg.keepalive or conn.epoch != self.epoch:
                resp.force_close()  # rebalancing: the client reconnects, maybe elsewhere
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            return sock.data(), not resp.should_close()
        except Exception as exc:
            if resp is not None and resp.headers_sent:
                self.log.exception("Error handling request")
                return sock.data(), False
            sock.parts.clear()
            self.handle_error(req, sock, conn.peer, exc)
            return sock.data(), False

    def direct_response(self, conn: Connection, plain: PlainRequest, reply, fields: dict,
                        elapsed: timedelta) -> tuple[bytes, bool]:
        """A reply of the direct way as response bytes, with the access line the general way
        writes."""
        self.nr += 1
        keep = (not plain.close and self.alive and bool(self.cfg.keepalive)
                and conn.epoch == self.epoch)  # as the general way (rebalancing included)
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": plain.path, "REMOTE_ADDR": conn.peer[0],
                   "CONTENT_LENGTH": plain.headers["content-length"], **fields}
        target = plain.headers.get(TARGET_MODEL_HEADER)
        if target is not None:
            environ["HTTP_X_AMZN_SAGEMAKER_TARGET_MODEL"] = target
        self.log.access(SimpleNamespace(status=reply.status, sent=len(reply.body)), None, environ,
                        elapsed)
        return response_bytes(reply.status, reply.headers, reply.body, close=not keep), keep

    @property
    def server_address(self):
        return self.sockets[0].getsockname()
