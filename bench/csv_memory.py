"""Peak memory of `cerdas serve` while it loads a large metric CSV, against a small one.

    .venv/bin/python -m bench.csv_memory [--points 100000]

Starts `cerdas serve` on embedded servers in a temporary folder, creates a ministry key, and
streams a CSV of N points (and of N/10, for comparison) from this process while sampling the
server's resident memory. Prints the server's RSS before and at peak for each load.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import httpx
import psutil


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _csv(points: int, regions: list[str], offset: int) -> Iterator[bytes]:
    yield b"region,metric,period,value\n"
    rows: list[str] = []
    metrics = ("active_users", "integrated_apps", "integrated_apps_target")
    n = 0
    month = 0
    while n < points:
        period = f"{2015 + month // 12}-{month % 12 + 1:02d}"
        for region in regions:
            for metric in metrics:
                if n == points:
                    break
                rows.append(f"{region},{metric},{period},{n + offset}\n")
                n += 1
        month += 1
        if len(rows) >= 5000:
            yield "".join(rows).encode()
            rows = []
    yield "".join(rows).encode()


def _peak_rss(process: psutil.Process, stop: threading.Event, out: list[int]) -> None:
    peak = 0
    while not stop.is_set():
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.02)
    out.append(peak)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=100_000)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="cerdas-bench-")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(CERDAS_DATA_DIR=data, PORT=str(port), CERDAS_LOG_LEVEL="warning")
    key = ""
    server = subprocess.Popen([sys.executable, "-m", "services.cli", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        key = subprocess.run(
            [sys.executable, "-m", "services.cli", "keys", "create", "--role", "ministry-admin",
             "--name", "bench"], env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        regions = [r["code"] for r in httpx.get(f"{base}/v1/regions", params={"limit": 1000})
                   .json()["items"] if r["kind"] != "provinsi"]  # fmt: skip
        process = psutil.Process(server.pid)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "text/csv"}
        for points, offset in ((args.points // 10, 0), (args.points, 1)):
            before = process.memory_info().rss
            stop, peak = threading.Event(), []
            sampler = threading.Thread(target=_peak_rss, args=(process, stop, peak))
            sampler.start()
            started = time.perf_counter()
            body = _csv(points, regions, offset)
            response = httpx.post(
                f"{base}/v1/metrics:import", content=body, headers=headers, timeout=600
            )
            elapsed = time.perf_counter() - started
            stop.set()
            sampler.join()
            counts = response.json()["counts"]
            print(
                f"{points:>7} points: {response.status_code} {counts} in {elapsed:.1f}s; "
                f"server RSS {before / 2**20:.0f} MiB before, peak {peak[0] / 2**20:.0f} MiB "
                f"(+{(peak[0] - before) / 2**20:.0f} MiB)"
            )
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
