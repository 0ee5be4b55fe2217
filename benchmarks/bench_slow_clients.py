"""Slow clients: the latency of normal clients while 50 slow and 2 stalled clients hold connections,
against the same clients' latency without them, measured in the same run.

    python benchmarks/bench_slow_clients.py [--model-dir DIR] [--workers N] [--seconds S]
                                            [--concurrency C] [--slow 50] [--stalled 2]

Without ``--model-dir`` it trains the breast-cancer demo model with the real training entry point.
It starts the real ``serve`` (defaults: ``--workers`` the CPU count, ``COSTAWARE_READ_TIMEOUT``
60 s), then runs three phases of ``--seconds`` each: unloaded, loaded, unloaded again. In each,
``--concurrency`` normal clients (threads, one keep-alive ``http.client`` connection each) send
single-row JSON requests one after another. During the loaded phase, ``--slow`` clients send a
request's head and then its body one byte a second, and ``--stalled`` clients send the head and
part of the body and then nothing; both kinds stay under the read timeout, so they hold their
connections for the whole phase.

Prints, per phase: requests, errors (non-200, timeouts of 10 s, connection failures), p50 and
p99; then the loaded p99 over each unloaded p99 (goal: at most 2) and over the better of the two
(the machine may be shared: a burst of load elsewhere would otherwise decide the ratio). Not a
test: the figures depend on the machine; tests/test_robustness.py checks only that every probe is
answered while such clients stall.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_serving import serve_demo, stop_server  # noqa: E402

REQUEST_TIMEOUT = 10.0  # a normal request not answered by then is an error


def normal_clients(port: int, rows: np.ndarray, concurrency: int,
                   seconds: float) -> tuple[np.ndarray, int]:
    """Latencies (s) of single-row requests from ``concurrency`` clients, and the error count."""
    bodies = [json.dumps({"instances": [row]}).encode() for row in rows.tolist()]
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop_at = time.perf_counter() + seconds

    def client(k: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        i = k
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/invocations", bodies[i % len(bodies)], headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
            latencies[k].append(time.perf_counter() - t0)
            errors[k] += not ok
            i += concurrency
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return np.array([x for per in latencies for x in per]), sum(errors)


class SlowClients:
    """``slow`` connections sending a body one byte a second, ``stalled`` ones sending part of it
    once; from one thread, until ``stop``."""

    def __init__(self, port: int, body: bytes, slow: int, stalled: int):
        head = (b"POST /invocations HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode())
        self.slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(slow)]
        self.stalled = [socket.create_connection(("127.0.0.1", port), timeout=5)
                        for _ in range(stalled)]
        for sock in self.slow:
            sock.sendall(head)
        for sock in self.stalled:
            sock.sendall(head + body[:len(body) // 2])
        self.body = body
        self.sent = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.trickle)
        self.thread.start()

    def trickle(self):
        while not self.done.wait(1.0) and self.sent < len(self.body) - 1:
            for sock in self.slow:
                sock.sendall(self.body[self.sent:self.sent + 1])
            self.sent += 1

    def stop(self) -> int:
        """Close every connection; how many were still open (the server had not closed them)."""
        self.done.set()
        self.thread.join()
        still_open = 0
        for sock in self.slow + self.stalled:
            sock.setblocking(False)
            try:
                sock.recv(1)  # b"" (closed) or an answer: the server let go of it
            except BlockingIOError:
                still_open += 1  # nothing to read, not closed: the server still waits for it
            except OSError:
                pass
            sock.close()
        return still_open


def summary(name: str, latencies: np.ndarray, errors: int) -> str:
    return (f"  {name:<34} {len(latencies):6d} requests  {errors:3d} errors  "
            f"p50 {np.percentile(latencies, 50) * 1000:7.2f} ms  "
            f"p99 {np.percentile(latencies, 99) * 1000:7.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="a trained model directory (default: train the demo)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", type=int, default=4, help="normal clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--slow", type=int, default=50, help="clients sending a byte a second")
    parser.add_argument("--stalled", type=int, default=2, help="clients that stop mid-body")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="costaware-bench-")
    proc = None
    try:
        _, rows, port, proc = serve_demo(args.model_dir, tmp, args.workers)
        normal_clients(port, rows, args.concurrency, 1.0)  # warm-up

        before = normal_clients(port, rows, args.concurrency, args.seconds)
        body = json.dumps({"instances": [rows[0].tolist()]}).encode()
        slow = SlowClients(port, body, args.slow, args.stalled)
        loaded = normal_clients(port, rows, args.concurrency, args.seconds)
        held = slow.stop()
        after = normal_clients(port, rows, args.concurrency, args.seconds)

        p99 = {name: np.percentile(result[0], 99)
               for name, result in (("before", before), ("loaded", loaded), ("after", after))}
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (other "
              f"processes included); server: {args.workers} workers; {args.concurrency} normal "
              f"clients, single-row JSON, {args.seconds:g} s per phase")
        print(summary("unloaded", *before))
        print(summary(f"{args.slow} slow + {args.stalled} stalled clients", *loaded))
        print(summary("unloaded again", *after))
        print(f"  slow and stalled connections still open at the end of their phase: "
              f"{held} of {args.slow + args.stalled}")
        best = min(p99["before"], p99["after"])
        ratio = p99["loaded"] / best
        print("ratios (loaded p99 / unloaded p99)")
        print(f"  against the first unloaded phase  = {p99['loaded'] / p99['before']:.2f}")
        print(f"  against the second unloaded phase = {p99['loaded'] / p99['after']:.2f}")
        print(f"  against the better of the two     = {ratio:.2f}  (goal <= 2.00)  "
              f"{'MET' if ratio <= 2.0 and loaded[1] == 0 else 'MISSED'}")
        return 0
    finally:
        stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
