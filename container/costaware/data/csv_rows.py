"""Ragged CSV rows: the first line whose number of values differs from the first line's.

pandas reads a short row as a row with missing values at its end (``1,0.3`` under a header of three
columns becomes ``1, 0.3, NaN``), so a file cut off mid-write would be trained on without a word;
a long row stops it with a message that names neither the file nor the counts. pandas reads each
file through a :class:`CheckedReader`, which counts the values of every line as the bytes pass (one
read of the file, one decompression of a gzip file); afterwards :meth:`CheckedReader.ragged` says
whether a line was ragged.

Values of a line = its commas + 1. Blank lines are left alone (the parser reads them as a row of
missing values, which the label check reports). Files without quotes are counted with numpy, block
by block, as pandas reads them (memory stays bounded whatever the file's size). Two kinds of file
are instead read a second time with :mod:`csv`, which knows their rules: once a quote character
appears (quoted fields may hold commas and line breaks; a quoted header is enough), and when no
"\n" comes for ``MAX_LINE_BYTES`` (lines ended by "\r" alone, or one enormous line).
"""

from __future__ import annotations

import csv
import gzip
import sys
from dataclasses import dataclass

import numpy as np

BLOCK_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 22  # a longer line without "\n": count with csv instead
NEWLINE, COMMA, CARRIAGE_RETURN, QUOTE = ord("\n"), ord(","), ord("\r"), b'"'


@dataclass(frozen=True)
class RaggedLine:
    line: int  # 1-based line in the file
    values: int
    reference_line: int  # the first non-blank line (the header, when there is one)
    reference_values: int
    unterminated: bool = False  # the file's last line, with no line break after it


def describe(path: str, ragged: RaggedLine, header: bool) -> str:
    """One line: the file, the line and both counts."""
    reference = ("the header" if header and ragged.reference_line == 1
                 else f"line {ragged.reference_line}")
    tail = (" (the last line, with no line break after it: was the file cut off while it was "
            "written?)" if ragged.unterminated else "")
    return (f"{path}: line {ragged.line} has {ragged.values} values where {reference} has "
            f"{ragged.reference_values}{tail}; every row needs the same number of values")


class CheckedReader:
    """A binary file object over ``path`` (gzip decompressed) that counts values per line as it is
    read. ``mode`` tells pandas that :meth:`read` returns bytes."""

    mode = "rb"

    def __init__(self, path: str, gzipped: bool = False):
        self.path = path
        self._opener = gzip.open if gzipped else open
        self._handle = self._opener(path, "rb")
        self._counter = _LineCounter()
        self._found: RaggedLine | None = None
        self._with_csv = False  # quotes or "\r" line ends: counted by a second read with csv
        self._at_end = False

    def read(self, size: int = -1) -> bytes:
        block = self._handle.read(size)
        if not block:
            self._at_end = True
        elif self._found is None and not self._with_csv:
            if QUOTE in block:
                self._with_csv = True
            else:
                self._found = self._counter.feed(block)
                self._with_csv = len(self._counter.pending) > MAX_LINE_BYTES
        return block

    def readable(self) -> bool:
        return True

    def __iter__(self):
        return iter(self._handle)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "CheckedReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ragged(self) -> RaggedLine | None:
        """The first ragged line among what was read (all of it, for the unterminated last line);
        a file with quotes or "\r" line ends is read again with :mod:`csv` for this."""
        if self._with_csv:
            return _first_ragged_with_csv(self.path, self._opener)
        if self._found is None and self._at_end:
            if b"\r" in self._counter.pending:  # a last line holding "\r" line ends
                return _first_ragged_with_csv(self.path, self._opener)
            self._found = self._counter.finish()
        return self._found


def first_ragged_line(path: str, gzipped: bool = False,
                      block_bytes: int = BLOCK_BYTES) -> RaggedLine | None:
    """The first non-blank line whose number of values differs from the first non-blank line's."""
    with CheckedReader(path, gzipped) as reader:
        while reader.read(block_bytes):
            pass
        return reader.ragged()


class _LineCounter:
    """Counts values per line over blocks of bytes; a line split between blocks waits for its end."""

    def __init__(self):
        self.pending = b""  # the start of a line whose end is in a later block
        self.lines_before = 0  # complete lines already counted
        self.reference: tuple[int, int] | None = None  # (line, values)

    def feed(self, block: bytes) -> RaggedLine | None:
        data = self.pending + block if self.pending else block
        cut = data.rfind(b"\n") + 1
        self.pending = data[cut:]
        if cut == 0:
            return None
        buf = np.frombuffer(data, np.uint8, count=cut)
        # separators in order; between two line breaks, the commas of one line
        separators = np.flatnonzero((buf == COMMA) | (buf == NEWLINE))
        is_break = buf[separators] == NEWLINE
        ends = separators[is_break]
        values = np.diff(np.flatnonzero(is_break), prepend=-1)  # commas + 1
        starts = np.concatenate(([0], ends[:-1] + 1))
        return self._check(buf, starts, ends, values, unterminated=False)

    def finish(self) -> RaggedLine | None:
        if not self.pending:
            return None
        buf = np.frombuffer(self.pending, np.uint8)
        values = np.array([np.count_nonzero(buf == COMMA) + 1])
        return self._check(buf, np.array([0]), np.array([buf.size]), values, unterminated=True)

    def _check(self, buf, starts, ends, values, unterminated: bool) -> RaggedLine | None:
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


def _first_ragged_with_csv(path: str, opener) -> RaggedLine | None:
    limit = csv.field_size_limit(sys.maxsize)  # a long quoted text cell is no reason to stop
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
    finally:
        csv.field_size_limit(limit)
    return None
