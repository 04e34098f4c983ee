"""flowmail benchmarks: ``make bench`` (or ``python bench/run.py [--quick] [--only NAME]``).

Prints one table; copy the figures into bench/RESULTS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import runtime
from common import Databases, Row, postgres
from rich.console import Console
from rich.table import Table

SECTIONS = ("ingest", "engine", "latency", "timers", "memory", "messages", "api", "dashboard")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small scales, for a smoke run")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only these")
    args = parser.parse_args()
    sections = args.only or list(SECTIONS)
    scale = 0.1 if args.quick else 1.0
    console = Console(width=150)
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flowmail-bench-") as tmp, postgres() as pg_url:
        folder = Path(tmp)
        dbs = Databases(folder, pg_url)
        log = folder / "workers.log"
        for name in sections:
            console.print(f"[bold]{name}[/] ...")
            rows += SECTION_RUNNERS[name](dbs, scale, log)
    table = Table(
        title=f"flowmail benchmarks — {platform.node()}, {os.cpu_count()} cores, "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )
    for column in ("measure", "backend", "result", "target", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.what, row.backend, f"{row.value:,.2f} {row.unit}", row.target, row.note)
    console.print(table)
    console.print(f"took {time.perf_counter() - started:.0f} s")


def _ingest(dbs: Databases, scale: float, log: Path) -> list[Row]:
    total = int(100_000 * scale)
    return [runtime.ingestion(dbs, backend, total) for backend in ("sqlite", "postgres")]


def _engine(dbs: Databases, scale: float, log: Path) -> list[Row]:
    total = int(30_000 * scale)
    rows = [
        Row(
            "engine: event -> run -> outbox, 1 worker (in process)",
            "sqlite",
            runtime.engine_in_process(dbs, "sqlite", total, total),
            "events/s",
            "5,000/s (stretch 10,000/s)",
        )
    ]
    for workers in (1, 2, 4):
        rows.append(
            Row(
                f"engine: {workers} worker process(es)",
                "postgres",
                runtime.engine_processes(dbs, "postgres", workers, total * 2, log),
                "events/s",
                "scales until 2 cores are saturated",
            )
        )
    return rows


def _latency(dbs: Databases, scale: float, log: Path) -> list[Row]:
    seconds = max(3.0, 10 * scale)
    rows = []
    for backend in ("sqlite", "postgres"):
        p50, p99 = runtime.latency(dbs, backend, 1000, seconds, log)
        rows.append(
            Row(
                "latency at 1,000 events/s: accepted -> committed, p50",
                backend,
                p50 * 1000,
                "ms",
                "",
            )
        )
        rows.append(
            Row(
                "latency at 1,000 events/s: accepted -> committed, p99",
                backend,
                p99 * 1000,
                "ms",
                "p99 < 1,000 ms",
            )
        )
    return rows


def _timers(dbs: Databases, scale: float, log: Path) -> list[Row]:
    waiting, due = int(1_000_000 * scale), int(100_000 * scale)
    fired, rate = runtime.timers(dbs, "sqlite", waiting, due)
    lag = runtime.lone_timer_lag(dbs, "sqlite", 20, log)
    return [
        Row(
            f"timers: {due:,} of {waiting:,} waiting runs fall due at once",
            "sqlite",
            fired,
            "s",
            "< 20 s",
            f"{rate:,.0f} wakes/s",
        ),
        Row(
            "timers: lone timer lag, p99 of 20, idle worker",
            "sqlite",
            lag * 1000,
            "ms",
            "< 1,000 ms",
        ),
    ]


def _memory(dbs: Databases, scale: float, log: Path) -> list[Row]:
    rows = []
    for waiting in (10_000, 100_000, 1_000_000):
        waiting = max(1000, int(waiting * scale))
        rss, rate = runtime.memory_and_cost(
            dbs, "sqlite", waiting, int(10_000 * scale) or 1000, log
        )
        rows.append(
            Row(
                f"worker peak RSS, {waiting:,} waiting runs in the store",
                "sqlite",
                rss,
                "MB",
                "< 150 MB, flat",
            )
        )
        rows.append(
            Row(
                f"cost curve: events/s with {waiting:,} contacts in the store",
                "sqlite",
                rate,
                "events/s",
                "flat",
            )
        )
    return rows


def _messages(dbs: Databases, scale: float, log: Path) -> list[Row]:
    import messages_bench
    import mime_bench
    import templates_bench

    total = max(1000, int(10_000 * scale))
    rows = [
        Row(
            "template renders, 5 KB HTML + 10 variables",
            "-",
            templates_bench.template_renders_per_second(),
            "renders/s",
            "5,000/s",
        ),
        Row(
            "MIME messages built (ours)",
            "-",
            mime_bench.messages_built_per_second(),
            "messages/s",
            "not the limit",
        ),
        Row(
            "MIME messages built (stdlib EmailMessage)",
            "-",
            mime_bench.emailmessage_built_per_second(),
            "messages/s",
            "for comparison",
        ),
    ]
    for connections in (1, 4, 8):
        rate = messages_bench.delivered_per_second(dbs.folder, total, connections, False)
        rows.append(
            Row(
                f"delivered into an aiosmtpd sink, subject-only, {connections} conn.",
                "sqlite",
                rate,
                "messages/s",
                "1,000/s",
            )
        )
    rate = messages_bench.delivered_per_second(dbs.folder, total, 8, True)
    rows.append(
        Row(
            "delivered, 5 KB template with tracked links, 8 conn.",
            "sqlite",
            rate,
            "messages/s",
            "1,000/s",
        )
    )
    policy, lookups = messages_bench.check_cost_us(dbs.folder, total)
    rows.append(
        Row(
            "send-time checks: policy / lookups per message",
            "sqlite",
            policy + lookups,
            "µs",
            "",
            f"{policy:.0f} µs policy + {lookups:.0f} µs lookups",
        )
    )
    return rows


def _api(dbs: Databases, scale: float, log: Path) -> list[Row]:
    import api_bench

    seconds = max(3.0, 10 * scale)
    url = dbs.new("sqlite")
    track = api_bench.track_calls(url, seconds=seconds)
    batch = api_bench.batch_events(dbs.new("sqlite"), seconds=seconds)
    return [
        Row(
            "HTTP /v1/track, single calls",
            "sqlite",
            track.rate,
            "requests/s",
            "2,000/s, p95 < 50 ms",
            f"p95 {track.percentile(0.95) * 1000:.1f} ms, {track.errors} errors",
        ),
        Row(
            "HTTP /v1/batch, 500 events a call",
            "sqlite",
            batch.event_rate,
            "events/s",
            "20,000/s",
            f"{batch.errors} errors",
        ),
    ]


def _dashboard(dbs: Databases, scale: float, log: Path) -> list[Row]:
    import dashboard_bench

    return dashboard_bench.rows(dbs, int(1_000_000 * scale), 10, ("sqlite", "postgres"))


SECTION_RUNNERS = {
    "ingest": _ingest,
    "engine": _engine,
    "latency": _latency,
    "timers": _timers,
    "memory": _memory,
    "messages": _messages,
    "api": _api,
    "dashboard": _dashboard,
}

if __name__ == "__main__":
    main()
