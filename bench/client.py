"""Load generators run as separate processes, so client work does not share the server's CPU
time slice. Prints one JSON line with what it measured.

    python -m bench.client ingest URL KEY FILE CONCURRENCY   POST pre-built batches, keep-alive
    python -m bench.client read URL SECONDS CONCURRENCY PATH [PATH…]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


async def ingest(url: str, key: str, path: str, concurrency: int) -> None:
    with open(path, encoding="utf-8") as file:
        batches = [line.strip() for line in file if line.strip()]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    points = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def pusher(client: httpx.AsyncClient, share: list[str]) -> None:
        nonlocal points
        for body in share:
            response = await client.post("/v1/metrics:batch", content=body, headers=headers)
            response.raise_for_status()
            points += response.json()["counts"]["received"]

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(pusher(client, batches[n::concurrency]) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(json.dumps({"points": points, "seconds": elapsed}))


async def read(url: str, seconds: float, concurrency: int, paths: list[str]) -> None:
    done = 0
    failed = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal done, failed
        index = offset
        while time.perf_counter() < deadline:
            response = await client.get(paths[index % len(paths)])
            index += 1
            if response.status_code == 200:
                done += 1
            else:
                failed += 1

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client, n) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(json.dumps({"requests": done, "failed": failed, "seconds": elapsed}))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "ingest":
        asyncio.run(ingest(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
    else:
        asyncio.run(read(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]))
