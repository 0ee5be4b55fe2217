"""The ragged-row check's cost: training's checked read of a CSV file against ``pandas.read_csv``
of the same file without the check (the baseline).

Training reads each CSV file with ``pandas.read_csv`` through a ``csv_rows.CheckedReader``, which
counts every line's values as the bytes pass, then asks it for a ragged line. Writes a headerless
CSV of ``--rows`` rows (label + ``--features`` features, 6 significant digits, about 260 MiB at the
default 1M x 30) into a temporary directory, plain and gzip, and prints the best of ``--repeat``
times of each way and their ratio (target: the checked read takes at most 1.25x the unchecked
one). The file is in the page cache for both: what is compared is the work, not the disk.

    python benchmarks/bench_csv_rows.py [--rows 1000000] [--features 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
import time

import numpy as np
import pandas as pd

from costaware.data.csv_rows import CheckedReader


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp(prefix="bench-csv-rows-")
    try:
        plain = os.path.join(tmp, "train.csv")
        frame = pd.DataFrame(rng.normal(size=(args.rows, args.features)))
        frame.insert(0, "label", rng.integers(0, 2, args.rows))
        frame.to_csv(plain, header=False, index=False, float_format="%.6g")
        packed = plain + ".gz"
        with open(plain, "rb") as source, gzip.open(packed, "wb", compresslevel=6) as target:
            shutil.copyfileobj(source, target)
        size = os.path.getsize(plain) / 2**20
        print(f"{args.rows:,} rows x {args.features + 1} values: {size:.0f} MiB CSV, "
              f"{os.path.getsize(packed) / 2**20:.0f} MiB gzip")
        worst = 0.0
        for name, path, gzipped in (("plain", plain, False), ("gzip", packed, True)):
            def unchecked():
                return pd.read_csv(path, header=None, compression="gzip" if gzipped else None,
                                   skip_blank_lines=False, low_memory=False)

            def checked():
                with CheckedReader(path, gzipped) as reader:
                    frame = pd.read_csv(reader, header=None, skip_blank_lines=False, low_memory=False)
                    assert reader.ragged() is None
                return frame

            assert checked().equals(unchecked())
            base = best_of(args.repeat, unchecked)
            ours = best_of(args.repeat, checked)
            worst = max(worst, ours / base)
            print(f"{name:5s}  read_csv {base:6.2f} s   checked read {ours:6.2f} s   ratio "
                  f"{ours / base:.2f}x")
        print(f"target: checked read <= 1.25x read_csv: {'MET' if worst <= 1.25 else 'MISSED'}")
        return 0 if worst <= 1.25 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
