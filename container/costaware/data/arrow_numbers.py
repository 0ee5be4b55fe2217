"""Arrow's CSV reader as a number reader, without pandas: a float64 column copied out of its buffers
(:func:`copy_floats`), and blank-separated numbers read many a line (:func:`read_numbers`).

Arrow parses each number correctly rounded, as ``float()`` does, and takes only spellings
``float()`` takes: of every text of up to 4 characters of digits and ``.+-eEnNaA`` (and of 5 of
``01.+-eEnNaA9``: 386,392 texts, checked once), each Arrow reads is one ``float()`` reads, to the
same value and sign (``tests/test_libsvm_rows.py`` checks every text of up to 3, and the
numbers of 4 of most).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

# numbers a line: Arrow's cost is per line as much as per cell (a 6 MiB libsvm request's 647,550
# values read one a line took 1.5x as long as 32 a line)
NUMBERS_A_LINE = 32
_BLANK = 32  # the bytes up to the space are blanks (and line ends)
_COMMA, _NEWLINE = ord(","), ord("\n")
_FILL = np.frombuffer(b"0 " * NUMBERS_A_LINE, dtype=np.uint8)


def copy_floats(chunk: pa.Array, out: np.ndarray) -> None:
    """A float64 Arrow array's values into ``out``, NaN where it is null, read from its buffers
    (values, and the validity bitmap: bit ``offset + i``, least significant first). Not
    ``Array.to_numpy``: it imports pandas, which a serving worker has not (scikit-learn, which
    imports it, is kept out): 0.2 s, and up to 0.9 s under load, on each worker's first big CSV
    request."""
    validity, values = chunk.buffers()
    out[:] = np.frombuffer(values, np.float64, len(chunk), chunk.offset * 8)
    if chunk.null_count:
        bits = np.unpackbits(np.frombuffer(validity, np.uint8), count=chunk.offset + len(chunk),
                             bitorder="little")
        out[bits[chunk.offset:] == 0] = np.nan


def read_numbers(text: np.ndarray) -> np.ndarray | None:
    """The numbers of ``text`` (ASCII bytes as ``uint8``, fields separated by runs of bytes
    <= 32), in order, as ``float()`` reads each; ``None`` when Arrow does not read one (not a
    number, or a spelling of one it does not take).

    The fields are laid out as a CSV of :data:`NUMBERS_A_LINE` columns: each run of blanks
    becomes one comma, every ``NUMBERS_A_LINE``-th a line end, and the last line is filled with
    zeros (read and dropped)."""
    blank = text <= _BLANK
    keep = ~blank
    keep[1:] |= blank[1:] & ~blank[:-1]  # a run of blanks after a field: its first byte
    fields = text[keep]
    if not len(fields):
        return np.empty(0)
    ends = np.flatnonzero(fields <= _BLANK)
    unended = int(fields[-1] > _BLANK)  # the last field, not followed by a blank: one added
    if unended:
        ends = np.append(ends, len(fields))
    filled = (-len(ends)) % NUMBERS_A_LINE
    # _FILL is "0 0 ...": from its second byte when the blank is added, then a "0 " a filling
    fields = np.concatenate((fields, _FILL[unended:2 * (filled + unended)]))
    ends = np.concatenate((ends, ends[-1] + 2 + 2 * np.arange(filled)))
    fields[ends] = _COMMA
    fields[ends[NUMBERS_A_LINE - 1::NUMBERS_A_LINE]] = _NEWLINE
    columns = [f"v{j}" for j in range(NUMBERS_A_LINE)]
    try:
        table = pa_csv.read_csv(
            io.BytesIO(fields.tobytes()),
            read_options=pa_csv.ReadOptions(column_names=columns, use_threads=False),
            parse_options=pa_csv.ParseOptions(quote_char=False, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.float64()), null_values=[]))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    lines = np.empty((table.num_rows, NUMBERS_A_LINE))
    for j, column in enumerate(table.columns):
        start = 0
        for chunk in column.chunks:  # one chunk per block
            copy_floats(chunk, lines[start:start + len(chunk), j])
            start += len(chunk)
    return lines.reshape(-1)[:len(lines) * NUMBERS_A_LINE - filled]
