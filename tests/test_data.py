import gzip

import numpy as np
import pandas as pd
import pytest

from costaware.data import DataOptions, align_to, load_channel
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


def test_header_with_named_label_and_cost_column(tmp_path):
    write(tmp_path / "x.csv", "age,amount,default\n30,1000,1\n40,2000,0\n")
    d = load_channel(str(tmp_path), "text/csv", DataOptions("default", True, "amount"))
    assert d.feature_names == ["age"] and list(d.cost_multiplier) == [1000, 2000]
    d2 = load_channel(str(tmp_path), "text/csv", DataOptions("default", True, "amount", True))
    assert d2.feature_names == ["age", "amount"]


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
    ({"a.csv": "1,2\n0,3,4,5\n"}, DataOptions(), "a.csv: cannot be read as CSV"),
    ({"a.csv": "1,2\n", "b.csv": "1,2,3\n"}, DataOptions(), "b.csv: columns differ from"),
    ({"a.csv": "y,a\n1,2\n"}, DataOptions("label", True), "no label column 'label'"),
    ({"a.csv": "y,a,c\n1,2,-5\n"}, DataOptions("y", True, "c"), "line 2, column 3 ('c') (cost): -5"),
    ({"a.csv": "y,a\n1,2\n"}, DataOptions("y", True, "y"), "the cost column is the label column"),
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


def test_unsupported_content_type(tmp_path):
    write(tmp_path / "a.json", "{}")
    with pytest.raises(DataError, match="content type 'application/json' is not supported"):
        load_channel(str(tmp_path), "application/json", DataOptions())
