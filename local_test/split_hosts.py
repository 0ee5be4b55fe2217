#!/usr/bin/env python3
"""Lay out one /opt/ml tree per host of a multi-instance training job, from a single-host tree.

    local_test/split_hosts.py SOURCE_TREE OUT_DIR N [--distribution ShardedByS3Key|FullyReplicated]
                              [--host-prefix algo-]

Writes OUT_DIR/algo-1 … OUT_DIR/algo-N, each with SOURCE_TREE's hyperparameters, an
inputdataconfig.json whose channels have the chosen S3DistributionType, and the
resourceconfig.json SageMaker writes on that host. Data:

* ``FullyReplicated``: every host gets every file (each trains on its block of the rows).
* ``ShardedByS3Key``: SageMaker gives each host a subset of the S3 objects. A channel with at least
  N files is dealt round-robin by sorted name, as S3 keys are; a channel with fewer files has each
  CSV file cut into N blocks of rows (header repeated), as if the data had been uploaded as N
  objects. Host k's blocks come k-th, so the hosts' rows in host order are the original rows.

Standard library only: it runs on a machine without the project installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

DISTRIBUTIONS = ("ShardedByS3Key", "FullyReplicated")


def data_files(directory: str) -> list[str]:
    out = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]
    return out


def has_header(hyperparameters: dict, content_type: str) -> bool:
    header = str(hyperparameters.get("csv_header", "auto"))
    if header != "auto":
        return header == "present"
    return bool(hyperparameters.get("label_column")) or "header=present" in content_type.replace(" ", "")


def split_rows(path: str, n: int, header: bool) -> list[list[str]]:
    if path.endswith((".gz", ".parquet")):
        sys.exit(f"{path}: only plain CSV files can be cut into row blocks; upload {n} or more "
                 "files per channel instead")
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines(keepends=True)
    head, rows = (lines[:1], lines[1:]) if header else ([], lines)
    return [head + rows[k * len(rows) // n:(k + 1) * len(rows) // n] for k in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("hosts", type=int)
    parser.add_argument("--distribution", choices=DISTRIBUTIONS, default="ShardedByS3Key")
    parser.add_argument("--host-prefix", default="algo-")
    args = parser.parse_args()
    if args.hosts < 1:
        sys.exit("N must be at least 1")
    config_dir = os.path.join(args.source, "input", "config")
    with open(os.path.join(config_dir, "hyperparameters.json"), encoding="utf-8") as handle:
        hyperparameters = json.load(handle)
    with open(os.path.join(config_dir, "inputdataconfig.json"), encoding="utf-8") as handle:
        channels = json.load(handle)
    hosts = [f"{args.host_prefix}{k + 1}" for k in range(args.hosts)]
    for k, host in enumerate(hosts):
        base = os.path.join(args.out, host)
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(os.path.join(base, "input", "config"))
        config = {name: {**entry, "S3DistributionType": args.distribution}
                  for name, entry in channels.items()}
        files = {
            "hyperparameters.json": hyperparameters,
            "inputdataconfig.json": config,
            "resourceconfig.json": {"current_host": host, "hosts": hosts,
                                    "network_interface_name": "eth0"},
        }
        for name, content in files.items():
            with open(os.path.join(base, "input", "config", name), "w", encoding="utf-8") as handle:
                json.dump(content, handle, indent=2)
        for channel, entry in channels.items():
            source = os.path.join(args.source, "input", "data", channel)
            target = os.path.join(base, "input", "data", channel)
            os.makedirs(target, exist_ok=True)
            paths = data_files(source)
            if args.distribution == "FullyReplicated":
                for path in paths:
                    shutil.copy(path, os.path.join(target, os.path.basename(path)))
            elif len(paths) >= args.hosts:
                for path in paths[k::args.hosts]:
                    shutil.copy(path, os.path.join(target, os.path.basename(path)))
            else:
                header = has_header(hyperparameters, entry.get("ContentType", "text/csv"))
                for path in paths:
                    block = split_rows(path, args.hosts, header)[k]
                    stem = os.path.basename(path)
                    with open(os.path.join(target, f"part-{k + 1:03d}-{stem}"), "w",
                              encoding="utf-8") as handle:
                        handle.writelines(block)
    print(" ".join(os.path.join(args.out, h) for h in hosts))


if __name__ == "__main__":
    main()
