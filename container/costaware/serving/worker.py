"""gunicorn's gthread worker, with the errors gunicorn answers itself in the app's JSON form.

A request gunicorn cannot parse (a control character in a header value, a malformed request line,
an oversized header, ...) never reaches the Flask app: gunicorn answers it with a small HTML page.
Every error of this server is ``{"error": "<one line>", "status": N}`` instead (docs/serving.md),
so this worker swaps gunicorn's error writer for one that writes that JSON. Imports nothing heavy:
the gunicorn master loads this class before any worker exists.
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker as _GthreadWorker


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error``: the same status line, a JSON body."""
    detail = " ".join(str(mesg or "").split())  # one line
    if status_int >= 500:
        message = f"internal error: {detail or reason}; the request was not processed"
    else:
        message = f"malformed HTTP request: {detail or reason}"
    body = json.dumps({"error": message[:1000], "status": status_int}).encode("ascii")
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class ThreadWorker(_GthreadWorker):
    """gthread, answering gunicorn's own protocol errors as JSON."""

    def init_process(self):
        # gunicorn's worker base class calls util.write_error for protocol errors; this process
        # is a worker of ours only, so replacing the function here changes nothing else
        util.write_error = write_json_error
        super().init_process()
