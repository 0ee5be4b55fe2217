"""The direct way for invocations: a plainly formed request read and answered without gunicorn's
parser, its WSGI environ or Flask, because for a small model they were most of a request's time
(``benchmarks/bench_serving.py --profile``: gunicorn's parser and environ 111 us of worker CPU a
single-row request, Flask and Werkzeug 124 us, against 298 us in XGBoost).

Only a request that gunicorn and Flask would read exactly as this module reads it goes this way
(:func:`plain_request`): ``POST`` on HTTP/1.1 to a path of unreserved characters (no query, no
escapes), a head under 4,000 bytes, header names of letters, digits and ``-`` and each at most once,
values of printable ASCII, a ``Content-Length`` that the body matches, no ``Transfer-Encoding``,
no ``Expect``, ``Connection`` absent or ``keep-alive`` or ``close``. Anything else takes the general
way (worker.py hands it to gunicorn and the app), which says what is wrong with it. The app says
which paths it answers directly (app.py ``DirectRoutes``: ``/invocations``, and a multi-model
endpoint's ``/models/{name}/invoke``) and answers them with the same functions its Flask routes
call, so both ways give the same status, headers and body (tests/test_direct_path.py sends
requests both ways and compares the bytes and the access-log lines).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache

from gunicorn import SERVER, util
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.utils import get_content_type

MAX_PLAIN_HEAD = 4000  # under gunicorn's limits (a 4,094-byte request line, 8,190 a header line)
REQUEST_LINE = re.compile(rb"POST (/[A-Za-z0-9._~/-]*) HTTP/1\.1")
HEADER_LINE = re.compile(rb"([A-Za-z0-9-]+):[ \t]*((?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?)"
                         rb"[ \t]*")
CONNECTION_VALUES = {b"keep-alive": False, b"close": True}  # whether the client asks to close


@dataclass(frozen=True)
class PlainRequest:
    """A request the direct way reads: its path, headers (lower-case names), body and whether
    the client asked to close the connection."""

    path: str
    headers: "Headers"
    body: bytes
    close: bool


class Headers(dict):
    """A request's headers by lower-case name; ``get`` takes any case, as Werkzeug's does."""

    def get(self, name: str, default=None):
        return dict.get(self, name.lower(), default)


def plain_request(request: bytes, body: bytes | None = None) -> PlainRequest | None:
    """``request`` (a complete request: head and body; or, with ``body``, its head up to and
    including the blank line) read, or ``None`` if it is not plainly formed (see the module's
    docstring) and must go the general way."""
    head_end = request.find(b"\r\n\r\n", 0, MAX_PLAIN_HEAD)
    if head_end < 0 or (body is not None and head_end != len(request) - 4):
        return None
    if body is None:
        body = request[head_end + 4:]
    lines = request[:head_end].split(b"\r\n")
    line = REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        return None
    headers = Headers()
    for raw in lines[1:]:
        field = HEADER_LINE.fullmatch(raw)
        if field is None:
            return None
        name = field[1].lower().decode("ascii")
        if name in headers:
            return None
        headers[name] = field[2].decode("ascii")
    length = headers.get("content-length")
    if ("transfer-encoding" in headers or "expect" in headers or length is None
            or not length.isdigit() or len(body) != int(length)):
        return None
    close = CONNECTION_VALUES.get(headers.get("connection", "keep-alive").lower().encode())
    if close is None:
        return None
    return PlainRequest(line[1].decode("ascii"), headers, body, close)


@lru_cache(maxsize=64)
def content_type_header(mimetype: str) -> str:
    """The ``Content-Type`` a response of ``mimetype`` carries, as Flask's ``Response`` writes it
    (a ``charset`` added to text types): both ways, and data capture, say the same."""
    return get_content_type(mimetype, "utf-8")


@lru_cache(maxsize=64)
def status_line(status: int) -> bytes:
    """As Werkzeug words it (``400 BAD REQUEST``), which the general way sends."""
    return f"HTTP/1.1 {status} {HTTP_STATUS_CODES.get(status, 'unknown').upper()}\r\n".encode()


class HttpDate:
    """The ``Date`` header's value, made once a second (gunicorn formats it for every answer)."""

    def __init__(self):
        self.second = None
        self.value = b""

    def __call__(self) -> bytes:
        second = int(time.time())
        if second != self.second:
            self.second, self.value = second, util.http_date(second).encode("ascii")
        return self.value


http_date = HttpDate()


def response_bytes(status: int, headers: dict, body: bytes, close: bool) -> bytes:
    """A whole response as gunicorn writes the Flask app's: its own headers first (``Server``,
    ``Date``, ``Connection``), then ``Content-Type``, ``Content-Length`` and the app's others in
    their order."""
    parts = [status_line(status), b"Server: ", SERVER.encode(), b"\r\nDate: ", http_date(),
             b"\r\nConnection: ", b"close" if close else b"keep-alive",
             b"\r\nContent-Type: ", content_type_header(headers["Content-Type"]).encode("latin-1"),
             b"\r\nContent-Length: ", str(len(body)).encode()]
    for name, value in headers.items():
        if name != "Content-Type":
            parts += (b"\r\n", name.encode("latin-1"), b": ", value.encode("latin-1"))
    parts += (b"\r\n\r\n", body)
    return b"".join(parts)
