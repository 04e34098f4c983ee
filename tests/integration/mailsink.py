"""A real SMTP server (aiosmtpd) on loopback that keeps what it receives, and misbehaves
on request: by the recipient's local part, or for everything while ``down``.

=============  =================================================================
local part     what the server does
=============  =================================================================
``bounce*``    ``550 5.1.1`` at RCPT (a hard bounce)
``busy*``      ``450 4.2.1`` at DATA (transient)
``closing*``   ``421 4.3.2`` at DATA (transient)
``slow*``      waits ``slow_seconds`` before answering DATA (the client times out)
``drop*``      drops the connection during DATA
anything else  ``250``: the message is kept
=============  =================================================================
"""

from __future__ import annotations

import asyncio
import email
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller

from flowmail.store import hot
from flowmail.store.schema import to_micros


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt: str
    content: bytes

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.content, policy=default)
        assert isinstance(message, EmailMessage)
        return message

    @property
    def message_id(self) -> str:
        return str(self.parsed()["Message-ID"]).strip("<>")


@dataclass
class Handler:
    slow_seconds: float = 2.0
    down: bool = False  # 421 to every MAIL FROM
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    data_calls: int = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.down:
            return "421 4.3.2 service not available"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("bounce"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        rcpt = envelope.rcpt_tos[0]
        if rcpt.startswith("busy"):
            return "450 4.2.1 mailbox busy, try later"
        if rcpt.startswith("closing"):
            return "421 4.3.2 closing, try later"
        if rcpt.startswith("slow"):
            await asyncio.sleep(self.slow_seconds)
        if rcpt.startswith("drop"):
            server.transport.close()
            return "421 gone"
        with self.lock:
            self.received.append(Received(envelope.mail_from, rcpt, envelope.content))
        return "250 2.0.0 queued as " + str(len(self.received))


class MailSink:
    """``with MailSink() as sink:`` a server on ``sink.port``; ``sink.received``."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler or Handler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> MailSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)


def put_messages(store: Any, messages: list[dict[str, Any]], at: datetime) -> None:
    """Queue messages as the worker's commit does (``id`` and ``to`` at least)."""
    micros = to_micros(at)
    rows = [
        (
            "default", m["id"], f"run-{m['id']}", m.get("contact", "c1"),
            m.get("workflow", "wf"), 1, m.get("step", "s1"), m["to"], m.get("template"),
            m.get("subject", "Hello there"), m.get("topic", "marketing"),
            m.get("priority", 0), m.get("on_capped", "defer"), None,
            to_micros(m["at"]) if "at" in m else micros,
            to_micros(m["at"]) if "at" in m else micros,
        )
        for m in messages
    ]  # fmt: skip
    with store.engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            hot.MESSAGE_INSERT.run(conn, rows[start : start + 1000])
