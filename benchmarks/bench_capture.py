"""What one data-capture record costs a worker: ``CaptureWriter.write`` in this process.

    python benchmarks/bench_capture.py [--dir DIR] [--repeats N]

Two records: a one-row ``application/json`` request with its answer, and a 6 MiB CSV batch with
its CSV answer (29,839 rows of the breast-cancer data's width). For each, the best and median time
per record over ``--repeats`` rounds, split into building the record's line (``record`` +
``to_line``: the JSON) and the ``write`` of it into a file under ``--dir`` (default: a temporary
directory; the write's cost is the file system's, e.g. memory on /dev/shm, a disk elsewhere).
``bench_serving.py`` run with ``COSTAWARE_DATA_CAPTURE_DIR`` set gives the cost seen by a client.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from costaware import data_capture
from costaware.serving.capture import CaptureWriter

ROW = [14.69, 13.98, 98.22, 656.1, 0.1031, 0.1836, 0.145, 0.063, 0.2086, 0.07406, 0.5462, 1.511,
       4.795, 49.45, 0.009976, 0.05244, 0.05278, 0.0158, 0.02653, 0.005444, 16.46, 18.34, 114.1,
       809.2, 0.1312, 0.3635, 0.3219, 0.1108, 0.2827, 0.09208]
ANSWER = {"score": 0.218738672171622, "decision": 1, "expected_cost_if_1": 8723.10712821958,
          "expected_cost_if_0": 55122.1453872486, "threshold": 0.00590653530676237,
          "costs": "model", "rule": "bayes"}
BATCH_BYTES = 6 * 1024 * 1024


def records() -> dict:
    single_in = json.dumps({"instances": [ROW]}).encode()
    single_out = json.dumps({"predictions": [ANSWER]}, separators=(",", ":")).encode()
    line = (",".join(map(repr, ROW)) + "\n").encode()
    answer = (",".join(str(v) for v in ANSWER.values()) + "\n").encode()
    rows = BATCH_BYTES // len(line)
    return {"one-row JSON": (20000, "application/json", single_in, "application/json", single_out),
            f"6 MiB CSV batch ({rows} rows)": (5, "text/csv", line * rows,
                                               "text/csv; charset=utf-8", answer * rows)}


def per_record(function, n: int, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            function()
        times.append((time.perf_counter() - start) / n)
    return times


def show(name: str, times: list[float]) -> str:
    unit, scale = ("ms", 1e3) if min(times) > 1e-3 else ("µs", 1e6)
    return f"{name} {min(times) * scale:.1f} {unit} [{statistics.median(times) * scale:.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="where the capture files go (default: a temporary directory)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        writer = CaptureWriter(root, "bench", "AllTraffic", 100)
        print(f"capture files under {root} (best per record, median in brackets)")
        for name, (n, in_type, in_body, out_type, out_body) in records().items():
            now = time.time()
            line = data_capture.to_line(data_capture.record(in_type, in_body, out_type, out_body,
                                                            now))
            build = per_record(lambda: data_capture.to_line(data_capture.record(
                in_type, in_body, out_type, out_body, now)), n, args.repeats)
            with open(os.path.join(root, "raw.jsonl"), "ab", buffering=0) as handle:
                write = per_record(lambda: handle.write(line), n, args.repeats)
            whole = per_record(lambda: writer.write(now, in_type, in_body, out_type, out_body,
                                                    None), n, args.repeats)
            print(f"  {name}: {len(in_body):,} + {len(out_body):,} body bytes, a "
                  f"{len(line):,}-byte line: {show('CaptureWriter.write', whole)} = "
                  f"{show('the line', build)} + {show('its write', write)}")
        writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
