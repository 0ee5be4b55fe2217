"""Ragged CSV rows: the first line whose number of values differs from the first line's.

pandas reads a short row as a row with missing values at its end (``1,0.3`` under a header of three
columns becomes ``1, 0.3, NaN``), so a file cut off mid-write would be trained on without a word;
a long row stops it with a message that names neither the file nor the counts. This module finds
the first such line before pandas reads the file.

Values of a line = its commas + 1. Blank lines are left alone (the parser reads them as a row of
missing values, which the label check reports). Quoted fields may hold commas and line breaks, so a
file with a quote character is read with :mod:`csv`, which knows them; any other file is counted with
numpy, a block of about 16 MiB at a time (memory stays bounded whatever the file's size).
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass

import numpy as np

BLOCK_BYTES = 1 << 24
NEWLINE, COMMA, CARRIAGE_RETURN, QUOTE = ord("\n"), ord(","), ord("\r"), b'"'


@dataclass(frozen=True)
class RaggedLine:
    line: int  # 1-based line in the file
    values: int
    reference_line: int  # the first non-blank line (the header, when there is one)
    reference_values: int
    unterminated: bool = False  # the file's last line, with no line break after it


def first_ragged_line(path: str, gzipped: bool = False,
                      block_bytes: int = BLOCK_BYTES) -> RaggedLine | None:
    """The first non-blank line whose number of values differs from the first non-blank line's."""
    opener = gzip.open if gzipped else open
    counter = _LineCounter()
    with opener(path, "rb") as handle:
        while block := handle.read(block_bytes):
            if QUOTE in block:
                return _first_ragged_quoted(path, opener)
            found = counter.feed(block)
            if found:
                return found
    return counter.finish()


def describe(path: str, ragged: RaggedLine, header: bool) -> str:
    """One line: the file, the line and both counts."""
    reference = ("the header" if header and ragged.reference_line == 1
                 else f"line {ragged.reference_line}")
    tail = (" (the last line, with no line break after it: was the file cut off while it was "
            "written?)" if ragged.unterminated else "")
    return (f"{path}: line {ragged.line} has {ragged.values} values where {reference} has "
            f"{ragged.reference_values}{tail}; every row needs the same number of values")


class _LineCounter:
    """Counts values per line over blocks of bytes; a line split between blocks waits for its end."""

    def __init__(self):
        self.pending = b""  # the start of a line whose end is in a later block
        self.lines_before = 0  # complete lines already counted
        self.reference: tuple[int, int] | None = None  # (line, values)

    def feed(self, block: bytes) -> RaggedLine | None:
        data = self.pending + block
        cut = data.rfind(b"\n") + 1
        self.pending = data[cut:]
        if cut == 0:
            return None
        buf = np.frombuffer(data, np.uint8, count=cut)
        ends = np.flatnonzero(buf == NEWLINE)  # every line of the block ends with "\n"
        starts = np.concatenate(([0], ends[:-1] + 1))
        return self._check(buf, starts, ends, unterminated=False)

    def finish(self) -> RaggedLine | None:
        if not self.pending:
            return None
        buf = np.frombuffer(self.pending, np.uint8)
        return self._check(buf, np.array([0]), np.array([buf.size]), unterminated=True)

    def _check(self, buf, starts, ends, unterminated: bool) -> RaggedLine | None:
        commas = np.flatnonzero(buf == COMMA)
        values = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
        lengths = ends - starts
        first_byte = buf[np.minimum(starts, buf.size - 1)]
        filled = (lengths > 1) | ((lengths == 1) & (first_byte != CARRIAGE_RETURN))
        if self.reference is None and filled.any():
            j = int(np.argmax(filled))
            self.reference = (self.lines_before + j + 1, int(values[j]))
        if self.reference is not None:
            bad = filled & (values != self.reference[1])
            if bad.any():
                j = int(np.argmax(bad))
                return RaggedLine(self.lines_before + j + 1, int(values[j]), *self.reference,
                                  unterminated=unterminated)
        self.lines_before += len(starts)
        return None


def _first_ragged_quoted(path: str, opener) -> RaggedLine | None:
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            reference = None
            line = 1  # where the next record starts (a quoted field may span lines)
            for row in reader:
                if row:
                    if reference is None:
                        reference = (line, len(row))
                    elif len(row) != reference[1]:
                        return RaggedLine(line, len(row), *reference)
                line = reader.line_num + 1
    except (UnicodeDecodeError, csv.Error):
        return None  # not readable as CSV text: the parser's own message says why
    return None
