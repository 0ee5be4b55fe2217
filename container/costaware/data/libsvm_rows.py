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
from functools import cached_property

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
_PLACES = [np.uint16(10 ** p) if p < 4 else np.uint32(10 ** p) if p < 9 else np.int64(10 ** p)
           for p in range(_INDEX_DIGITS)]
_LEAD = _INDEX_DIGITS + 2  # blanks before the text: an index's digits and the byte before them
# The uniform layout's CSV (_read_uniform): the blanks inside a line and the colons made commas, the
# line ends kept, a byte outside the alphabet made NUL (which no valid text holds)
_CELLS = bytes(ord(",") if b in b" \t:" else b if b in _BULK_ALPHABET else 0 for b in range(256))
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
    """Rows as their entries, row after row: entry ``k`` is ``values[k]`` in column
    ``columns[k]``, each row's entries in the order of its pairs."""

    labels: list[str] | None  # each row's label text (None: the rows carry none)
    lengths: np.ndarray | int  # int64, each row's number of entries; an int: every row's
    columns: np.ndarray  # int64, 0-based column of each entry (its index - 1)
    values: np.ndarray  # float64
    count: int  # rows

    @cached_property
    def rows(self) -> np.ndarray:
        """int64, the row of each entry (made when asked: the dense rows of a request need not)."""
        return np.repeat(np.arange(self.count, dtype=np.int64), self.lengths)

    @property
    def width(self) -> int:
        """Columns up to the largest index used."""
        return int(self.columns.max()) + 1 if len(self.columns) else 0

    def dense(self, width: int) -> np.ndarray:
        """``(count, width)`` float64, NaN where a row has no entry. When every row holds the
        columns ``0 .. width - 1`` in order, the values themselves as the rows (no copy: each array
        the size of the rows is fresh memory, which the kernel hands over a page at a time)."""
        if isinstance(self.lengths, int) and self.lengths:
            columns = self.columns.reshape(self.count, self.lengths)
            if (columns == columns[0]).all():  # the same columns in each row: a block
                block = self.values.reshape(self.count, self.lengths)
                if self.lengths == width and np.array_equal(columns[0], np.arange(width)):
                    return block
                out = np.full((self.count, width), np.nan)
                out[:, columns[0]] = block
                return out
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
    lengths: list[int] = []
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
            columns.append(index - 1)
            values.append(value)
        lengths.append(len(pairs))
    return SparseRows(label_texts, np.array(lengths, dtype=np.int64),
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
      18 digits between it and the blank before it (:func:`_read_indices`; any other byte there, a
      second colon of the field included: ``None``). A line's first field is a pair when a pair
      starts at the line's first byte that is not a blank, else it is the line's label.
    * Numbers: the labels and values are read by Arrow's CSV reader (``arrow_numbers``: correctly
      rounded, spellings ``float()`` takes only). When every line has the first line's shape (its
      number of pairs, a label or none, one blank between fields), as a dense matrix's rows do, the
      text is that CSV as it stands, blanks and colons made commas (:func:`_read_uniform`).
      Otherwise the text with every index and colon blanked holds, in order, each line's label (if
      any), then its pairs' values: ``arrow_numbers.read_numbers`` reads them; a text it refuses
      goes to ``np.fromstring``, CPython's correctly rounded ``PyOS_string_to_double``, which is
      ``float()`` less ``_`` and non-ASCII digits (refused by the rules too; a NaN's sign aside,
      missing either way), and stops at a field that is not one whole number. One number per
      label and value read is then each of them a number, and no other field: a second field
      without a colon would be one number more.
    * Index 0, beyond ``width`` or twice in a line, a value beyond float32: ``None``.
    """
    if isinstance(text, str) and not text.isascii():
        return None
    data = text.encode("ascii") if isinstance(text, str) else text
    end = len(data)
    while end and data[end - 1] in b"\r\n":  # line ends at the very end: ignored
        end -= 1
    cells = data.translate(_CELLS)  # (whole: a slice would be a copy more)
    if b"\0" in cells:  # a byte outside the alphabet (ASCII only, too)
        return None
    led = np.empty(_LEAD + end, dtype=np.uint8)
    led[:_LEAD] = _BLANK
    led[_LEAD:] = np.frombuffer(data, dtype=np.uint8, count=end)
    padded = led[_LEAD - 1:]  # the text after a blank: a blank before the first field
    colons = np.flatnonzero(padded == _COLON)
    if len(colons) and (colons[-1] == len(padded) - 1 or (padded[1:][colons] <= _BLANK).any()):
        return None  # a pair without a value
    read = _read_indices(led, colons)
    if read is None:
        return None
    index, digits = read
    uniform = _read_uniform(cells, end, padded, colons, digits)
    if uniform is not None:
        values, count, labelled = uniform
        if labels == "required" and not labelled:
            return None  # lines without their labels
        lengths = len(colons) // count
        lines = None
    else:
        lines = _read_lines(padded, colons, digits, labels)
        if lines is None:
            return None
        lengths, values, count, first, line_ends = lines
    if len(index) and (index.min() == 0 or (width is not None and index.max() > width)
                       or (values > F32_MAX).any() or (values < -F32_MAX).any()):  # (not NaN)
        return None
    label_texts = None
    if labels == "required":
        if lines is None:
            newlines = np.flatnonzero(padded == _NEWLINE)
            line_ends = np.append(newlines, len(padded))
            first = np.concatenate(([1], newlines + 1))  # (no line starts with a blank)
        ends = _skip(padded, first, line_ends, blanks=False)
        if ends is None:
            return None
        label_texts = [data[start - 1:stop - 1].decode("ascii")
                       for start, stop in zip(first.tolist(), ends.tolist())]
    index -= 1  # the columns (in place: one array of the index's size less)
    rows = SparseRows(label_texts, lengths, index, values, count)
    return None if _repeats_an_index(rows) else rows


def _read_indices(led: np.ndarray, colons: np.ndarray):
    """Each colon's index, the digits back from it to the blank before it, and their number
    (``uint8``); ``None`` when a byte before a colon is neither a digit nor a blank, or an index is
    empty or has more than 18 digits. ``led``: the text after ``_LEAD`` blanks; ``colons``: their
    positions counted from the last of those blanks (as in ``padded``).

    A place at a time for every colon at once: each place a gather of one byte a colon (from
    ``led`` shifted, so that no array of positions is made) and a few whole-array steps, the colons
    whose index ended carried along masked (2.4 ms for a 6 MiB request's 647,550 indices of 1 or
    2 digits; keeping only the colons whose index goes on at each place took 11.8 ms). The arrays
    of a colon's size are few and small: each new one is fresh memory, which the kernel hands over
    a page at a time."""
    index = np.zeros(len(colons), dtype=np.int64)
    digits = np.zeros(len(colons), dtype=np.uint8)
    digit = np.empty(len(colons), dtype=np.uint8)
    going = None  # which indices go on to this place (None: all)
    for place in range(_INDEX_DIGITS + 1):
        byte = led[_LEAD - 2 - place:][colons]  # the byte place + 1 before each colon
        np.subtract(byte, np.uint8(_ZERO), out=digit)  # uint8: bytes below "0" wrap above 9
        more = digit <= 9
        if going is None:
            if not more.all():
                return None  # an empty index, or one that ends in another byte
        else:
            more &= going
            if (byte[going & ~more] > _BLANK).any():
                return None  # the index starts after a byte that is not a blank
            if not more.any():
                return index, digits
        if place == _INDEX_DIGITS:
            return None  # an index of more than 18 digits
        digit *= more
        index += digit * _PLACES[place]  # (of the smallest type that holds 9 at that place)
        digits += more
        going = more
    raise AssertionError("unreachable")  # pragma: no cover


def _read_uniform(cells: bytes, end: int, padded: np.ndarray, colons: np.ndarray,
                  digits: np.ndarray):
    """The values of a text whose lines all have its first line's shape, the rows of a dense
    matrix (the same number of pairs, a label or none, one blank between fields, no blank before
    or after them): ``(values, lines, labelled)``, or ``None`` when they do not (the line-by-line
    layout then reads the text).

    ``cells`` is the text with its blanks and colons made commas: a CSV of ``L + 2P`` cells a
    line (``L`` 1 with a label, ``P`` pairs), which Arrow reads as it stands, the label and value
    columns only (the indices were read). It refuses a line of another number of cells, an empty
    one too. That each line is its label (if any), then its pairs: a pair's index starts after a
    blank (:func:`_read_indices`), so no two colons follow one another; with ``P`` colons in each
    line (``P`` times Arrow's lines in all, and no line holds more: it would need more blanks than
    its cells leave) and ``L + P - 1`` blanks, each blank is the one before an index, and with a
    label (``L`` 1) no index starts a line."""
    first_end = cells.find(b"\n", 0, end)
    first_end = end if first_end < 0 else first_end
    pairs = int(np.searchsorted(colons, first_end + 1))  # (padded is the text one byte on)
    if not pairs:
        return None
    labelled = int((padded[1:colons[0]] <= _BLANK).any())
    if cells.find(b"\r", 0, end) >= 0 and \
            cells.count(b"\r", 0, end) != cells.count(b"\r\n", 0, end):
        return None  # Arrow would end a line at a lone CR, a blank inside a libsvm line
    cell_count = labelled + 2 * pairs
    numbers = arrow_numbers.read_cells(memoryview(cells)[:end], cell_count,
                                       range(1 - labelled, cell_count, 2))
    if numbers is None or len(colons) != pairs * len(numbers):
        return None
    if labelled:
        before = colons - digits - 1  # the byte before each index
        if (padded[before] == _NEWLINE).any():  # (the first line has its label)
            return None  # a line that starts with a pair: a line without its label
        numbers = numbers[:, 1:]
    return numbers.reshape(-1), len(numbers), labelled


def _read_lines(padded: np.ndarray, colons: np.ndarray, digits: np.ndarray, labels: str):
    """The line-by-line layout: ``(lengths, values, lines, first, line_ends)`` (each line's first
    field and end), or ``None``. The text with every index and colon blanked holds each line's
    label (if any), then its pairs' values, which ``arrow_numbers.read_numbers`` reads."""
    numbers = padded.copy()
    numbers[colons] = _BLANK
    for place in range(int(digits.max()) if len(digits) else 0):
        numbers[colons[digits > place] - (place + 1)] = _BLANK
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
    return np.diff(np.append(firsts, len(colons))), values, len(first), first, line_ends


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


def _repeats_an_index(rows: SparseRows) -> bool:
    """Whether a row gives a column twice."""
    columns = rows.columns
    if isinstance(rows.lengths, int):
        block = columns.reshape(rows.count, rows.lengths)
        if (block[:, 1:] > block[:, :-1]).all():
            return False  # columns rise along every row, as libsvm writers put them
    else:
        same_line = rows.rows[1:] == rows.rows[:-1]
        if not (same_line & (columns[1:] <= columns[:-1])).any():
            return False
    order = np.lexsort((columns, rows.rows))
    line, columns = rows.rows[order], columns[order]
    return bool(((line[1:] == line[:-1]) & (columns[1:] == columns[:-1])).any())
