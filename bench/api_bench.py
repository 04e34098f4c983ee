"""HTTP API load check: a real ``flowmail serve`` (uvicorn) and a load generator in other
processes, over loopback.

``python bench/api_bench.py [--quick] [--backend sqlite|postgres]`` prints a table of:

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
import re
import signal
import socket
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

sys.path.insert(0, str(Path(__file__).parent))

HOST = "127.0.0.1"
BACKENDS = ("sqlite", "postgres")


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


@contextmanager
def server(db_url: str, folder: Path) -> Iterator[tuple[int, str]]:
    """``flowmail serve`` on a free port; yields (port, ingest key). Stopped with SIGTERM."""
    from flowmail.bootstrap import open_store
    from flowmail.settings import Settings
    from flowmail.store.keys import Role, create_key

    store = open_store(Settings(database_url=db_url), migrate=True)
    key = create_key(store, "default", Role.INGEST, "bench", datetime.now(UTC))[1]
    store.close()
    env = {**os.environ, "FLOWMAIL_DATABASE_URL": db_url, "FLOWMAIL_RATE_LIMIT_PER_KEY": "0"}
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "flowmail", "serve", "--host", HOST, "--port", "0"],
        env=env,
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield _wait_until_up(process, folder / "server.log"), key
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _wait_until_up(process: subprocess.Popen[bytes], log: Path) -> int:
    """The port the server picked, once it answers /health."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server stopped while starting:\n{log.read_text()}")
        found = re.search(rf"Uvicorn running on http://{HOST}:(\d+)", log.read_text())
        if found:
            try:
                with socket.create_connection((HOST, int(found[1])), timeout=1) as sock:
                    sock.sendall(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                    if sock.recv(100).startswith(b"HTTP/1.1 200"):
                        return int(found[1])
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


def rows(dbs: Any, scale: float = 1.0, backends: tuple[str, ...] = BACKENDS) -> list[Any]:
    """The measures as ``common.Row``s (for ``bench/run.py``): fresh databases from
    ``dbs`` (a ``common.Databases``), ``10 * scale`` seconds of load each (3 s at least)."""
    from common import Row

    seconds = max(3.0, 10 * scale)
    found = []
    for backend in backends:
        track = track_calls(dbs.new(backend), seconds)
        note = f"p50 {track.percentile(0.5) * 1000:.1f} ms, {track.errors} errors"
        found.append(
            Row(
                "API: single /v1/track calls over HTTP",
                backend,
                track.rate,
                "requests/s",
                "2,000/s",
                note,
            )
        )
        found.append(
            Row(
                "API: /v1/track latency under that load, p95",
                backend,
                track.percentile(0.95) * 1000,
                "ms",
                "p95 < 50 ms",
                f"p99 {track.percentile(0.99) * 1000:.1f} ms",
            )
        )
        batch = batch_events(dbs.new(backend), seconds)
        found.append(
            Row(
                "API: events through /v1/batch (500 a call)",
                backend,
                batch.event_rate,
                "events/s",
                "20,000/s",
                f"p95 {batch.percentile(0.95) * 1000:.0f} ms a call, {batch.errors} errors",
            )
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 s runs, for a smoke run")
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="only these")
    args = parser.parse_args()
    from common import Databases, postgres
    from rich.console import Console
    from rich.table import Table

    backends = tuple(args.backend or BACKENDS)
    with tempfile.TemporaryDirectory(prefix="flowmail-api-bench-") as tmp, postgres() as pg:
        found = rows(Databases(Path(tmp), pg), 0.3 if args.quick else 1.0, backends)
    table = Table(
        title=f"flowmail API load check — {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end, {datetime.now(UTC):%Y-%m-%d}"
    )
    for column in ("measure", "backend", "result", "target", "note"):
        table.add_column(column)
    for row in found:
        table.add_row(row.what, row.backend, f"{row.value:,.1f} {row.unit}", row.target, row.note)
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
