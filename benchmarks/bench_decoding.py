"""Request decoding, format against format: the time ``serving.decoding.decode`` takes to turn a
batch body into the model's float matrix, for the same rows sent as CSV, JSON, JSON Lines, libsvm
(issue #27: libsvm at most about 2x CSV) and RecordIO-protobuf (float64 tensors, as the SDK writes
a float64 matrix: dense, or sparse with ``--missing``), each beside CSV in the same run.

The rows are the breast-cancer demo's 569 (30 features, written as ``repr`` of each value, as
``bench_serving.py``'s batch), repeated until the libsvm body, the largest of the four, reaches the
6 MiB payload limit; ``--missing`` leaves out that fraction of the values (an empty CSV cell, a
JSON ``null``, a libsvm pair left out). Prints the best of ``--repeat`` decodes of each body, its
size and its ratio to CSV, and the libsvm body read line by line (the reader every libsvm body
went through before issue #27's bulk reader; it still reads bodies under 16 KiB and explains
refusals).

    python benchmarks/bench_decoding.py [--repeat 7] [--missing 0.0] [--alone]
                                        [--formats csv,libsvm,...]

``--alone`` decodes each body ``--repeat`` times in a row instead of the formats taking turns, and
``--formats`` leaves out the others (CSV and libsvm are always timed): with nothing between two decodes, the C
allocator may hand a decode's freed memory back to the kernel, and the next decode fault it in
again page by page (the larger blocks a JSON decode frees make it keep more).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import os
import sys

import numpy as np
from sklearn.datasets import load_breast_cancer

from costaware.data import libsvm_rows
from costaware.model.inference import Layout
from costaware.serving import decoding

# RecordIO-protobuf bodies as protobuf's own encoder writes them (the tests' writer)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import recordio_writer  # noqa: E402

BODY_BYTES = 6 * 2**20  # SageMaker's default payload limit (serving.md)
TARGET = 2.0  # libsvm's decode at most this many times CSV's (issue #27)


def bodies(rows: list[list[float]]) -> dict[str, bytes]:
    """The same rows in each request format, NaN as each format's missing value."""
    def cell(v: float) -> str:
        return "" if math.isnan(v) else repr(v)

    return {
        "csv": "".join(",".join(map(cell, row)) + "\n" for row in rows).encode(),
        "json": json.dumps({"instances": [[None if math.isnan(v) else v for v in row]
                                          for row in rows]}).encode(),
        "jsonlines": "".join(json.dumps([None if math.isnan(v) else v for v in row]) + "\n"
                             for row in rows).encode(),
        "libsvm": "".join(" ".join(f"{j + 1}:{v!r}" for j, v in enumerate(row)
                                   if not math.isnan(v)) + "\n" for row in rows).encode(),
        "recordio": recordio_writer.body(np.array(rows), kind="f8",
                                         sparse=bool(np.isnan(np.array(rows)).any())),
    }


def rows_filling(table: np.ndarray, size: int) -> list[list[float]]:
    """``table``'s rows, repeated, as many as fit in a libsvm body of ``size`` bytes."""
    lines = [len(" ".join(f"{j + 1}:{v!r}" for j, v in enumerate(row) if not math.isnan(v)))
             + 1 for row in table.tolist()]  # (each row's libsvm line)
    out, total = [], 0
    while total + lines[len(out) % len(lines)] <= size:
        total += lines[len(out) % len(lines)]
        out.append(len(out) % len(lines))
    return table[out].tolist()


def best_ms(repeat: int, runs: dict, alone: bool = False) -> dict[str, float]:
    """The best time of each run, in ms; the runs take turns, so that a busy spell of the machine
    slows them alike (``alone``: each run ``repeat`` times in a row instead)."""
    if alone:
        return {name: best_ms(repeat, {name: fn})[name] for name, fn in runs.items()}
    best = dict.fromkeys(runs, math.inf)
    for _ in range(repeat):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds * 1e3 for name, seconds in best.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--missing", type=float, default=0.0,
                        help="fraction of the values left out (default 0)")
    parser.add_argument("--alone", action="store_true",
                        help="decode each body --repeat times in a row, not taking turns")
    parser.add_argument("--formats", default="csv,json,jsonlines,libsvm,recordio",
                        help="the formats timed, comma-separated (csv and libsvm always)")
    args = parser.parse_args()
    table, _ = load_breast_cancer(return_X_y=True)
    table[np.random.default_rng(0).random(table.shape) < args.missing] = np.nan
    rows = rows_filling(table, BODY_BYTES)
    layout = Layout(tuple(f"f{i}" for i in range(table.shape[1])), table.shape[1], None, ())
    by_format = {kind: body for kind, body in bodies(rows).items()
                 if kind in ("csv", "libsvm") or kind in args.formats.split(",")}
    decoded = {kind: decoding.decode(body, kind, layout)[0] for kind, body in by_format.items()}
    for kind, matrix in decoded.items():  # the same rows whatever the format
        assert np.array_equal(matrix, decoded["csv"], equal_nan=True), kind

    def line_by_line():
        bulk_from, libsvm_rows.BULK_FROM = libsvm_rows.BULK_FROM, math.inf
        try:
            return decoding.decode(by_format["libsvm"], "libsvm", layout)
        finally:
            libsvm_rows.BULK_FROM = bulk_from

    assert np.array_equal(line_by_line()[0], decoded["csv"], equal_nan=True)
    times = best_ms(args.repeat, {kind: (lambda kind=kind: decoding.decode(by_format[kind], kind,
                                                                          layout))
                                  for kind in by_format}, args.alone)
    times.update(best_ms(max(1, args.repeat // 3), {"libsvm, line by line": line_by_line}))
    print(f"{len(rows):,} rows x {table.shape[1]} features ({args.missing:.0%} missing), best of "
          f"{args.repeat} decodes{' (each body alone)' if args.alone else ''}")
    print(f"{'format':22s} {'MiB':>5s} {'ms':>7s} {'x CSV':>6s}")
    for kind, ms in times.items():
        size = len(by_format[kind.split(",")[0]]) / 2**20
        print(f"{kind:22s} {size:5.2f} {ms:7.1f} {ms / times['csv']:6.2f}")
    ratio = times["libsvm"] / times["csv"]
    print(f"target: libsvm <= {TARGET:.1f}x CSV: {'MET' if ratio <= TARGET else 'MISSED'}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
