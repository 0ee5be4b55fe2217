"""The two libsvm readers of :mod:`costaware.data.libsvm_rows` agree: the bulk one (numpy, for large
texts) accepts only what the line-by-line one accepts, with the same rows, and a large text the
bulk one gives up on gets the line reader's answer or its one-line refusal, word for word. Pure
functions, no process."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pyarrow.csv as pa_csv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costaware.data import arrow_numbers, libsvm_rows
from costaware.data.libsvm_rows import BULK_FROM, F32_MAX, LibsvmError
from costaware.model.inference import Layout
from costaware.serving import decoding
from costaware.serving.request_error import RequestError

from support import csv_body, libsvm_text

PROPERTY = settings(derandomize=True, deadline=None, database=None, max_examples=400,
                    suppress_health_check=list(HealthCheck))

# Values as people and programs write them: repr, printf styles, signs, exponents, leading and
# trailing points, many digits, subnormals, underflow to 0, the largest float32, NaN spellings
VALUE_TEXTS = ["0", "-0", "+0", "1", "-1", "+2.5", ".5", "-.5", "5.", "+5.", "1e5", "1E5", "1e+05",
               "-1.5E-05", "2.5e-3", "007", "0.1000000000000000055511151231257827021181583404541",
               "123456789012345678901234567890", "4.9e-324", "2.2250738585072011e-308", "1e-400",
               "3.4028234663852886e38", "-3.4028234663852886e+38", "nan", "NaN", "-nan", "+NAN"]
SEPARATORS = [" ", "  ", "\t", " \t ", "\r", " \r "]  # str.split's blanks within a line
LINE_ENDS = ["\n", "\r\n"]


def _value(rnd) -> str:
    kind = rnd.random()
    if kind < 0.25:
        return rnd.choice(VALUE_TEXTS)
    x = rnd.choice([-1, 1]) * rnd.random() * 10 ** rnd.randint(-12, 30)
    if kind < 0.7:
        return repr(x)
    return rnd.choice(["%.3e", "%g", "%.6f", "%+.4E", "%.17g"]) % x


def _body(rnd, labels: str, width: int) -> str:
    """A valid libsvm text in the bulk reader's alphabet: random rows, left-out indices, labels
    (every line in training; some lines in requests), blanks before, between and after fields."""
    lines = []
    for _ in range(rnd.randint(1, 12)):
        indices = sorted(rnd.sample(range(1, width + 1), rnd.randint(0, width)))
        if rnd.random() < 0.2:
            rnd.shuffle(indices)  # any order, as long as none repeats
        fields = [("0" * rnd.randint(0, 1) if rnd.random() < 0.1 else "") + f"{i}:{_value(rnd)}"
                  for i in indices]
        if labels == "required" or rnd.random() < 0.4 or not fields:
            fields.insert(0, rnd.choice(["0", "1", "-1", "+1", "1.0", "2e0", "0.5", "nan"]))
        sep = rnd.choice(SEPARATORS) if rnd.random() < 0.3 else " "
        line = sep.join(fields)
        if rnd.random() < 0.1:
            line = rnd.choice(SEPARATORS) + line
        if rnd.random() < 0.1:
            line += rnd.choice(SEPARATORS)
        lines.append(line)
    end = rnd.choice(LINE_ENDS)
    return end.join(lines) + rnd.choice(["", end, end * 2, "\n\r\n"])


def _same(bulk: libsvm_rows.SparseRows, lines: libsvm_rows.SparseRows) -> None:
    assert bulk.labels == lines.labels
    assert bulk.count == lines.count
    for name in ("rows", "columns", "values"):
        ours, theirs = getattr(bulk, name), getattr(lines, name)
        assert ours.dtype == theirs.dtype, name
        assert np.array_equal(ours, theirs, equal_nan=name == "values"), name


def _outcome(read, text: str, labels: str, width: int | None):
    try:
        return read(text, labels, width, " (its width)")
    except LibsvmError as exc:
        return str(exc)


@PROPERTY
@given(rnd=st.randoms(use_true_random=False), labels=st.sampled_from(["optional", "required"]),
       width=st.integers(1, 40))
def test_the_bulk_reader_reads_every_valid_text_as_the_line_reader(rnd, labels, width):
    text = _body(rnd, labels, width)
    expected = libsvm_rows._parse_lines(text, labels, width if labels == "optional" else None, "")
    bulk = libsvm_rows._parse_bulk(text, labels, width if labels == "optional" else None)
    assert bulk is not None, text  # it did not give up on a plain valid text
    _same(bulk, expected)
    _same(libsvm_rows._parse_bulk(text.encode(), labels, width if labels == "optional" else None),
          expected)  # as a request body comes
    assert all(math.isnan(v) or abs(v) <= F32_MAX for v in bulk.values.tolist())


@PROPERTY
@given(text=st.text(alphabet="0123456789.+-eEnNaA: \t\r\n", min_size=1, max_size=120) |
       st.lists(st.sampled_from(["1:", "2:", "12:", "0:", ":", "1", "-", ".", "5", "e", "nan", " ",
                                 "\t", "\n", "\r", "  ", "+", "1e9"]),
                min_size=1, max_size=40).map("".join),
       labels=st.sampled_from(["optional", "required"]))
def test_the_bulk_reader_takes_nothing_the_line_reader_refuses(text, labels):
    """Near-libsvm noise in the bulk alphabet: whatever the bulk reader returns, the line reader
    returns too (and where it gives up, :func:`parse` answers as the line reader does)."""
    width = 12 if labels == "optional" else None
    bulk = libsvm_rows._parse_bulk(text, labels, width)
    expected = _outcome(libsvm_rows._parse_lines, text, labels, width)
    if bulk is not None:
        assert not isinstance(expected, str), (text, expected)
        _same(bulk, expected)


def _big(bad_line: str, labels: str = "optional") -> tuple[str, int]:
    """A text of at least BULK_FROM characters with ``bad_line`` in its middle, and its number."""
    good = ("1 " if labels == "required" else "") + "1:0.5 2:-1.25e-3 3:7"
    before = BULK_FROM // (2 * len(good)) + 1
    text = "\n".join([good] * before + [bad_line] + [good] * before) + "\n"
    assert len(text) >= BULK_FROM
    return text, before + 1


# every refusal tests/test_libsvm.py checks (training and requests), and the near misses of the bulk
# reader's rules: each a line the bulk reader must give up on, for the line reader to explain
REFUSED = [
    ("optional", "1:0.5 2:1 3:1 4", "pair 4: '4' is not INDEX:VALUE"),
    ("optional", "1:0.5 7:1", "pair 2: '7:1': index 7 is beyond the model's 6 columns (its width)"),
    ("optional", "3:x", "pair 1: '3:x': 'x' is not a number (leave the pair out"),
    ("optional", "1:0.5 2:1 1:0.7", "pair 3: '1:0.7': index 1 is given twice in the line"),
    ("optional", "2:1 1:0.5 2:3", "pair 3: '2:3': index 2 is given twice in the line"),
    ("optional", "0:0.5 2:1", "pair 1: '0:0.5': index 0; indices are 1-based"),
    ("optional", "000:0.5", "pair 1: '000:0.5': index 0; indices are 1-based"),
    ("optional", "1:inf", "pair 1: '1:inf': inf is infinite"),
    ("optional", "1:-1e39", "pair 1: '1:-1e39': -1e+39 is beyond float32's range"),
    ("optional", "1:1e400", "pair 1: '1:1e400': inf is infinite"),
    ("optional", "x 1:1", "'x' is neither a label (a number) nor an INDEX:VALUE pair"),
    ("optional", "", "empty line; each line is one row"),
    ("optional", " \t\r", "empty line; each line is one row"),
    ("optional", "1:2:3", "pair 1: '1:2:3' is not INDEX:VALUE"),
    ("optional", "1:1 2:", "pair 2: '2:' is not INDEX:VALUE"),
    ("optional", "1:1 :2", "pair 2: ':2' is not INDEX:VALUE"),
    ("optional", "1:1 2: 3", "pair 2: '2:' is not INDEX:VALUE"),
    ("optional", "1.5:2", "pair 1: '1.5:2': the index '1.5' is not a whole number >= 1"),
    ("optional", "+1:2", "pair 1: '+1:2': the index '+1' is not a whole number >= 1"),
    ("optional", "1e1:2", "pair 1: '1e1:2': the index '1e1' is not a whole number >= 1"),
    ("optional", "1:1_0", "pair 1: '1:1_0': '1_0' is not a number"),
    ("optional", "1:1-2", "pair 1: '1:1-2': '1-2' is not a number"),
    ("optional", "1:1..2", "pair 1: '1:1..2': '1..2' is not a number"),
    ("optional", "1:1e", "pair 1: '1:1e': '1e' is not a number"),
    ("optional", "1:e5", "pair 1: '1:e5': 'e5' is not a number"),
    ("optional", "1:.", "pair 1: '1:.': '.' is not a number"),
    ("optional", "1:nana", "pair 1: '1:nana': 'nana' is not a number"),
    ("optional", "1:--1", "pair 1: '1:--1': '--1' is not a number"),
    ("optional", "1:1 2:1\u00a02", "pair 3: '2' is not INDEX:VALUE"),  # U+00A0 splits fields
    ("optional", "1:\uff11", "pair 1: '1:１': '１' is not a number"),
    ("optional", "1-1 1:1", "'1-1' is neither a label (a number) nor an INDEX:VALUE pair"),
    ("optional", "1 1:1 1", "pair 2: '1' is not INDEX:VALUE"),
    ("required", "1:2 1:0.5 2:1", "the first field '1:2' is not a label"),
    ("required", "1:2 2:0.5 3:1", "the first field '1:2' is not a label"),
    ("required", "1 1:0.5 3 2:1", "pair 2: '3' is not INDEX:VALUE"),
    ("required", "1 1:0.2 2:abc", "pair 2: '2:abc': 'abc' is not a number"),
    ("optional", "1:1 1234567890123456789:2", "pair 2: '1234567890123456789:2': index "
                                              "1234567890123456789 is beyond the model's 6"),
]


@pytest.mark.parametrize("labels, line, message", REFUSED)
def test_a_large_text_with_a_bad_line_is_refused_as_the_line_reader_refuses_it(labels, line,
                                                                               message):
    text, number = _big(line, labels)
    width = 6 if labels == "optional" else None
    assert libsvm_rows._parse_bulk(text, labels, width) is None
    expected = _outcome(libsvm_rows._parse_lines, text, labels, width)
    assert isinstance(expected, str) and expected.startswith(f"line {number}") and \
        message in expected, expected
    assert _outcome(libsvm_rows.parse, text, labels, width) == expected


@pytest.mark.parametrize("labels, line", [
    ("optional", "1:1\x0b2:2"),  # whitespace to str.split, outside the bulk alphabet
    ("optional", "1:1\u20032:2"),
    ("optional", "inf 1:2"),  # a label the bulk alphabet does not hold
    ("required", "yes 1:2"),
    ("optional", " " * 100 + "1:2"),  # indented further than the bulk reader scans
    ("optional", "1:0." + "1" * 100),  # a first field longer than it scans
    ("optional", "1:1 2:0." + "1" * 200),  # (a long field further on is no matter)
])
def test_a_large_valid_text_is_read_as_the_line_reader_reads_it(labels, line):
    text, _ = _big(line, labels)
    width = 6 if labels == "optional" else None
    expected = _outcome(libsvm_rows._parse_lines, text, labels, width)
    assert not isinstance(expected, str), expected
    _same(libsvm_rows.parse(text, labels, width), expected)


LAYOUT = Layout(("f0", "f1", "f2", "f3", "cost_fp", "cost_fn"), 4, None, ("cost_fp", "cost_fn"))


def _decode(body: bytes):
    try:
        return decoding.decode(body, "libsvm", LAYOUT)
    except RequestError as exc:
        return exc.message, exc.details


def test_a_large_libsvm_request_decodes_as_the_same_rows_in_csv():
    """Through the request decoder: rows with and without their cost cells, missing features."""
    rng = np.random.default_rng(4)
    features = rng.normal(size=(800, 4)) * 10.0 ** rng.integers(-6, 8, size=(800, 4))
    features[rng.random(features.shape) < 0.2] = np.nan
    costs = rng.uniform(1, 9, size=(800, 2))
    costs[::3] = np.nan  # every third row without its costs
    body = libsvm_text(None, features, costs).encode()
    assert len(body) >= BULK_FROM
    by_libsvm = decoding.decode(body, "libsvm", LAYOUT)
    by_csv = decoding.decode(csv_body(np.column_stack([features, costs])), "csv", LAYOUT)
    assert np.array_equal(by_libsvm[0], by_csv[0], equal_nan=True)
    assert np.array_equal(by_libsvm[1], ~np.isnan(costs[:, 0]))


@pytest.mark.parametrize("line, message, details", [
    ("1:0.5 7:1", "pair 2: '7:1': index 7 is beyond the model's 6 columns (4 columns, then its "
                  "costs: cost_fp, cost_fn)", {"pair": 2}),
    ("1:0.5 2:1 5:2.5", "the row carries some of its costs but not cost_fn (index 6); a row "
                        "carries all its costs or none", {}),
    ("1:x", "pair 1: '1:x': 'x' is not a number (leave the pair out for a missing value)",
     {"pair": 1}),
])
def test_a_large_bad_libsvm_request_gets_the_same_400(line, message, details):
    text, number = _big(line)
    assert _decode(text.encode()) == (f"line {number}{',' if details else ':'} {message}",
                                      {"line": number, **details})


# ------------------------------------------------------------------------------------ Arrow's numbers


def test_arrow_columns_are_copied_with_their_missing_cells_at_any_offset():
    """arrow_numbers.copy_floats reads an Arrow column's buffers as ``Array.to_numpy`` converts it
    (values, NaN where null), for a slice too (its offset inside the validity bitmap's bytes)."""
    rnd = np.random.default_rng(7)
    values = rnd.normal(size=200).tolist()
    body = "".join(("" if rnd.random() < 0.3 else repr(v)) + ",1\n" for v in values).encode()
    chunk = pa_csv.read_csv(io.BytesIO(body), read_options=pa_csv.ReadOptions(
        autogenerate_column_names=True)).column(0).chunks[0]
    assert 0 < chunk.null_count < len(chunk)
    for start, stop in [(0, 200), (3, 200), (5, 17), (8, 9), (13, 13), (190, 200)]:
        part = chunk.slice(start, stop - start)
        out = np.full(len(part), 12345.0)
        arrow_numbers.copy_floats(part, out)
        np.testing.assert_array_equal(out, part.to_numpy(zero_copy_only=False))


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def test_arrow_reads_only_numbers_float_reads_and_to_the_same_value():
    """arrow_numbers.read_numbers on every text of up to 3 characters of the bulk alphabet's
    number bytes, and of 4 of most of them: what it reads, ``float()`` reads, to the same value
    (the sign of a zero too; a NaN's aside); each text of up to 3 that ``float()`` refuses, among
    numbers, makes it refuse the whole (``None``). Laid out 32 a line: texts of 1 to 70 numbers,
    and blanks of every kind and length between them."""
    letters, fewer = "0123456789.+-eEnNaA", "09.+-eEnaA"
    texts = [("".join(p)) for size in (1, 2, 3) for p in itertools.product(letters, repeat=size)]
    texts += ["".join(p) for p in itertools.product(fewer, repeat=4)]
    read = {t: _float_or_none(t) for t in texts}
    numbers = [t for t in texts if read[t] is not None]
    rnd = np.random.default_rng(5)
    blanks = [" ", "  ", "\t", "\r", " \r\n ", "\n"]
    for start in range(0, len(numbers), 997):
        chosen = numbers[start:start + int(rnd.integers(1, 71))]
        text = "".join(rnd.choice(blanks) + t for t in chosen) + rnd.choice(["", " "])
        got = arrow_numbers.read_numbers(np.frombuffer(text.encode(), np.uint8))
        if got is None:
            continue  # a spelling Arrow does not take: the caller's fallback reads it
        assert len(got) == len(chosen)
        for t, value in zip(chosen, got.tolist()):
            expected = read[t]
            assert (math.isnan(value) and math.isnan(expected)) or \
                (value == expected and math.copysign(1, value) == math.copysign(1, expected)), t
    whole = " ".join(numbers).encode()
    everything = arrow_numbers.read_numbers(np.frombuffer(whole, np.uint8))
    assert everything is not None and len(everything) == len(numbers)
    for t, value in zip(numbers, everything.tolist()):
        expected = read[t]
        assert (math.isnan(value) and math.isnan(expected)) or \
            (value == expected and math.copysign(1, value) == math.copysign(1, expected)), t
    refused = [t for t in texts if read[t] is None and len(t) <= 3]  # one read each
    for t in refused:
        text = f"1 {t} 2.5".encode()
        assert arrow_numbers.read_numbers(np.frombuffer(text, np.uint8)) is None, t


# ----------------------------------------------------------------- lines of one shape (dense rows)


def _uniform_body(rnd, labels: str, width: int) -> str:
    """Lines of one shape, as a dense matrix's rows are written: the same number of pairs in each
    (mostly the same indices, some lines others, some in another order, none twice), a label on
    every line or on none, one space or one tab between fields."""
    pairs = rnd.randint(1, width)
    labelled = labels == "required" or rnd.random() < 0.5
    sep = rnd.choice([" ", "\t"])
    usual = sorted(rnd.sample(range(1, width + 1), pairs))
    lines = []
    for _ in range(rnd.randint(1, 12)):
        indices = usual if rnd.random() < 0.7 else sorted(rnd.sample(range(1, width + 1), pairs))
        if rnd.random() < 0.2:
            indices = rnd.sample(indices, len(indices))
        fields = [("0" if rnd.random() < 0.05 else "") + f"{i}:{_value(rnd)}" for i in indices]
        if labelled:
            fields.insert(0, rnd.choice(["0", "1", "-1", "+1", "1.0", "2e0", "0.5", "nan"]))
        lines.append(sep.join(fields))
    end = rnd.choice(LINE_ENDS)
    return end.join(lines) + rnd.choice(["", end, end * 2])


@PROPERTY
@given(rnd=st.randoms(use_true_random=False), labels=st.sampled_from(["optional", "required"]),
       width=st.integers(1, 40))
def test_lines_of_one_shape_are_read_as_one_csv_as_the_line_reader_reads_them(rnd, labels, width):
    text = _uniform_body(rnd, labels, width)
    limit = width if labels == "optional" else None
    expected = libsvm_rows._parse_lines(text, labels, limit, "")
    bulk = libsvm_rows._parse_bulk(text.encode(), labels, limit)
    assert bulk is not None, text
    assert isinstance(bulk.lengths, int), text  # the one-shape layout read it (no line by line)
    _same(bulk, expected)
    assert np.array_equal(bulk.dense(width), expected.dense(width), equal_nan=True)


def _mutate(rnd, line: str, kind: int) -> str:
    """One line of a one-shape text made another shape, or wrong (the ``kind``-th way of
    :data:`MUTATIONS`): what the one-shape layout must not take for its shape."""
    fields = line.split()
    pairs = [k for k, f in enumerate(fields) if ":" in f]
    k = rnd.choice(pairs)
    index, value = fields[k].split(":", 1)
    choices = [
        lambda: " ".join(fields[:k] + fields[k + 1:]),  # a pair less
        lambda: " ".join(fields + [f"{int(index) + 100}:1"]),  # a pair more
        lambda: " ".join(fields[1:]) if ":" not in fields[0] else "1 " + line,  # label or not
        lambda: " ".join(fields[1:] + fields[:1]),  # the first field last: a label, a pair
        lambda: line.replace(" ", "  ", 1) if " " in line else line + "  ",  # two blanks
        lambda: " " + line,  # a blank before the first field
        lambda: line + " ",  # a blank after the last
        lambda: line.replace(" ", "\r", 1) if " " in line else line + "\r",  # a lone CR
        lambda: line + "\r" + line,  # a lone CR between two lines' worth of fields
        lambda: line.replace(" ", ":", 1),  # two colons in a field
        lambda: line.replace(":", " ", 1),  # a field without its colon
        lambda: " ".join(fields[:k] + [f"{fields[pairs[0]].split(':')[0]}:{value}"]
                         + fields[k + 1:]),  # an index twice (or the same line)
        lambda: " ".join(fields[:k] + [f"0:{value}"] + fields[k + 1:]),  # index 0
        lambda: " ".join(fields[:k] + [f"+{index}:{value}"] + fields[k + 1:]),  # a signed index
        lambda: " ".join(fields[:k] + [f"-{index}:{value}"] + fields[k + 1:]),
        lambda: " ".join(fields[:k] + [f"{index}:{rnd.choice(['inf', '1e39', 'x', '1_0', ''])}"]
                         + fields[k + 1:]),  # a value that is not one
        lambda: " ".join(fields[:k] + [f"{index}:{value} {index}"] + fields[k + 1:]),  # a field
        lambda: "",  # an empty line
        lambda: "\t".join(fields),  # another blank (its own shape all the same)
    ]
    assert len(choices) == MUTATIONS
    return choices[kind]()


MUTATIONS = 19


@PROPERTY
@given(rnd=st.randoms(use_true_random=False), labels=st.sampled_from(["optional", "required"]),
       width=st.integers(2, 12), kind=st.integers(0, MUTATIONS - 1))
def test_a_line_of_another_shape_is_read_as_the_line_reader_reads_it(rnd, labels, width, kind):
    """One line of a one-shape text changed: whatever the bulk reader returns (the one-shape
    layout, or the line-by-line one), the line reader returns too; what it refuses, the bulk
    reader gives up on."""
    lines = _uniform_body(rnd, labels, width).rstrip("\r\n").replace("\r\n", "\n").split("\n")
    n = rnd.randrange(len(lines))
    lines[n] = _mutate(rnd, lines[n], kind)
    text = "\n".join(lines) + "\n"
    limit = width if labels == "optional" else None
    expected = _outcome(libsvm_rows._parse_lines, text, labels, limit)
    bulk = libsvm_rows._parse_bulk(text.encode(), labels, limit)
    if bulk is not None:
        assert not isinstance(expected, str), (text, expected)
        _same(bulk, expected)


def test_rows_of_the_same_columns_become_the_dense_rows_as_entries_do():
    """``SparseRows.dense`` for rows that all hold the same columns: as the entries one by one
    (NaN where no row has an entry); the columns 0 .. width - 1 in order are the values' own
    memory, reshaped."""
    rng = np.random.default_rng(11)
    values = rng.normal(size=12)
    for columns, width in [([0, 1, 2], 3), ([2, 0, 1], 3), ([1, 3, 4], 6), ([0, 1, 2], 5)]:
        rows = libsvm_rows.SparseRows(None, 3, np.tile(np.array(columns, dtype=np.int64), 4),
                                      values[:12], 4)
        entries = libsvm_rows.SparseRows(None, np.full(4, 3), rows.columns, rows.values, 4)
        assert np.array_equal(rows.rows, entries.rows) and rows.rows.dtype == np.int64
        dense = rows.dense(width)
        assert dense.shape == (4, width) and dense.dtype == np.float64
        assert np.array_equal(dense, entries.dense(width), equal_nan=True), columns
        assert np.shares_memory(dense, values) == (columns == list(range(width)))
    shifted = libsvm_rows.SparseRows(None, 2, np.array([0, 1, 1, 2], dtype=np.int64),
                                     values[:4], 2)  # same count, other columns: one by one
    assert np.array_equal(shifted.dense(3), [[values[0], values[1], np.nan],
                                             [np.nan, values[2], values[3]]], equal_nan=True)


def test_a_large_text_of_long_indices_is_read_as_the_line_reader_reads_it():
    """Indices of 1 to 18 digits, some with leading zeros, in a text of one shape and in one of
    many: each place read for every colon at once (training: no width)."""
    rnd = np.random.default_rng(12)
    lines = []
    while len(lines) < 600:
        a, b, c = sorted(int(rnd.integers(10 ** (d - 1), 10 ** d)) for d in rnd.integers(1, 19, 3))
        if a < b < c:
            lines.append(f"1 {'0' * int(rnd.integers(0, 2))}{a}:1.5 {b}:-2 {c}:{rnd.normal()!r}")
    for text, one_shape in [("\n".join(lines), True),
                            ("\n".join(line.rsplit(" ", 1)[0] if i % 3 else line
                                       for i, line in enumerate(lines)), False)]:
        assert len(text) >= BULK_FROM
        expected = libsvm_rows._parse_lines(text, "required", None, "")
        bulk = libsvm_rows._parse_bulk(text.encode(), "required", None)
        assert bulk is not None
        _same(bulk, expected)
        assert isinstance(bulk.lengths, int) == one_shape
        assert bulk.columns.max() >= 10 ** 17


def test_no_numbers_in_blanks_is_no_numbers():
    for text in [b"", b" ", b"\n\r\n\t "]:
        got = arrow_numbers.read_numbers(np.frombuffer(text, np.uint8))
        assert got is not None and len(got) == 0, text
