"""Arrow's CSV reader as a number reader, without pandas: a float64 column copied out of its buffers
(:func:`copy_floats`), a table's float64 columns as rows (:func:`float_rows`), chosen columns of a
comma-separated text (:func:`read_cells`), and blank-separated numbers read one a line
(:func:`read_numbers`).

Arrow parses each number correctly rounded, as ``float()`` does, and takes only spellings
``float()`` takes: of every text of up to 4 characters of digits and ``.+-eEnNaA`` (and of 5 of
``01.+-eEnNaA9``: 386,392 texts, checked once), each Arrow reads is one ``float()`` reads, to the
same value and sign (``tests/test_libsvm_rows.py`` checks every text of up to 3, and the
numbers of 4 of most).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

# each blank made a line end (read_numbers)
_LINE_ENDS = bytes(ord("\n") if b <= 32 else b for b in range(256))


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


def float_rows(table: pa.Table) -> np.ndarray:
    """A table of float64 columns as a C-ordered ``(rows, columns)`` array, NaN where null. Each
    column is copied whole into a row of its own, then one transposing copy makes the rows: 1.6 ms
    for a 6 MiB CSV body, against 6.6 ms writing each column down a strided slice of the rows."""
    columns = np.empty((table.num_columns, table.num_rows), dtype=np.float64)
    for j, column in enumerate(table.columns):
        start = 0
        for chunk in column.chunks:  # one chunk per block
            copy_floats(chunk, columns[j, start:start + len(chunk)])
            start += len(chunk)
    return np.ascontiguousarray(columns.T)


def read_cells(text, cells: int, numbers: Sequence[int],
               empty_lines: bool = False) -> np.ndarray | None:
    """Columns ``numbers`` of ``text`` (bytes, or a ``uint8`` array: a CSV of ``cells`` cells a
    line, LF or CRLF line ends, no quotes) as ``float()`` reads each cell, ``(lines,
    len(numbers))``; ``None`` when Arrow refuses the text: a line of another number of cells (an
    empty one too, unless ``empty_lines``: then it is skipped), or a cell of those columns that is
    not a number as it reads numbers. The other columns are split off but not read (Arrow on a
    6 MiB libsvm request of 30 pairs a line: 11.3 ms, 14.9 with the indices read as int64 too)."""
    names = [f"c{j}" for j in range(cells)]
    chosen = [names[j] for j in numbers]
    try:
        table = pa_csv.read_csv(
            pa.BufferReader(pa.py_buffer(text)),
            read_options=pa_csv.ReadOptions(column_names=names, use_threads=False),
            parse_options=pa_csv.ParseOptions(quote_char=False, ignore_empty_lines=empty_lines),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(chosen, pa.float64()), null_values=[],
                include_columns=chosen))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return float_rows(table)


def read_numbers(text: np.ndarray) -> np.ndarray | None:
    """The numbers of ``text`` (ASCII bytes as ``uint8``, fields separated by runs of bytes
    <= 32), in order, as ``float()`` reads each; ``None`` when Arrow does not read one (not a
    number, or a spelling of one it does not take).

    Every blank is made a line end: a CSV of one number a line, whose empty lines Arrow skips
    (:func:`read_cells`). On ``benchmarks/bench_decoding.py --missing 0.2``'s 6 MiB libsvm body
    with its indices blanked (647,036 numbers): 22.8 ms, against 26.9 ms for the fields moved
    together first (numpy's compaction of the bytes), 32 a line."""
    lines = text.tobytes().translate(_LINE_ENDS)
    if not lines.strip():  # (Arrow refuses a text of no line)
        return np.empty(0)
    numbers = read_cells(lines, 1, [0], empty_lines=True)
    return None if numbers is None else numbers.reshape(-1)
