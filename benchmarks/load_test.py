"""Load test: the real ``serve`` under concurrent single-row and 100-row requests, from a second
process (this one) on 127.0.0.1.

    python benchmarks/load_test.py [--seconds 60] [--concurrency 32] [--warmup 10]
                                   [--model-dir DIR | --port PORT --server-pid PID] [--json PATH]

Without ``--port`` it trains the breast-cancer demo model (unless ``--model-dir`` is given) and
starts ``serve`` itself (``--workers``, default the CPU count); with ``--port`` and ``--server-pid``
it loads a server that is already running (the tests do this).

The client is asyncio with one keep-alive HTTP/1.1 connection per concurrent client (raw streams,
no client library: the client needs little CPU, which the server shares on a small machine). Each
client repeats a fixed pattern: ``--batch-every``-th request (default every 5th) is a 100-row
request, the others single-row ones, each rotating over CSV, JSON and JSON Lines bodies and
``Accept`` formats. Every answer is compared byte for byte with the answer the server gave the same
request before the load started: an error is any non-200 status, a different body, a timeout or a
connection failure (the client then reconnects after 50 ms).

Resident memory (VmRSS from ``/proc/PID/status``) of each worker is sampled every second. Growth
of a worker = its largest RSS after the warm-up (the first ``--warmup`` seconds) over its RSS at the
end of the warm-up.

Prints requests, errors, requests/s, p50/p99 latency per kind, and per worker the RSS at the end of
the warm-up, at the end and the growth. Targets (exit status 1 if one is missed, unless
``--no-targets``): zero errors, RSS growth under ``--max-rss-growth`` (10 %) for every worker, and
the same worker pids at the end as at the start (no worker died). ``--json PATH`` also writes the
figures, every error (with its monotonic start and end time, comparable with ``time.monotonic()``
in another process on this machine) and the RSS samples; ``--records PATH`` writes every request
as ``start,end,kind,status,ok`` lines. Bounded: at most ``--seconds`` of load and
``--max-requests`` requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_serving import (free_port, load_rows, start_server, stop_server,  # noqa: E402
                           train_demo_model)

KINDS = ("single", "batch100")
FORMATS = [  # (Content-Type, Accept)
    ("application/json", "application/json"),
    ("text/csv", "text/csv"),
    ("application/jsonlines", "application/jsonlines"),
    ("text/csv", "application/json"),
    ("application/json", "text/csv;fields=score,decision"),
]


# ------------------------------------------------------------------------------------ requests


def _cell(v: float) -> str:
    return "" if v != v else repr(v)


def encode_rows(rows: np.ndarray, content_type: str) -> bytes:
    values = rows.tolist()
    if content_type == "text/csv":
        return ("\n".join(",".join(_cell(v) for v in row) for row in values) + "\n").encode()
    clean = [[None if v != v else v for v in row] for row in values]
    if content_type == "application/json":
        return json.dumps({"instances": clean}).encode()
    return "\n".join(json.dumps(row) for row in clean).encode()


def build_requests(rows: np.ndarray, port: int, seed: int = 0) -> dict[str, list[bytes]]:
    """Raw HTTP/1.1 requests per kind: single rows and 100-row batches (rows of the test set,
    jittered, 2% missing), rotating over the formats."""
    rng = np.random.default_rng(seed)
    singles = []
    for i in range(min(len(rows), 60)):
        content_type, accept = FORMATS[i % len(FORMATS)]
        singles.append(raw_request(port, encode_rows(rows[i:i + 1], content_type),
                                   content_type, accept))
    batches = []
    for i in range(15):
        picks = rows[rng.integers(0, len(rows), 100)] * rng.uniform(0.9, 1.1, (100, rows.shape[1]))
        picks[rng.random(picks.shape) < 0.02] = np.nan
        content_type, accept = FORMATS[i % len(FORMATS)]
        batches.append(raw_request(port, encode_rows(picks, content_type), content_type, accept))
    return {"single": singles, "batch100": batches}


def raw_request(port: int, body: bytes, content_type: str, accept: str) -> bytes:
    head = (f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {content_type}\r\nAccept: {accept}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


async def _within(coro, seconds: float):
    if hasattr(asyncio, "timeout"):  # Python 3.11+: no extra task per request
        async with asyncio.timeout(seconds):
            return await coro
    return await asyncio.wait_for(coro, seconds)


class Connection:
    """One keep-alive HTTP/1.1 connection; responses must carry Content-Length (Flask's do)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = None, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length is None:
            body = await self.reader.read()
            close = True
        else:
            body = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, body

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# ------------------------------------------------------------------------------------ processes


def worker_pids(master: int) -> set[int]:
    """Live children of ``master`` (gunicorn workers), from /proc; zombies are not workers."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == master and fields[0] != "Z":
            found.add(int(entry))
    return found


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# ------------------------------------------------------------------------------------ the load


@dataclass
class Result:
    seconds: float = 0.0
    records: list = field(default_factory=list)  # (start, end, kind index, status, ok)
    errors: list = field(default_factory=list)  # dicts
    rss: dict = field(default_factory=dict)  # pid -> [(t, kib)]
    workers_before: set = field(default_factory=set)
    workers_after: set = field(default_factory=set)


async def fetch_expected(host: str, port: int, requests: dict[str, list[bytes]]) -> dict:
    conn = Connection(host, port)
    expected = {}
    for kind, raws in requests.items():
        for raw in raws:
            status, body = await conn.request(raw)
            if status != 200:
                raise SystemExit(f"a valid {kind} request was refused before the load: {status} "
                                 f"{body[:300]!r}")
            expected[raw] = body
    conn.close()
    return expected


async def run_load(host: str, port: int, master: int | None, requests: dict[str, list[bytes]],
                   concurrency: int, seconds: float, batch_every: int, max_requests: int,
                   timeout: float) -> Result:
    expected = await fetch_expected(host, port, requests)
    result = Result()
    if master:
        result.workers_before = worker_pids(master)
    issued = 0
    start = time.monotonic()
    stop_at = start + seconds

    async def client(k: int):
        nonlocal issued
        conn = Connection(host, port)
        n = k  # clients start at different points of the pattern
        picks = [k, k]  # next request of each kind
        while time.monotonic() < stop_at and issued < max_requests:
            issued += 1
            kind = 1 if batch_every and n % batch_every == batch_every - 1 else 0
            raws = requests[KINDS[kind]]
            raw = raws[picks[kind] % len(raws)]
            picks[kind] += 1
            n += 1
            t0 = time.monotonic()
            status, ok, what = 0, False, ""
            try:
                status, body = await _within(conn.request(raw), timeout)
                ok = status == 200 and body == expected[raw]
                if not ok:
                    what = f"status {status}: {body[:200]!r}" if status != 200 else \
                        "a 200 whose body differs from the expected answer"
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError, ValueError, IndexError) as exc:
                what = f"{type(exc).__name__}: {exc}"
                conn.close()
            t1 = time.monotonic()
            result.records.append((t0, t1, kind, status, ok))
            if not ok:
                result.errors.append({"start": t0, "end": t1, "kind": KINDS[kind],
                                      "status": status, "error": what[:300]})
                conn.close()
                await asyncio.sleep(0.05)
        conn.close()

    async def sampler():
        while time.monotonic() < stop_at:
            if master:
                now = time.monotonic() - start
                for pid in worker_pids(master):
                    kib = rss_kib(pid)
                    if kib:
                        result.rss.setdefault(pid, []).append((round(now, 2), kib))
            await asyncio.sleep(max(0.0, min(1.0, stop_at - time.monotonic())))

    tasks = [asyncio.create_task(client(k)) for k in range(concurrency)]
    sample_task = asyncio.create_task(sampler())
    await asyncio.gather(*tasks)
    result.seconds = time.monotonic() - start
    sample_task.cancel()
    if master:
        result.workers_after = worker_pids(master)
    return result


def rss_growth(samples: list[tuple[float, int]],
               warmup: float) -> tuple[int, int, int, float] | None:
    """(RSS at the end of the warm-up, max after it, last, growth) in KiB; None if too short."""
    after = [kib for t, kib in samples if t >= warmup]
    if len(after) < 2:
        return None
    base = after[0]
    return base, max(after), after[-1], max(after) / base - 1


def summarize(result: Result, warmup: float, max_growth: float) -> tuple[dict, list[str]]:
    records = np.array([(s, e, k, ok) for s, e, k, _, ok in result.records], dtype=np.float64) \
        if result.records else np.zeros((0, 4))
    figures = {"requests": len(records), "errors": len(result.errors),
               "seconds": round(result.seconds, 2),
               "requests_per_s": round(len(records) / result.seconds, 1) if result.seconds else 0,
               "kinds": {}, "workers": {}}
    missed = []
    for k, kind in enumerate(KINDS):
        mine = records[records[:, 2] == k] if len(records) else records
        latency = (mine[:, 1] - mine[:, 0]) * 1000
        good = latency[mine[:, 3] == 1] if len(mine) else latency
        figures["kinds"][kind] = {
            "requests": int(len(mine)),
            "p50_ms": round(float(np.percentile(good, 50)), 2) if len(good) else None,
            "p99_ms": round(float(np.percentile(good, 99)), 2) if len(good) else None,
        }
    if result.errors:
        missed.append(f"{len(result.errors)} errors (target 0)")
    for pid, samples in sorted(result.rss.items()):
        growth = rss_growth(samples, warmup)
        entry = {"samples": len(samples)}
        if growth:
            base, peak, last, ratio = growth
            entry.update(rss_after_warmup_kib=base, rss_max_kib=peak, rss_last_kib=last,
                         growth=round(ratio, 4))
            if ratio >= max_growth:
                missed.append(f"worker {pid}: RSS grew {ratio:.1%} after the warm-up "
                              f"(target < {max_growth:.0%})")
        figures["workers"][str(pid)] = entry
    if result.workers_before:
        if not any("growth" in w for w in figures["workers"].values()):
            missed.append("no worker RSS measured after the warm-up (run longer than --warmup)")
        if result.workers_after != result.workers_before:
            missed.append(f"workers changed: {sorted(result.workers_before)} -> "
                          f"{sorted(result.workers_after)}")
    return figures, missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds before the RSS baseline is taken")
    parser.add_argument("--batch-every", type=int, default=5,
                        help="every N-th request of a client is a 100-row one (0: none)")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--max-rss-growth", type=float, default=0.10)
    parser.add_argument("--model-dir", help="a trained model directory (default: train the demo)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--port", type=int, help="load a running server on 127.0.0.1:PORT")
    parser.add_argument("--server-pid", type=int, help="its master pid (for the workers' RSS)")
    parser.add_argument("--rows-from", help="a model directory or base dir for the request rows "
                                            "(with --port; default: random rows)")
    parser.add_argument("--json", help="write the figures, errors and RSS samples here")
    parser.add_argument("--records", help="write every request as start,end,kind,status,ok")
    parser.add_argument("--no-targets", action="store_true",
                        help="exit 0 even if a target is missed")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="costaware-load-")
    proc = None
    try:
        if args.port:
            port, master = args.port, args.server_pid
            model_dir = args.rows_from or args.model_dir
            rows = load_rows(model_dir, None) if model_dir else None
        else:
            base_dir, model_dir = None, args.model_dir
            if not model_dir:
                base_dir = os.path.join(tmp, "ml")
                model_dir = train_demo_model(base_dir)
            rows = load_rows(model_dir, base_dir)
            port = free_port()
            proc = start_server(model_dir, port, args.workers, os.path.join(tmp, "serve.log"))
            master = proc.pid
        if rows is None:
            raise SystemExit("--port needs --rows-from (a model directory) for the request rows")
        requests = build_requests(rows, port)
        result = asyncio.run(run_load("127.0.0.1", port, master, requests, args.concurrency,
                                      args.seconds, args.batch_every, args.max_requests,
                                      args.timeout))
        figures, missed = summarize(result, args.warmup, args.max_rss_growth)
        figures.update(concurrency=args.concurrency, warmup=args.warmup,
                       batch_every=args.batch_every, missed=missed,
                       load_average=round(os.getloadavg()[0], 2), cpus=os.cpu_count())
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
              f"concurrency {args.concurrency}, {result.seconds:.1f} s, every "
              f"{args.batch_every}th request 100 rows")
        print(f"requests: {figures['requests']}  errors: {figures['errors']}  "
              f"({figures['requests_per_s']:.0f} requests/s)")
        for kind, entry in figures["kinds"].items():
            print(f"  {kind:9s} {entry['requests']:7d} requests  p50 {entry['p50_ms']} ms  "
                  f"p99 {entry['p99_ms']} ms")
        for pid, entry in figures["workers"].items():
            if "growth" in entry:
                print(f"  worker {pid}: RSS {entry['rss_after_warmup_kib'] / 1024:.1f} MiB after "
                      f"{args.warmup:g} s warm-up, max {entry['rss_max_kib'] / 1024:.1f} MiB, last "
                      f"{entry['rss_last_kib'] / 1024:.1f} MiB: growth {entry['growth']:+.2%}")
        for error in result.errors[:10]:
            print(f"  error: {error}")
        print("targets: " + ("MET" if not missed else "MISSED: " + "; ".join(missed)))
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump({**figures, "error_list": result.errors,
                           "rss_samples": {str(p): s for p, s in result.rss.items()},
                           "workers_before": sorted(result.workers_before),
                           "workers_after": sorted(result.workers_after)}, handle)
        if args.records:
            with open(args.records, "w", encoding="utf-8") as handle:
                for start, end, kind, status, ok in result.records:
                    handle.write(f"{start:.6f},{end:.6f},{kind},{status},{int(ok)}\n")
        return 1 if missed and not args.no_targets else 0
    finally:
        stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
