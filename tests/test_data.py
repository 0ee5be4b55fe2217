import gzip
import os

import numpy as np
import pandas as pd
import pytest

from costaware.data import channel_files as data
from costaware.decisions.costs import CostMatrix, RowCosts
from costaware.data.channel_files import DataOptions, Dataset, align_to, load_channel
from costaware.errors import DataError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_headerless_csv_label_first(tmp_path):
    write(tmp_path / "a.csv", "1,0.5,2\n0,,3\n")
    d = load_channel(str(tmp_path), "text/csv", DataOptions())
    assert list(d.label) == [1, 0] and d.feature_names == ["f0", "f1"]
    assert np.isnan(d.features[1, 0]) and d.features[1, 1] == 3


def test_several_files_sorted_and_gzip_by_magic(tmp_path):
    write(tmp_path / "b.csv", "0,3,4\n")
    (tmp_path / "a.part").write_bytes(gzip.compress(b"1,1,2\n"))
    write(tmp_path / ".hidden", "garbage")
    d = load_channel(str(tmp_path), "text/csv", DataOptions())
    assert list(d.label) == [1, 0] and d.features.tolist() == [[1, 2], [3, 4]]


def _costed(label="", header=False, **columns):
    return DataOptions(label, header, CostMatrix(fp=1, fn=10), tuple(columns.items()))


def test_header_with_named_label_and_cost_columns(tmp_path):
    write(tmp_path / "x.csv", "age,loss,interest,default\n30,1000,20,1\n40,2000,35,0\n")
    d = load_channel(str(tmp_path), "text/csv", _costed("default", True, fn="loss", fp="interest"))
    assert d.feature_names == ["age"]
    assert list(d.costs.fn) == [1000, 2000] and list(d.costs.fp) == [20, 35]
    assert list(d.costs.tp) == [0, 0] and list(d.costs.tn) == [0, 0]  # the class costs
    plain = load_channel(str(tmp_path), "text/csv", DataOptions("default", True))
    assert plain.feature_names == ["age", "loss", "interest"] and list(plain.costs.fn) == [1, 1]


def test_cost_columns_by_position_in_headerless_files(tmp_path):
    write(tmp_path / "x.csv", "1,0.5,700\n0,0.7,300\n")
    d = load_channel(str(tmp_path), "text/csv", _costed(fn="2"))
    assert d.feature_names == ["f0"] and list(d.costs.fn) == [700, 300]


def test_parquet(tmp_path):
    pd.DataFrame({"y": [0, 1, 1], "a": [1.0, None, 3.0], "b": [1, 2, 3]}).to_parquet(tmp_path / "d.parquet")
    d = load_channel(str(tmp_path), "application/x-parquet", DataOptions("y"))
    assert d.feature_names == ["a", "b"] and list(d.label) == [0, 1, 1] and np.isnan(d.features[1, 0])


def test_named_validation_columns_are_reordered(tmp_path):
    write(tmp_path / "t" / "a.csv", "y,a,b\n1,1,2\n0,3,4\n")
    write(tmp_path / "v" / "a.csv", "b,y,a\n20,1,10\n")
    opts = DataOptions("y", True)
    train = load_channel(str(tmp_path / "t"), "text/csv", opts)
    val = align_to(train, load_channel(str(tmp_path / "v"), "text/csv", opts))
    assert val.features.tolist() == [[10, 20]]


@pytest.mark.parametrize("files,options,fragment", [
    ({"a.csv": "1,2\n0,x\n"}, DataOptions(), "a.csv: line 2, column 2: 'x' is not a number"),
    ({"a.csv": "1,2\n2,3\n"}, DataOptions(), "a.csv: line 2, column 1 (label): 2; labels must be 0 or 1"),
    ({"a.csv": "1,2\n,3\n"}, DataOptions(), "line 2, column 1 (label): missing"),
    ({"a.csv": "1,2\n0,inf\n"}, DataOptions(), "line 2, column 2: infinite value"),
    ({"a.csv": "1,2\n0,1e39\n"}, DataOptions(), "line 2, column 2: 1e+39 is beyond float32's range"),
    ({"a.csv": "1,2\n0,3,4,5\n"}, DataOptions(), "a.csv: line 2 has 4 values where line 1 has 2"),
    ({"a.csv": "y,a,b\n1,2,3\n0,3\n"}, DataOptions("y", True), "a.csv: line 3 has 2 values where the header has 3"),
    ({"a.csv": "1,2\n", "b.csv": "1,2,3\n"}, DataOptions(), "b.csv: columns differ from"),
    ({"a.csv": "y,a\n1,2\n"}, DataOptions("label", True), "no label column 'label'"),
    ({"a.csv": "y,a,c\n1,2,-5\n"}, _costed("y", True, fn="c"),
     "a.csv: line 2, column 3 ('c') (cost_fn): -5; costs must be numbers >= 0"),
    ({"a.csv": "y,a,c\n1,2,\n"}, _costed("y", True, fn="c"),
     "a.csv: line 2, column 3 ('c') (cost_fn): missing; costs must be numbers >= 0"),
    ({"a.csv": "y,a,c\n1,2,x\n"}, _costed("y", True, fn="c"), "line 2, column 3 ('c'): 'x' is not a number"),
    ({"a.csv": "y,a,c,d\n1,2,5,5\n"}, _costed("y", True, fn="c", tp="d", fp="d2"), "no cost_fp column 'd2'"),
    ({"a.csv": "y,a,c,d,e,g\n1,2,3,0,1,0\n0,2,3,3,1,1\n"},
     _costed("y", True, fn="c", tp="d", fp="e", tn="g"),
     "a.csv: line 3: column 3 ('c') (cost_fn) (3) equals column 4 ('d') (cost_tp) (3) and "
     "column 5 ('e') (cost_fp) (1) equals column 6 ('g') (cost_tn) (1): both decisions cost the "
     "same whatever the outcome"),
    ({"a.csv": "y,a,c\n1,2,0.25\n"}, _costed("y", True, tp="c", fn="c2"), "no cost_fn column 'c2'"),
    ({"a.csv": "y,a,c\n1,2,25\n"}, _costed("y", True, tp="c"),
     "a.csv: line 2: column 3 ('c') (cost_tp) (25) exceeds cost_fn (the class cost, no column) (10): "
     "the correct decision would cost more than the mistake"),
    ({"a.csv": "y,a\n1,2\n"}, _costed("y", True, fn="y"), "the cost_fn column is the label column"),
    ({"a.csv": "1\n0\n"}, DataOptions(), "no feature columns"),
    ({"a.gz": b"\x1f\x8bnot really gzip"}, DataOptions(), "a.gz: cannot be read as CSV"),
    ({"a.csv": "1,2\n\n0,3\n"}, DataOptions(), "line 2, column 1 (label): missing"),
])
def test_bad_files_name_file_line_and_column(tmp_path, files, options, fragment):
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(DataError) as info:
        load_channel(str(tmp_path), "text/csv", options)
    assert fragment in str(info.value)


def test_empty_or_missing_channel(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_channel(str(tmp_path / "nope"), "text/csv", DataOptions())
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="holds no data files"):
        load_channel(str(tmp_path), "text/csv", DataOptions())


def test_skipped_entries_are_named_in_one_log_line_and_blank_files_are_empty(tmp_path):
    """A FIFO and a symbolic link to nothing were skipped without a word, while a file holding a
    line break alone failed the job; now every skipped entry is named with why, and a blank file
    counts as an empty one."""
    write(tmp_path / "a.csv", "1,0.5,2\n0,1,3\n")
    write(tmp_path / "newline.csv", "\n")
    write(tmp_path / "spaces.csv", " \r\n\n")
    write(tmp_path / ".part.crc", "x")
    write(tmp_path / "_SUCCESS", "")
    os.mkfifo(tmp_path / "pipe.csv")
    os.symlink(tmp_path / "nowhere.csv", tmp_path / "link.csv")
    assert load_channel(str(tmp_path), "text/csv", DataOptions()).rows == 2
    lines = []
    load_channel(str(tmp_path), "text/csv", DataOptions(), lines.append)
    assert lines == [f"channel directory {tmp_path}: skipped 6 entries: .part.crc (hidden), "
                     "_SUCCESS (marker file), link.csv (symbolic link to nothing), pipe.csv (a "
                     "FIFO, not a regular file), newline.csv (empty or only whitespace), "
                     "spaces.csv (empty or only whitespace)"]
    (tmp_path / "a.csv").unlink()
    with pytest.raises(DataError, match=r"holds no data files: only empty files \(newline.csv, "
                                        r"spaces.csv\)"):
        load_channel(str(tmp_path), "text/csv", DataOptions())


def test_a_file_deleted_between_listing_and_reading_is_named(tmp_path, monkeypatch):
    """The channel is listed first and read afterwards: a file removed in between (by another
    process; here by a hook on the listing) gave a traceback as the job's reason."""
    write(tmp_path / "a.csv", "1,0.5,2\n")
    gone = write(tmp_path / "b.csv", "0,1,3\n")
    listing = data.channel_files

    def list_then_delete(*args, **kwargs):
        files = listing(*args, **kwargs)
        gone.unlink()
        return files

    monkeypatch.setattr(data, "channel_files", list_then_delete)
    with pytest.raises(DataError) as caught:
        load_channel(str(tmp_path), "text/csv", DataOptions())
    assert str(caught.value) == f"{gone}: cannot be read: No such file or directory"


def test_unsupported_content_type(tmp_path):
    write(tmp_path / "a.json", "{}")
    with pytest.raises(DataError, match="content type 'application/json' is not supported"):
        load_channel(str(tmp_path), "application/json", DataOptions())


RAGGED_TEXTS = [  # (text, (line, values, reference line, reference values, unterminated) or None)
    ("a,b,c\n1,2,3\n1,2\n", (3, 2, 1, 3, False)),
    ("1,2,3\r\n1,2,3\r\n1,2,3,4\r\n", (3, 4, 1, 3, False)),
    ("\n\n1,2,3\n\n1,2,3\n1\n", (6, 1, 3, 3, False)),  # blank lines are the parser's to report
    ("1,2,3\n1,2,3\n1,2", (3, 2, 1, 3, True)),
    ("1,2,3\n1,2,3\n", None),
    ("1,2,3\r\n\r\n1,2,3", None),
    ('a,b,c\n"x,y",2,3\n1,2\n', (3, 2, 1, 3, False)),
    ('a,b,c\n"x\ny",2,3\n1,2,3\n1,"2,3"\n', (5, 2, 1, 3, False)),  # a quoted field spans lines 2-3
    ("", None),
    ("1,2,3\r0,3\r1,2,3\r", (2, 2, 1, 3, False)),  # lines ended by "\r" alone: counted with csv
    ('y,a,note\n1,2,"' + "x" * 200_000 + '"\n0,3\n', (3, 2, 1, 3, False)),  # above csv's field limit
    ("a,b,c,\n1,2,3\n", (2, 3, 1, 4, False)),  # a trailing comma is one more (empty) column
]


@pytest.mark.parametrize("text,expected", RAGGED_TEXTS)
def test_first_ragged_line_whatever_the_block_size(tmp_path, text, expected):
    """The count is the same whether a line falls inside one block or across two, and in gzip."""
    from costaware.data.csv_rows import RaggedLine, first_ragged_line

    plain, packed = tmp_path / "t.csv", tmp_path / "t.csv.gz"
    plain.write_bytes(text.encode())
    packed.write_bytes(gzip.compress(text.encode()))
    want = RaggedLine(*expected) if expected else None
    for block in (1, 2, 3, 5, 7, 1 << 20):
        assert first_ragged_line(str(plain), block_bytes=block) == want, block
        assert first_ragged_line(str(packed), gzipped=True, block_bytes=block) == want, block


def test_columns_named_differently_say_which_names_differ():
    """Issue #21, 9: "3 feature columns, train has 3" contradicted itself; the names that differ
    are what the reader needs."""
    costs = RowCosts.constant(CostMatrix(1, 1), 2)
    train = Dataset(np.zeros((2, 3), np.float32), np.array([0, 1], np.int8), ["age", "loss", "rate"],
                    costs, "train/t.parquet", True)
    other = Dataset(np.zeros((2, 3), np.float32), np.array([0, 1], np.int8), ["f0", "f1", "f2"],
                    costs, "test/t.csv", False)
    with pytest.raises(DataError) as info:
        align_to(train, other)
    assert str(info.value) == (
        "test/t.csv: columns differ from the train channel (the same 3 feature columns by count, "
        "but named differently: feature 1 is 'f0' here, 'age' in train, feature 2 is 'f1' here, "
        "'loss' in train, feature 3 is 'f2' here, 'rate' in train; only the train channel has a "
        "header line)")
