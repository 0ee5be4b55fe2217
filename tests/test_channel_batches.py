"""A channel read in batches (data/channel_batches.py) is load_channel's channel: the batches
joined are its Dataset, whatever the batch size; a channel it refuses is refused with its message,
naming the real line, when the fault is in the third batch of the second file; and a batch's
memory is bounded by its rows, not by the file's."""

import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from costaware.data.channel_batches import (BATCH_VALUES, channel_batches, channel_bytes,
                                            rows_within_values)
from costaware.data.channel_files import DataOptions, Dataset, load_channel
from costaware.decisions.costs import CELLS, CostMatrix
from costaware.errors import DataError

BATCH_ROWS = (1, 2, 3, 5, 1000)
PARQUET = "application/x-parquet"


def make_channel(directory: Path, files: dict) -> str:
    """``files``: name -> text, bytes or a DataFrame (written as Parquet, row groups of 3 rows)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        if isinstance(content, pd.DataFrame):
            content.to_parquet(path, row_group_size=3)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return str(directory)


def assert_same_dataset(batched: Dataset, whole: Dataset):
    assert batched.feature_names == whole.feature_names
    assert (batched.named_columns, batched.facet_feature, batched.sparse_columns) == \
        (whole.named_columns, whole.facet_feature, whole.sparse_columns)
    arrays = ["features", "label", "facet", "group"]
    pairs = [(name, getattr(batched, name), getattr(whole, name)) for name in arrays]
    pairs += [(f"cost {cell}", getattr(batched.costs, cell), getattr(whole.costs, cell))
              for cell in CELLS]
    assert (batched.cell_costs is None) == (whole.cell_costs is None)
    pairs += [(f"cell {cell}", batched.cell_costs[cell], values)
              for cell, values in (whole.cell_costs or {}).items()]
    for name, ours, theirs in pairs:
        if theirs is None:
            assert ours is None, name
            continue
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
        if theirs.dtype.kind == "O":
            assert ours.tolist() == theirs.tolist(), name
        else:
            np.testing.assert_array_equal(ours, theirs, err_msg=name)


def rows_csv(n: int, seed: int, header: str = "") -> str:
    rng = np.random.default_rng(seed)
    lines = [f"{rng.integers(2)},{rng.normal():.4g},{'' if i % 4 == 1 else rng.integers(9)}"
             for i in range(n)]
    return header + "\n".join(lines) + "\n"


def libsvm_lines(n: int, seed: int, top: int) -> str:
    rng = np.random.default_rng(seed)
    return "".join(f"{rng.integers(2)} 1:{rng.normal():.3g} {rng.integers(2, top + 1)}:1\n"
                   for _ in range(n))


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.integers(2, size=n), "a": rng.normal(size=n),
                         "b": np.where(np.arange(n) % 3 == 0, np.nan, rng.normal(size=n)),
                         "g": rng.choice(["north", "south", "7"], size=n)})


def wine_like(n: int, seed: int, header: str) -> str:
    rng = np.random.default_rng(seed)
    lines = [f"{rng.choice(['low', 'mid', 'high'])},{rng.normal():.3g},{rng.integers(1, 9)}"
             for _ in range(n)]
    return header + "\n".join(lines) + "\n"


K_CLASS = DataOptions("quality", True, classes=("low", "mid", "high"),
                      matrix=((0, 1, 2), (1, 0, 1), (4, 2, 0)), matrix_columns=(((2, 0), "loss"),))
FACET_AND_GROUP = DataOptions("y", True, facet_column="region", group_column="branch")
COSTED = DataOptions("y", True, CostMatrix(fp=1, fn=10), (("fn", "loss"), ("fp", "fee")))

CHANNELS = {  # id -> (files, content type, options)
    "headerless": ({"a.csv": rows_csv(11, 1)}, "text/csv", DataOptions()),
    "header": ({"a.csv": rows_csv(9, 2, "y,a,b\n")}, "text/csv", DataOptions("y", True)),
    "gzip and several files": ({"a.csv": rows_csv(7, 3), "b.csv.gz": gzip.compress(
        rows_csv(8, 4).encode()), "c": rows_csv(1, 5)}, "text/csv", DataOptions()),
    "parquet row groups": ({"a.parquet": frame(10, 6), "b.parquet": frame(4, 7)}, PARQUET,
                           DataOptions("y", facet_column="g")),
    "libsvm": ({"a.svm": libsvm_lines(7, 8, 4), "b.svm.gz": gzip.compress(
        libsvm_lines(6, 9, 6).encode()) + b""}, "text/libsvm", DataOptions()),
    "libsvm with blank line ends": ({"a.svm": libsvm_lines(5, 10, 3) + "\r\n\n"}, "text/libsvm",
                                    DataOptions()),
    "cost columns": ({"a.csv": "y,a,loss,fee\n" + "".join(
        f"{i % 2},{i * 0.5},{100 + i},{i % 3}\n" for i in range(10))}, "text/csv", COSTED),
    "three classes, a cell column": ({"a.csv": "quality,a,loss\nmid,2,3\n", "b.csv": wine_like(
        9, 11, "quality,a,loss\n")}, "text/csv", K_CLASS),
    "text facet and group": ({"a.csv": "y,region,branch,a\n1,north,3,0.5\n0,1,4,0.1\n1,01,x,2\n"
                              "0,south,5,1\n1,2,6,1\n", "b.csv": "y,region,branch,a\n0,7,y,1\n"
                              "1,east,2,2\n"}, "text/csv", FACET_AND_GROUP),
    "positive label": ({"a.csv": "y,a\nyes,1\nno,2\nmaybe,3\nyes,4\n"}, "text/csv",
                       DataOptions("y", True, positive_label=["yes"])),
    "a header-only file among others": ({"a.csv": "y,a,b\n", "b.csv": rows_csv(4, 12, "y,a,b\n")},
                                        "text/csv", DataOptions("y", True)),
}


@pytest.mark.parametrize("name", list(CHANNELS))
def test_the_batches_joined_are_load_channels_dataset(tmp_path, name):
    files, content_type, options = CHANNELS[name]
    directory = make_channel(tmp_path, files)
    whole = load_channel(directory, content_type, options)
    for batch_rows in BATCH_ROWS:
        batches = list(channel_batches(directory, content_type, options, batch_rows))
        assert all(0 < batch.rows <= batch_rows for batch in batches), batch_rows
        assert_same_dataset(Dataset.concat(batches), whole)


GOOD = "1,0.5,2\n0,1.5,3\n" * 4  # 8 lines: a bad line after them is line 9 (10 with a header)


def faulty(bad: str, header: str = "", other: str | None = None, last: str = GOOD) -> dict:
    """a.csv: good rows; b.csv: good rows, the bad line, good rows (``other``: b.csv's header)."""
    return {"a.csv": header + GOOD, "b.csv": (header if other is None else other) + GOOD + bad
            + last}


HEADED = "y,a,c\n"
FAULTS = {  # id -> (files, options, content type, what the message names)
    "long row": (faulty("0,3,4,5\n"), DataOptions(), "text/csv", "b.csv: line 9 has 4 values"),
    "short row": (faulty("y,a,c\n", HEADED, last="0,3\n"), DataOptions("y", True), "text/csv",
                  "b.csv: line 11 has 2 values where the header has 3"),
    "not a number": (faulty("0,x,1\n"), DataOptions(), "text/csv", "b.csv: line 9, column 2"),
    "label 2": (faulty("2,1,1\n"), DataOptions(), "text/csv", "b.csv: line 9, column 1 (label)"),
    "missing label": (faulty(",1,1\n"), DataOptions(), "text/csv", "line 9, column 1 (label)"),
    "missing cost": (faulty("1,2,\n", HEADED), DataOptions("y", True, CostMatrix(1, 10),
                                                           (("fn", "c"),)), "text/csv",
                     "b.csv: line 10, column 3 ('c') (cost_fn): missing"),
    "nan cost": (faulty("1,2,nan\n", HEADED), DataOptions("y", True, CostMatrix(1, 10),
                                                          (("fp", "c"),)), "text/csv",
                 "b.csv: line 10, column 3 ('c') (cost_fp)"),
    "infinite feature": (faulty("0,inf,1\n"), DataOptions(), "text/csv", "line 9, column 2"),
    "beyond float32": (faulty("0,1e39,1\n"), DataOptions(), "text/csv", "line 9, column 2"),
    "text facet in one file, numbers in another": (
        {"a.csv": "y,g,a\n" + "1,north,2\n" * 4, "b.csv": "y,g,a\n" + "0,3,1\n" * 7},
        DataOptions("y", True, facet_column="g"), "text/csv",
        "facet column 'g' holds text in"),
    "columns differ": (faulty("", other="y,a,d\n", header=HEADED), DataOptions("y", True),
                       "text/csv", "b.csv: columns differ from"),
    "header names a column twice": (faulty("", other="y,a,a\n", header="y,a,c\n"),
                                    DataOptions("y", True), "text/csv", "names column 'a' twice"),
    "no label column": (faulty("", HEADED), DataOptions("label", True), "text/csv",
                        "no label column 'label'"),
    "header only": ({"a.csv": "y,a\n", "b.csv": "y,a\n"}, DataOptions("y", True), "text/csv",
                    "holds no data rows (2 file(s)"),
    "empty": ({"a.csv": ""}, DataOptions(), "text/csv", "holds no data files"),
    "utf-16": ({"a.csv": GOOD, "b.csv": "\ufeff1,2,3\n".encode("utf-16-le")}, DataOptions(),
               "text/csv", "b.csv: UTF-16 text"),
    "not gzip": ({"a.csv": GOOD, "b.gz": b"\x1f\x8bnot really gzip"}, DataOptions(), "text/csv",
                 "b.gz: cannot be read as CSV"),
    "cut-off gzip": ({"a.csv": GOOD, "b.gz": gzip.compress((GOOD * 50).encode())[:-30]},
                     DataOptions(), "text/csv", "b.gz: cannot be read as CSV"),
    "not utf-8": ({"a.csv": GOOD, "b.csv": GOOD.encode() + b"0,\xff,1\n"}, DataOptions(),
                  "text/csv", "b.csv: cannot be read as CSV"),
    "a value fault before a ragged line of the next file": (
        {"a.csv": GOOD + "2,1,1\n", "b.csv": GOOD + "1,2\n"}, DataOptions(), "text/csv",
        "b.csv: line 9 has 2 values"),
    "class not in classes": (
        {"a.csv": wine_like(4, 1, "quality,a,loss\n"),
         "b.csv": wine_like(8, 2, "quality,a,loss\n") + "best,1,1\n" + wine_like(3, 3, "")},
        K_CLASS, "text/csv", "b.csv: line 10, column 1 ('quality') (label): 'best'"),
    "parquet label 2": ({"a.parquet": frame(5, 1), "b.parquet": frame(10, 2).assign(
        y=[0] * 7 + [2] + [1] * 2)}, DataOptions("y", facet_column="g"), PARQUET,
        "b.parquet: row 8, column 1 ('y') (label): 2"),
    "not parquet": ({"a.parquet": b"PAR1 and then nothing of the kind"}, DataOptions(), PARQUET,
                    "a.parquet: cannot be read as Parquet"),
    "libsvm bad pair": ({"a.svm": libsvm_lines(4, 1, 3), "b.svm": libsvm_lines(8, 2, 3)
                         + "1 2:x\n" + libsvm_lines(2, 3, 3)}, DataOptions(), "text/libsvm",
                        "b.svm: line 9, pair 1: '2:x'"),
    "libsvm empty line": ({"a.svm": libsvm_lines(8, 2, 3) + "\n\n" + libsvm_lines(2, 3, 3)},
                          DataOptions(), "text/libsvm", "a.svm: line 9: empty line"),
    "libsvm label 3": ({"a.svm": libsvm_lines(4, 1, 3), "b.svm": libsvm_lines(8, 2, 3)
                        + "3 1:1\n"}, DataOptions(), "text/libsvm",
                       "b.svm: line 9, the label field (label): 3"),
    "libsvm not utf-8 after a bad pair": (
        {"a.svm": libsvm_lines(3, 1, 3) + "1 x\n" + libsvm_lines(5, 2, 3) + "1 1:\xe9\n"},
        DataOptions(), "text/libsvm", "a.svm: line 10: not UTF-8 text (byte"),
    "libsvm cut-off gzip": ({"a.svm": gzip.compress(libsvm_lines(40, 1, 3).encode())[:-30]},
                            DataOptions(), "text/libsvm", "a.svm: cannot be read as libsvm"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_refused_channel_is_refused_with_load_channels_message(tmp_path, name):
    files, options, content_type, named = FAULTS[name]
    if name == "libsvm not utf-8 after a bad pair":  # bytes, not text: Latin-1's é
        files = {"a.svm": files["a.svm"].encode("latin-1")}
    directory = make_channel(tmp_path, files)
    with pytest.raises(DataError) as whole:
        load_channel(directory, content_type, options)
    assert named in str(whole.value)
    for batch_rows in BATCH_ROWS:
        with pytest.raises(DataError) as batched:
            for _ in channel_batches(directory, content_type, options, batch_rows):
                pass
        assert str(batched.value) == str(whole.value), batch_rows


def test_a_batch_is_bounded_by_its_rows_not_by_the_file(tmp_path):
    """200,000 rows of 20 values: read whole, load_channel's arrays alone take tens of MiB; in
    batches of 1,000 rows no batch is larger and the peak of what Python allocates stays below a
    tenth of the whole read's."""
    rng = np.random.default_rng(0)
    values = np.column_stack([rng.integers(2, size=200_000), rng.normal(size=(200_000, 19))])
    path = tmp_path / "big.csv"
    np.savetxt(path, values, fmt="%.5g", delimiter=",")
    tracemalloc.start()
    try:
        whole = load_channel(str(tmp_path), "text/csv", DataOptions())
        whole_peak = tracemalloc.get_traced_memory()[1]
        del whole
        tracemalloc.reset_peak()
        sizes = [batch.rows for batch in channel_batches(str(tmp_path), "text/csv", DataOptions(),
                                                         1000)]
        batches_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(sizes) == 200_000 and max(sizes) == 1000
    bound = 8 * 2 ** 20
    assert whole_peak > 3 * bound and batches_peak < bound, (whole_peak, batches_peak)


@pytest.mark.parametrize("content_type", ["text/csv", PARQUET])
def test_a_wide_file_is_read_in_fewer_rows_a_batch(tmp_path, content_type):
    """A batch holds at most BATCH_VALUES values (a batch's parsing costs per value): 5,000 rows
    of 300 values come in batches of 4,369 rows, not the 65,536 asked; narrow rows still come
    in the rows asked; the batches joined are the whole channel either way."""
    rng = np.random.default_rng(1)
    values = np.column_stack([rng.integers(2, size=5_000), rng.normal(size=(5_000, 299))])
    if content_type == PARQUET:
        pd.DataFrame(values, columns=[f"c{j}" for j in range(300)]).to_parquet(
            tmp_path / "wide.parquet", row_group_size=5_000)
    else:
        np.savetxt(tmp_path / "wide.csv", values, fmt="%.5g", delimiter=",")
    sizes = [batch.rows for batch in channel_batches(str(tmp_path), content_type, DataOptions(),
                                                     65_536)]
    assert max(sizes) == BATCH_VALUES // 300 == 4_369 and sum(sizes) == 5_000
    assert_same_dataset(Dataset.concat(list(channel_batches(str(tmp_path), content_type,
                                                            DataOptions(), 65_536))),
                        load_channel(str(tmp_path), content_type, DataOptions()))
    assert rows_within_values(3, 300) == 3 and rows_within_values(65_536, 21) == 62_415
    assert rows_within_values(65_536, 10**6) == 1_024


def test_a_wide_libsvm_channel_is_read_in_fewer_rows_a_batch(tmp_path):
    """libsvm batches are held dense up to the channel's largest index: 5,000 rows up to index
    300 come in batches of BATCH_VALUES // 301 rows (the label beside them), and the batches
    joined are load_channel's channel; its line numbers still name the real line."""
    rng = np.random.default_rng(2)
    def line() -> str:
        indexes = sorted(rng.choice(300, 5, replace=False) + 1)
        return f"{rng.integers(2)} " + " ".join(f"{j}:{rng.normal():.3g}" for j in indexes)

    lines = [line() for _ in range(5_000)]
    lines[1] = "1 300:1.5"  # the widest line
    make_channel(tmp_path / "ok", {"a.txt": "\n".join(lines) + "\n"})
    sizes = [batch.rows for batch in channel_batches(str(tmp_path / "ok"), "text/libsvm",
                                                     DataOptions(), 65_536)]
    assert max(sizes) == BATCH_VALUES // 301 and sum(sizes) == 5_000
    assert_same_dataset(Dataset.concat(list(channel_batches(str(tmp_path / "ok"), "text/libsvm",
                                                            DataOptions(), 65_536))),
                        load_channel(str(tmp_path / "ok"), "text/libsvm", DataOptions()))
    lines[4_500] = "1 7:x"
    directory = make_channel(tmp_path / "bad", {"a.txt": "\n".join(lines) + "\n"})
    with pytest.raises(DataError, match="line 4501"):
        list(channel_batches(directory, "text/libsvm", DataOptions(), 65_536))


def test_channel_bytes_reads_sizes_not_data(tmp_path):
    text = rows_csv(50, 1).encode()
    make_channel(tmp_path / "csv", {"a.csv": text, "b.gz": gzip.compress(text * 3),
                                    "c.gz": b"\x1f\x8b\x08"})
    assert channel_bytes(str(tmp_path / "csv"), "text/csv") == 4 * len(text) + 3
    lines = libsvm_lines(30, 1, 5).encode()
    make_channel(tmp_path / "libsvm", {"a.svm": lines, "b.svm": gzip.compress(lines)})
    assert channel_bytes(str(tmp_path / "libsvm"), "text/libsvm") == 2 * len(lines)
    table = frame(10, 1)
    make_channel(tmp_path / "parquet", {"a.parquet": table})
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(tmp_path / "parquet" / "a.parquet").metadata
    assert metadata.num_row_groups == 4
    expected = sum(metadata.row_group(g).total_byte_size for g in range(4))
    assert channel_bytes(str(tmp_path / "parquet"), PARQUET) == expected > 0


def test_a_libsvm_file_with_a_byte_order_mark_names_the_line_and_byte_of_a_bad_byte(tmp_path):
    """UTF-8-sig's decoder counts bytes after the mark: the message named line 1 and byte 17 for
    a bad byte at byte 20, on line 2."""
    data = b"\xef\xbb\xbf0 1:0.91 2:3 3:5\n\xff\n1 1:0.66 2:0 3:5\n"
    assert data.index(b"\xff") == 20
    directory = make_channel(tmp_path, {"a.svm": data})
    expected = f"{directory}/a.svm: line 2: not UTF-8 text (byte 20)"
    with pytest.raises(DataError) as whole:
        load_channel(directory, "text/libsvm", DataOptions())
    assert str(whole.value) == expected
    for batch_rows in BATCH_ROWS:
        with pytest.raises(DataError) as batched:
            list(channel_batches(directory, "text/libsvm", DataOptions(), batch_rows))
        assert str(batched.value) == expected, batch_rows


def test_a_stray_huge_libsvm_index_is_refused_for_a_batchs_memory(tmp_path):
    """A batch is held dense up to the channel's largest index: one of 10^11 would ask for
    terabytes for two rows (numpy's MemoryError); it is refused naming its line, as
    load_channel refuses it for the whole channel."""
    directory = make_channel(tmp_path, {"t.txt": "1 1:0.5\n0 1:1 99999999999:2\n"})
    with pytest.raises(DataError) as info:
        list(channel_batches(directory, "text/libsvm", DataOptions(), 1000))
    assert str(info.value).startswith(
        f"{directory}/t.txt: line 2: index 99999999999: a batch of 2 rows held dense up to it "
        "would take 1490.1 GiB, more than the ")


def test_a_parquet_file_is_read_a_row_group_at_a_time(tmp_path):
    """pyarrow's pre-buffering read the pages of every row group of a file before its first batch
    (its memory held a whole file while the batches were read); now at most a row group's."""
    import pyarrow as pa

    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(300_000, 10)), columns=[f"x{i}" for i in range(10)])
    table.insert(0, "y", rng.integers(2, size=300_000))
    table.to_parquet(tmp_path / "t.parquet", row_group_size=15_000)
    held = [pa.total_allocated_bytes()
            for _ in channel_batches(str(tmp_path), PARQUET, DataOptions("y"), 5000)]
    whole = channel_bytes(str(tmp_path), PARQUET)
    assert len(held) == 60 and whole > 24 * 2 ** 20
    assert max(held) < whole / 4, (max(held), whole)


@pytest.mark.parametrize("content_type", ["text/csv", "text/libsvm", PARQUET])
def test_a_file_deleted_between_listing_and_reading_is_named(tmp_path, monkeypatch, content_type):
    """As load_channel names it (the listing hooked to delete a file, as another process would)."""
    from costaware.data import channel_batches as batches_module, channel_files as files_module

    files = {"text/csv": {"a": "1,0.5\n0,1\n", "b": "0,1\n"},
             "text/libsvm": {"a": "1 1:0.5\n0 2:1\n", "b": "0 1:1\n"},
             PARQUET: {"a": frame(4, 1), "b": frame(4, 2)}}[content_type]
    make_channel(tmp_path, files)
    listing = files_module.channel_files

    def list_then_delete(*args, **kwargs):
        found = listing(*args, **kwargs)
        (tmp_path / "b").unlink(missing_ok=True)
        return found

    messages = []
    for module, read in ((files_module, lambda: load_channel(str(tmp_path), content_type,
                                                             DataOptions())),
                         (batches_module, lambda: list(channel_batches(
                             str(tmp_path), content_type, DataOptions(), 2)))):
        make_channel(tmp_path, {"b": files["b"]})
        monkeypatch.setattr(module, "channel_files", list_then_delete)
        with pytest.raises(DataError) as info:
            read()
        messages.append(str(info.value))
    assert messages[0] == messages[1] and messages[0].startswith(f"{tmp_path}/b: cannot be read")


@pytest.mark.parametrize("name", ["gzip and several files", "parquet row groups", "libsvm"])
def test_channel_batches_can_be_iterated_again(tmp_path, name):
    """An XGBoost DataIter goes over its data more than once: every pass gives the same batches."""
    from costaware.data.channel_batches import ChannelBatches

    files, content_type, options = CHANNELS[name]
    batches = ChannelBatches(make_channel(tmp_path, files), content_type, options, 4)
    first, second = Dataset.concat(list(batches)), Dataset.concat(list(batches))
    assert first.rows > 4
    assert_same_dataset(second, first)


def test_label_values_that_cannot_match_the_label_column_are_one_line(tmp_path):
    """label_values_or_threshold '["yes"]' on labels 0/1: Clarify's retry (the values converted
    to the column's type) raised a ValueError, and the job's failure reason was a traceback."""
    directory = make_channel(tmp_path, {"t.csv": "1,0.5\n0,1.5\n"})
    options = DataOptions(positive_label=["yes"])
    expected = (f"{directory}/t.csv: column 1 (label): label_values_or_threshold: the given "
                "values do not occur in the column and cannot be converted to its type")
    with pytest.raises(DataError) as whole:
        load_channel(directory, "text/csv", options)
    with pytest.raises(DataError) as batched:
        list(channel_batches(directory, "text/csv", options, 1))
    assert str(whole.value) == str(batched.value) == expected
