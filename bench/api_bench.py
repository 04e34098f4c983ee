"""HTTP API load check: a real ``flowmail serve`` (uvicorn) and a load generator in other
processes, over loopback.

``python bench/api_bench.py [--seconds 10] [--backend sqlite|postgres]`` prints:

- sustained single-call ``POST /v1/track`` requests/s with p50/p95/p99 latency
  (target: 2,000/s with p95 under 50 ms);
- events/s through ``POST /v1/batch`` (target: 20,000/s).

The load generator is a few processes of plain asyncio sockets with keep-alive
connections (an HTTP client library would cost more CPU than the server under test on
a 2-core machine); each request carries a fresh messageId, so every event is written.
Every response is checked for status 200. Nothing but 127.0.0.1 is ever contacted, and
every loop stops after its time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Load:
    """Results of one run of the load generator, all processes together."""

    requests: int
    events: int
    errors: int
    seconds: float
    latencies: list[float]  # seconds, one per request

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def event_rate(self) -> float:
        return self.events / self.seconds

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


# --- the server ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(db_url: str, folder: Path) -> Iterator[tuple[int, str]]:
    """``flowmail serve`` on a free port; yields (port, ingest key). Stopped with SIGTERM."""
    from flowmail.bootstrap import open_store
    from flowmail.settings import Settings
    from flowmail.store.keys import Role, create_key

    store = open_store(Settings(database_url=db_url), migrate=True)
    key = create_key(store, "default", Role.INGEST, "bench", datetime.now(UTC))[1]
    store.close()
    port = _free_port()
    env = {
        **os.environ,
        "FLOWMAIL_DATABASE_URL": db_url,
        "FLOWMAIL_API_PORT": str(port),
        "FLOWMAIL_RATE_LIMIT_PER_KEY": "0",
    }
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "flowmail", "serve", "--host", HOST],
        env=env,
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_up(port, process)
        yield port, key
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _wait_until_up(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server stopped while starting")
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                if sock.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not start in 60 s")


# --- the load generator -------------------------------------------------------------------


def _request(path: str, key: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _track_body(prefix: str, n: int) -> tuple[bytes, int]:
    body = {
        "userId": f"user-{n % 5000}",
        "event": "page_viewed",
        "properties": {"path": "/pricing", "n": n},
        "messageId": f"{prefix}-{n}",
    }
    return json.dumps(body).encode(), 1


def _batch_body(prefix: str, n: int, size: int) -> tuple[bytes, int]:
    batch = [
        {
            "type": "track",
            "userId": f"user-{(n * size + i) % 5000}",
            "event": "page_viewed",
            "properties": {"path": "/pricing", "i": i},
            "messageId": f"{prefix}-{n}-{i}",
        }
        for i in range(size)
    ]
    return json.dumps({"batch": batch}).encode(), size


async def _connection(
    port: int, key: str, path: str, batch: int, stop_at: float, prefix: str, out: dict[str, Any]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    n = 0
    try:
        while time.perf_counter() < stop_at:
            body, events = _batch_body(prefix, n, batch) if batch else _track_body(prefix, n)
            n += 1
            started = time.perf_counter()
            writer.write(_request(path, key, body))
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            out["latencies"].append(time.perf_counter() - started)
            if head.startswith(b"HTTP/1.1 200"):
                out["requests"] += 1
                out["events"] += events
            else:
                out["errors"] += 1
    finally:
        writer.close()


def _generator(
    port: int, key: str, path: str, batch: int, connections: int, seconds: float, queue: Any
) -> None:
    """One load process: ``connections`` keep-alive connections for ``seconds``."""
    out: dict[str, Any] = {"requests": 0, "events": 0, "errors": 0, "latencies": []}
    prefix = uuid.uuid4().hex[:8]

    async def main() -> None:
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _connection(port, key, path, batch, stop_at, f"{prefix}{c}", out)
                for c in range(connections)
            )
        )

    asyncio.run(main())
    queue.put(out)


def generate(
    port: int,
    key: str,
    *,
    path: str = "/v1/track",
    batch: int = 0,
    processes: int = 1,
    connections: int = 16,
    seconds: float = 10.0,
) -> Load:
    """Run the load generator in ``processes`` separate processes; gather their results."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(
            target=_generator, args=(port, key, path, batch, connections, seconds, queue)
        )
        for _ in range(processes)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    elapsed = max(seconds, time.perf_counter() - started - 1.0)  # less the processes' start
    return Load(
        requests=sum(r["requests"] for r in results),
        events=sum(r["events"] for r in results),
        errors=sum(r["errors"] for r in results),
        seconds=min(elapsed, seconds),
        latencies=[x for r in results for x in r["latencies"]],
    )


# --- the measures -------------------------------------------------------------------------


def track_calls(db_url: str, seconds: float = 10.0, connections: int = 16) -> Load:
    """Sustained single ``/v1/track`` calls: requests/s and latency."""
    with (
        tempfile.TemporaryDirectory(prefix="flowmail-api-bench-") as tmp,
        server(db_url, Path(tmp)) as (port, key),
    ):
        generate(port, key, seconds=1.0, connections=4)  # warm up
        return generate(port, key, seconds=seconds, connections=connections)


def batch_events(db_url: str, seconds: float = 10.0, size: int = 500, connections: int = 4) -> Load:
    """Events/s through ``/v1/batch`` with ``size`` events a call."""
    with (
        tempfile.TemporaryDirectory(prefix="flowmail-api-bench-") as tmp,
        server(db_url, Path(tmp)) as (port, key),
    ):
        generate(port, key, path="/v1/batch", batch=size, seconds=1.0, connections=1)
        return generate(
            port, key, path="/v1/batch", batch=size, seconds=seconds, connections=connections
        )


def _report(name: str, load: Load, target: str) -> None:
    median = statistics.median(load.latencies) * 1000 if load.latencies else float("nan")
    print(
        f"{name}: {load.rate:,.0f} requests/s, {load.event_rate:,.0f} events/s, "
        f"p50 {median:.1f} ms, p95 {load.percentile(0.95) * 1000:.1f} ms, "
        f"p99 {load.percentile(0.99) * 1000:.1f} ms, errors {load.errors} "
        f"({load.requests:,} requests in {load.seconds:.1f} s) — target {target}"
    )


@contextmanager
def _database(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from common import postgres

    with postgres() as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowmail-api-db-") as tmp:
        with _database(args.backend, Path(tmp)) as url:
            track = track_calls(url, args.seconds, args.connections)
        _report(f"track calls ({args.backend})", track, "2,000/s, p95 < 50 ms")
    with tempfile.TemporaryDirectory(prefix="flowmail-api-db-") as tmp:
        with _database(args.backend, Path(tmp)) as url:
            batch = batch_events(url, args.seconds)
        _report(f"batch of 500 ({args.backend})", batch, "20,000 events/s")


if __name__ == "__main__":
    main()
