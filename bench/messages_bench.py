"""Benchmarks of the delivery queue (issue 4): messages/s rendered, built and delivered into
a local SMTP sink (aiosmtpd in its own process, connection reuse, several connections),
and the cost of the send-time checks per message.

``python bench/messages_bench.py [--quick]``, or call the functions from bench/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from mailsink import free_port, put_messages  # noqa: E402

from flowmail.clock import SystemClock  # noqa: E402
from flowmail.delivery.breaker import Breakers  # noqa: E402
from flowmail.delivery.compose import Composer, Identity  # noqa: E402
from flowmail.delivery.policy import PolicyConfig, QuietHours  # noqa: E402
from flowmail.delivery.providers.smtp import SmtpProvider  # noqa: E402
from flowmail.delivery.sender import Sender, SenderOptions  # noqa: E402
from flowmail.delivery.setup import template_source  # noqa: E402
from flowmail.store import messages as queue  # noqa: E402
from flowmail.store.migrate import upgrade  # noqa: E402
from flowmail.store.sql import SqlStore, create_db_engine  # noqa: E402
from flowmail.store.templates import save_template  # noqa: E402
from flowmail.templates.model import Template  # noqa: E402

IDENTITY = Identity(
    "news@flowmail.test", "Flowmail", "https://mail.flowmail.test", "k", "1 Main St"
)
SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname  # and advertise PIPELINING, as Postfix and Exim do
        return [*responses[:-1], "250-PIPELINING", responses[-1]]
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 OK"
c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
print(Count.n, flush=True)
"""
_PARAGRAPH = (
    "<tr><td style='padding:12px;font-family:Arial'><h2>Picks of the week</h2><p>Lorem ipsum "
    "dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation.</p>"
    "<a href='https://example.com/picks'>See the picks</a></td></tr>"
)
NEWSLETTER = Template(  # about 5 KB of HTML, 10 variables, 12 links
    name="newsletter",
    subject="{{ contact.first_name }}, your weekly picks",
    html="<html><body><table>"
    "<tr><td>Hi {{ contact.first_name }} {{ contact.last_name }} in {{ contact.city }},"
    " plan {{ contact.plan }} since {{ contact.since }}, {{ contact.points }} points,"
    " tier {{ contact.tier }}, {{ workflow.name }}, {{ event.name }}.</td></tr>"
    + _PARAGRAPH
    * 11
    + "<tr><td><a href='{{ unsubscribe_url }}'>Unsubscribe</a> {{ postal_address }}</td></tr>"
    "</table></body></html>",
)


def new_store(folder: Path, url: str | None = None) -> SqlStore:
    url = url or f"sqlite:///{folder / f'messages-{time.monotonic_ns()}.db'}"
    engine = create_db_engine(url)
    upgrade(engine, datetime.now(UTC))
    engine.dispose()
    return SqlStore.from_url(url)


def delivered_per_second(
    folder: Path, total: int, connections: int = 4, templated: bool = True, url: str | None = None
) -> float:
    """Messages/s from queued to sent (claim, check, render, build, SMTP, record)."""
    store = new_store(folder, url)
    now = datetime.now(UTC)
    if templated:
        save_template(store, "default", NEWSLETTER, now)
    put_messages(
        store,
        [
            {"id": f"m{i:07}", "to": f"p{i}@example.com", "contact": f"c{i}",
             "template": "newsletter" if templated else None}
            for i in range(total)
        ],
        now - timedelta(seconds=1),
    )  # fmt: skip
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    provider = SmtpProvider(host="127.0.0.1", port=port, connections=connections)
    sender = Sender(
        store,
        SystemClock(),
        {"smtp": provider},
        Composer(IDENTITY, template_source(store, folder / "none")),
        primary="smtp",
        options=SenderOptions(batch=1000, chunk=200, policy=PolicyConfig(max_daily_sends=0)),
        breakers=Breakers(),
    )

    async def run() -> None:
        try:
            await sender.drain()
        finally:
            await sender.close()

    start = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - start
    received = int(sink.communicate("")[0].strip() or 0)
    store.close()
    assert sender.counts.sent == total == received, (sender.counts, received)
    return total / elapsed


def check_cost_us(folder: Path, total: int) -> tuple[float, float]:
    """(µs per message for the pure policy, µs per message for loading what it needs)."""
    store = new_store(folder)
    now = datetime.now(UTC)
    # 1,000 contacts, each with recent sends, some suppressed: realistic lookups
    put_messages(
        store,
        [{"id": f"m{i:07}", "to": f"p{i % 1000}@example.com", "contact": f"c{i % 1000}"}
         for i in range(total)],
        now,
    )  # fmt: skip
    for i in range(0, 1000, 50):
        queue.add_suppression(store, "default", f"p{i}@example.com", "unsubscribed", "b", now)
    claimed = queue.claim_messages(store, "bench", now, total, timedelta(minutes=5))
    start = time.perf_counter()
    audience = queue.load_audience(store, claimed, now, timedelta(hours=24))
    load = time.perf_counter() - start
    sender = Sender(
        store,
        SystemClock(),
        {},
        Composer(IDENTITY, template_source(store, folder / "none")),
        primary="smtp",
        options=SenderOptions(policy=PolicyConfig(quiet_hours=QuietHours.parse("22-7"))),
    )
    start = time.perf_counter()
    sender.check(claimed, audience, now)
    checks = time.perf_counter() - start
    store.close()
    return checks / len(claimed) * 1e6, load / len(claimed) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    total = int(10_000 * scale)
    with tempfile.TemporaryDirectory(prefix="flowmail-bench-") as tmp:
        folder = Path(tmp)
        for connections in (1, 4, 8):
            rate = delivered_per_second(folder, total, connections, templated=False)
            print(f"delivered, subject-only, {connections} connection(s): {rate:,.0f} messages/s")
        rate = delivered_per_second(folder, total, 8, templated=True)
        print(f"delivered, 5 KB HTML template rendered + tracked, 8 connections: {rate:,.0f}/s")
        policy, load = check_cost_us(folder, total)
        print(f"send-time checks: policy {policy:.1f} µs/message, lookups {load:.1f} µs/message")


if __name__ == "__main__":
    main()
