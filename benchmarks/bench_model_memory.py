"""What a loaded model costs a serving worker, against what the multi-model memory bound charges
it (its size on disk: ``xgboost-model.ubj`` + ``metadata.json``; serving/multi_model.py).

Loads ``--copies`` copies of the model directory as a worker does (``Invocations.load``: load and
one warm-up row), after three loaded first so that one-time allocations are not counted, and
prints the resident memory each copy added beside its size on disk.

    python benchmarks/bench_model_memory.py MODEL_DIR [--copies 50]
"""

from __future__ import annotations

import argparse
import os

from costaware.model.artifact import BOOSTER_FILE, METADATA_FILE
from costaware.serving.invocation import Invocations


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--copies", type=int, default=50)
    args = parser.parse_args()
    held = [Invocations.load(args.model_dir, 1) for _ in range(3)]
    before = resident_bytes()
    held += [Invocations.load(args.model_dir, 1) for _ in range(args.copies)]
    per_copy = (resident_bytes() - before) / args.copies
    on_disk = sum(os.path.getsize(os.path.join(args.model_dir, name))
                  for name in (BOOSTER_FILE, METADATA_FILE))
    print(f"{args.copies} copies: {per_copy / 1024:.0f} KiB resident each; {on_disk / 1024:.0f} KiB "
          f"on disk (the charge): {per_copy / on_disk:.2f} of it")


if __name__ == "__main__":
    main()
