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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32_MAX = float(np.finfo(np.float32).max)  # XGBoost reads float32: beyond this is infinite
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


def parse(text: str, labels: str, width: int | None = None, width_means: str = "") -> SparseRows:
    """Parse libsvm ``text``. ``labels``: ``"required"`` (training: the first field of every line
    is its label) or ``"optional"`` (requests: a line may start with a label, which is read as a
    number and not used, so that a labelled libsvm file can be sent as it is). ``width``: the
    largest index allowed (``None``: any); ``width_means``: what those columns are, for the
    message of an index beyond them."""
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
