"""libsvm text -> rows; the one reader of ``text/libsvm`` for training channels and requests.

A line is ``LABEL INDEX:VALUE INDEX:VALUE ...`` (spaces or tabs between fields). Indices are
1-based, as the SageMaker XGBoost container's users write them: index ``i`` is column ``i - 1`` of
the row (the ``i``-th feature column; in a request, the ``i``-th request column, as in a CSV line).
An index left out is a missing value (NaN), as XGBoost reads a sparse row; ``nan`` is missing too.

Refused, each naming the line and the pair: a pair that is not ``INDEX:VALUE``, an index that is
not a whole number >= 1 (index 0: the built-in container's training reader, XGBoost's, would take
it as the first column while its ``/invocations`` shifts 1-based rows down by one: here one rule
holds for both), an index given twice in a line (the built-in's request reader would add the two
values), an index beyond ``width``, a value that is not a plain number, an infinite one or one
beyond float32's range (XGBoost reads float32). A wholly empty line is an error, not a row of
missing values; line ends at the very end of the text are ignored. A label with an instance weight
(``LABEL:WEIGHT``) is refused: costaware weighs a row by its costs (cost columns).

Two readers, one set of rules: :func:`_parse_bulk` reads a large text in whole-array numpy steps
(``benchmarks/bench_decoding.py`` times both on a 6 MiB request) and gives up on anything
unusual; :func:`_parse_lines`, line by line, reads the rest and is the one that explains a
refusal. The bulk reader accepts only texts the line reader accepts, with the same rows
(``tests/test_libsvm_rows.py`` holds them to it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import arrow_numbers

F32_MAX = float(np.finfo(np.float32).max)  # XGBoost reads float32: beyond this is infinite
# Texts shorter than this are read line by line: numpy's fixed cost per call outweighs its speed
BULK_FROM = 16 * 1024
# The bulk reader's alphabet: the digits and letters of decimal numbers and "nan", the pair's colon,
# the blanks between fields and the line end. Anything else (a word label, "inf", a non-ASCII or
# another whitespace character) goes to the line reader.
_BULK_ALPHABET = b"0123456789.+-eEnNaA: \t\r\n"
_BLANK = 32  # in the alphabet, the bytes up to the space are the blanks and the line end
_COLON, _NEWLINE, _ZERO = ord(":"), ord("\n"), ord("0")
_INDEX_DIGITS = 18  # int64 holds every index of up to 18 digits
_INDEX_LIMIT = 10 ** _INDEX_DIGITS
_SCAN_LIMIT = 64  # labels and indents longer than this go to the line reader (one step a byte)
# A channel's ContentType for libsvm, as the built-in XGBoost container takes it (the bare name too;
# requests' media types are the server's: serving/media_types.py)
CHANNEL_TYPES = ("text/libsvm", "text/x-libsvm", "libsvm")


class LibsvmError(ValueError):
    """A line that is not libsvm; ``line`` is 1-based, ``pair`` 1-based or ``None``."""

    def __init__(self, line: int, message: str, pair: int | None = None):
        where = f"line {line}" + (f", pair {pair}" if pair is not None else "")
        super().__init__(f"{where}: {message}")
        self.line = line
        self.pair = pair


@dataclass(frozen=True)
class SparseRows:
    labels: list[str] | None  # each row's label text (None: the rows carry none)
    rows: np.ndarray  # int64, the row of each entry
    columns: np.ndarray  # int64, 0-based column of each entry (its index - 1)
    values: np.ndarray  # float64
    count: int  # rows

    @property
    def width(self) -> int:
        """Columns up to the largest index used."""
        return int(self.columns.max()) + 1 if len(self.columns) else 0

    def dense(self, width: int) -> np.ndarray:
        """``(count, width)`` float64, NaN where a row has no entry."""
        out = np.full((self.count, width), np.nan)
        out[self.rows, self.columns] = self.values
        return out


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _number(text: str) -> float:
    if not text.isascii() or "_" in text:  # float() would take "1_0" and non-ASCII digits
        raise ValueError
    return float(text)


def parse(text: str | bytes, labels: str, width: int | None = None,
          width_means: str = "") -> SparseRows:
    """Parse libsvm ``text`` (or its UTF-8 bytes, as a request body comes: a large body is then
    read without a decoding). ``labels``: ``"required"`` (training: the first field of every line
    is its label) or ``"optional"`` (requests: a line may start with a label, which is read as a
    number and not used, so that a labelled libsvm file can be sent as it is). ``width``: the
    largest index allowed (``None``: any); ``width_means``: what those columns are, for the
    message of an index beyond them."""
    if len(text) >= BULK_FROM:
        rows = _parse_bulk(text, labels, width)
        if rows is not None:
            return rows
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return _parse_lines(text, labels, width, width_means)


def _parse_lines(text: str, labels: str, width: int | None, width_means: str) -> SparseRows:
    """:func:`parse` line by line, pair by pair: the reference, and the reader that explains."""
    lines = text.rstrip("\r\n").split("\n")
    label_texts: list[str] | None = [] if labels == "required" else None
    rows: list[int] = []
    columns: list[int] = []
    values: list[float] = []
    for n, line in enumerate(lines):
        number = n + 1
        fields = line.split()
        if not fields:
            raise LibsvmError(number, "empty line; each line is one row (LABEL INDEX:VALUE ...)")
        first = fields[0]
        if labels == "required":
            if ":" in first:
                raise LibsvmError(number, f"the first field {_show(first)} is not a label: a "
                                          "line starts with its label, then INDEX:VALUE pairs (a "
                                          "label with an instance weight, LABEL:WEIGHT, is not "
                                          "read: give rows their costs in cost columns)")
            label_texts.append(first)
            pairs = fields[1:]
        elif ":" not in first:
            if not _is_number(first):
                raise LibsvmError(number, f"{_show(first)} is neither a label (a number) nor "
                                          "an INDEX:VALUE pair")
            pairs = fields[1:]
        else:
            pairs = fields
        seen: set[int] = set()
        for k, pair in enumerate(pairs, 1):
            index_text, colon, value_text = pair.partition(":")
            if not colon or not index_text or not value_text or ":" in value_text:
                raise LibsvmError(number, f"{_show(pair)} is not INDEX:VALUE", k)
            if not (index_text.isascii() and index_text.isdigit()):
                raise LibsvmError(number, f"{_show(pair)}: the index {_show(index_text)} is not "
                                          "a whole number >= 1", k)
            index = int(index_text)
            if index == 0:
                raise LibsvmError(number, f"{_show(pair)}: index 0; indices are 1-based "
                                          "(1 is the first feature column)", k)
            if width is not None and index > width:
                raise LibsvmError(number, f"{_show(pair)}: index {index} is beyond the "
                                          f"model's {width} columns{width_means}", k)
            if index >= _INDEX_LIMIT:  # no matrix has that many columns; int64 would overflow
                raise LibsvmError(number, f"{_show(pair)}: index {_show(index_text)} is beyond "
                                          f"any column a matrix can hold (at most "
                                          f"{_INDEX_DIGITS} digits)", k)
            if index in seen:
                raise LibsvmError(number, f"{_show(pair)}: index {index} is given twice in "
                                          "the line", k)
            seen.add(index)
            try:
                value = _number(value_text)
            except ValueError:
                raise LibsvmError(number, f"{_show(pair)}: {_show(value_text)} is not a number "
                                          "(leave the pair out for a missing value)", k) from None
            if abs(value) > F32_MAX:
                what = "is infinite" if value in (np.inf, -np.inf) else \
                    "is beyond float32's range (about 3.4e38)"
                raise LibsvmError(number, f"{_show(pair)}: {value:g} {what}; send a finite "
                                          "number, or leave the pair out for a missing value", k)
            rows.append(n)
            columns.append(index - 1)
            values.append(value)
    return SparseRows(label_texts, np.array(rows, dtype=np.int64),
                      np.array(columns, dtype=np.int64), np.array(values, dtype=np.float64),
                      len(lines))


def _is_number(text: str) -> bool:
    try:
        _number(text)
    except ValueError:
        return False
    return True


def _parse_bulk(text: str | bytes, labels: str, width: int | None) -> SparseRows | None:
    """What :func:`_parse_lines` returns for ``text``, in whole-array steps; ``None`` when the text
    is not plainly valid libsvm in the bulk alphabet (the line reader then decides, and explains).

    * Fields: the text is ASCII of ``_BULK_ALPHABET``, whose blanks (space, tab, CR) and line end
      are its bytes <= 32: the fields are those ``str.split`` finds in each line.
    * Pairs: each colon has a value (a byte after it that is not a blank) and an index, the 1 to
      18 digits between it and the blank before it (any other byte there, a second colon of the
      field included: ``None``). A line's first field is a pair when a pair starts at the line's
      first byte that is not a blank, else it is the line's label.
    * Numbers: the text with every index and colon blanked holds, in order, each line's label (if
      any), then its pairs' values. Arrow's CSV reader reads them (``arrow_numbers.read_numbers``:
      correctly rounded, spellings ``float()`` takes only; 2.3x as fast as ``np.fromstring`` on a
      6 MiB request); a text it refuses goes to ``np.fromstring``, CPython's correctly rounded
      ``PyOS_string_to_double``, which is ``float()`` less ``_`` and non-ASCII digits (refused by
      the rules too; a NaN's sign aside, missing either way), and stops at a field that is not
      one whole number. One number per label and value read is then each of them a number, and
      no other field: a second field without a colon would be one number more.
    * Index 0, beyond ``width`` or twice in a line, a value beyond float32: ``None``.
    """
    if isinstance(text, str) and not text.isascii():
        return None
    data = text.encode("ascii") if isinstance(text, str) else text
    if data.translate(None, _BULK_ALPHABET):  # (ASCII only, too)
        return None
    end = len(data)
    while end and data[end - 1] in b"\r\n":  # line ends at the very end: ignored
        end -= 1
    padded = np.empty(end + 1, dtype=np.uint8)
    padded[0] = _BLANK  # a blank before the first field
    padded[1:] = np.frombuffer(data, dtype=np.uint8, count=end)
    colons = np.flatnonzero(padded == _COLON)
    if len(colons) and (colons[-1] == len(padded) - 1 or (padded[colons + 1] <= _BLANK).any()):
        return None  # a pair without a value
    scanned = _scan_indices(padded, colons)
    if scanned is None:
        return None
    index, numbers = scanned
    newlines = np.flatnonzero(padded == _NEWLINE)
    line_starts = np.concatenate(([1], newlines + 1))
    line_ends = np.append(newlines, len(padded))
    first = _skip(padded, line_starts, line_ends, blanks=True)  # each line's first field
    if first is None or (first == line_ends).any():
        return None  # an empty line, or one indented further than the scan goes
    # a first field that is a pair had its first byte, an index digit, blanked
    opens_with_pair = numbers[first] == _BLANK
    labelled = ~opens_with_pair
    if labels == "required" and opens_with_pair.any():
        return None  # a line without its label
    numbers_read = arrow_numbers.read_numbers(numbers)
    if numbers_read is None:  # a spelling Arrow does not take: CPython's conversion decides
        try:
            numbers_read = np.fromstring(numbers.tobytes(), sep=" ")
        except ValueError:
            return None
    if len(numbers_read) != len(colons) + np.count_nonzero(labelled):
        return None
    firsts = np.searchsorted(colons, line_starts)  # each line's first pair
    values = numbers_read
    if labelled.any():
        is_label = np.zeros(len(numbers_read), dtype=bool)
        is_label[(firsts + np.cumsum(labelled) - labelled)[labelled]] = True
        values = numbers_read[~is_label]
    if len(index) and (index.min() == 0 or (width is not None and index.max() > width)
                       or (np.abs(values) > F32_MAX).any()):  # NaN (missing) is not > F32_MAX
        return None
    rows = np.repeat(np.arange(len(first), dtype=np.int64),
                     np.diff(np.append(firsts, len(colons))))
    if _repeats_an_index(rows, index):
        return None
    label_texts = None
    if labels == "required":
        ends = _skip(padded, first, line_ends, blanks=False)
        if ends is None:
            return None
        label_texts = [data[start - 1:stop - 1].decode("ascii")
                       for start, stop in zip(first.tolist(), ends.tolist())]
    return SparseRows(label_texts, rows, index - 1, values, len(first))


def _scan_indices(padded: np.ndarray, colons: np.ndarray):
    """Each colon's index (the digits back to the blank before it, read a place at a time for
    every colon at once) and ``padded`` with the indices and colons blanked; ``None`` when a byte
    before a colon is neither a digit nor a blank, or an index is empty or has more than 18
    digits."""
    index = np.empty(len(colons), dtype=np.int64)
    numbers = padded.copy()
    numbers[colons] = _BLANK
    scanning = None  # which colons' indices go on further back (None: all of them)
    at, value = colons, None
    for place in range(_INDEX_DIGITS + 1):
        at = at - 1
        byte = padded[at]
        digit = byte - _ZERO  # uint8: the bytes below "0" wrap round above 9
        more = digit <= 9
        if not more.all():
            ended = ~more
            if place == 0 or (byte[ended] > _BLANK).any():
                return None
            index[ended if scanning is None else scanning[ended]] = value[ended]
            scanning = np.flatnonzero(more) if scanning is None else scanning[more]
            at, digit, value = at[more], digit[more], value[more]
        if not at.size:
            return index, numbers
        if place == _INDEX_DIGITS:
            return None
        if value is None:
            value = digit.astype(np.int64)
        else:
            value += digit * np.int64(10 ** place)
        numbers[at] = _BLANK
    raise AssertionError("unreachable")  # pragma: no cover


def _skip(padded: np.ndarray, at: np.ndarray, ends: np.ndarray, blanks: bool) -> np.ndarray | None:
    """Each position moved on past the blanks (``blanks``) or the other bytes, up to its line's
    end; ``None`` when one would move more than ``_SCAN_LIMIT`` bytes."""
    at = at.copy()
    alive = np.flatnonzero(at < ends)
    for _ in range(_SCAN_LIMIT + 1):
        if not alive.size:
            return at
        alive = alive[(padded[at[alive]] <= _BLANK) == blanks]
        at[alive] += 1
        alive = alive[at[alive] < ends[alive]]
    return None


def _repeats_an_index(rows: np.ndarray, index: np.ndarray) -> bool:
    """Whether a line gives an index twice (``rows``: each pair's line, in order)."""
    same_line = rows[1:] == rows[:-1]
    if not (same_line & (index[1:] <= index[:-1])).any():
        return False  # indices rise along every line, as libsvm writers put them
    order = np.lexsort((index, rows))
    rows, index = rows[order], index[order]
    return bool(((rows[1:] == rows[:-1]) & (index[1:] == index[:-1])).any())
