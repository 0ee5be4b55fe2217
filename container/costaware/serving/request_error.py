"""The error a request gets instead of an answer: an HTTP status, a one-line message, extra JSON."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server will not answer; ``status`` is the HTTP status, ``details`` extra JSON."""

    def __init__(self, status: int, message: str, **details):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def bad(message: str, **details) -> RequestError:
    """A 400: the body cannot be used as sent."""
    return RequestError(400, message, **details)
