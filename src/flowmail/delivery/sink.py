"""The dev mailbox: a local SMTP sink that keeps every email it receives as a file, and
the reading of those files (for ``/ui/mailbox`` and ``/v1/dev/mailbox``).

``flowmail sink`` listens on loopback (aiosmtpd) and accepts every message. Each one
becomes ``<folder>/<id>.eml``, written under a temporary name, flushed to disk and then
renamed, so that a reader never sees half a message. The id is the time received
(UTC, microseconds) and a random suffix: ids sort by time, and are the only names the
readers open (:data:`MAIL_ID`), so a request can never name another file.

Like a mail server, the sink adds ``Return-Path`` (the envelope sender) and
``X-Envelope-To`` (the envelope recipients, which Bcc makes differ from ``To``) on top.
It keeps at most ``keep`` emails: the oldest go first.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

MAIL_ID = re.compile(r"^(\d{8}T\d{12})Z-([0-9a-f]{8})$")
SUFFIX = ".eml"
HEADER_BYTES = 64 * 1024  # a list reads at most this much of each file
DEFAULT_KEEP = 10_000
PRUNE_EVERY = 100  # messages between looks at the folder's size
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


# --- writing --------------------------------------------------------------------------


def new_mail_id(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}"


def write_mail(folder: Path, content: bytes, now: datetime) -> str:
    """Keep one message atomically: a temporary file, fsync, rename. Returns its id."""
    folder.mkdir(parents=True, exist_ok=True)
    mail_id = new_mail_id(now)
    temporary = folder / f".{mail_id}.tmp"
    with temporary.open("wb") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, folder / f"{mail_id}{SUFFIX}")
    return mail_id


def envelope_headers(mail_from: str, rcpt_tos: list[str]) -> bytes:
    """What a mail server adds on delivery: the envelope, which headers may not show."""
    clean = [re.sub(r"[\r\n]", "", a) for a in (mail_from, *rcpt_tos)]
    return f"Return-Path: <{clean[0]}>\r\nX-Envelope-To: {', '.join(clean[1:])}\r\n".encode()


def prune(folder: Path, keep: int) -> int:
    """Remove the oldest emails beyond ``keep``; returns how many went."""
    ids = mail_ids(folder)
    gone = ids[keep:]
    for mail_id in gone:
        (folder / f"{mail_id}{SUFFIX}").unlink(missing_ok=True)
    return len(gone)


@dataclass
class MailboxHandler:
    """aiosmtpd handler: every message is accepted and kept in ``folder``."""

    folder: Path
    keep: int = DEFAULT_KEEP
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    received: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        heading = envelope_headers(str(envelope.mail_from or ""), list(envelope.rcpt_tos))
        mail_id = write_mail(self.folder, heading + content, self.now())
        with self._lock:
            self.received += 1
            due = self.received % PRUNE_EVERY == 0
        if due:
            prune(self.folder, self.keep)
        return f"250 2.0.0 kept as {mail_id}"


class Sink:
    """``with Sink(folder, port=port):`` an SMTP server keeping emails in ``folder``."""

    def __init__(
        self, folder: Path, host: str = "127.0.0.1", port: int = 1025, keep: int = DEFAULT_KEEP
    ) -> None:
        self.handler = MailboxHandler(folder, keep)
        self.host = host
        self.controller = Controller(
            self.handler,
            hostname=host,
            port=port,
            data_size_limit=MAX_MESSAGE_BYTES,
            enable_SMTPUTF8=True,
            server_hostname="flowmail-sink",
        )

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> None:
        self.handler.folder.mkdir(parents=True, exist_ok=True)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> Sink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- reading --------------------------------------------------------------------------


@dataclass(frozen=True)
class MailSummary:
    id: str
    from_: str
    to: str
    subject: str
    received_at: datetime


@dataclass(frozen=True)
class Mail:
    summary: MailSummary
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    attachments: list[str]
    size: int


def received_at(mail_id: str) -> datetime:
    found = MAIL_ID.match(mail_id)
    if found is None:
        raise ValueError(f"not a mail id: {mail_id!r}")
    return datetime.strptime(found[1], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)


def mail_ids(folder: Path) -> list[str]:
    """Every kept email's id, newest first."""
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.endswith(SUFFIX)]
    except FileNotFoundError:
        return []
    ids = (name.removesuffix(SUFFIX) for name in names)
    return sorted((i for i in ids if MAIL_ID.match(i)), reverse=True)


def _clean(value: object) -> str:
    return re.sub(r"\s+", " ", str(value)).strip()


def _header(message: Any, name: str) -> str:
    value = message.get(name)
    return "" if value is None else _clean(value)


def _summary(mail_id: str, message: Any) -> MailSummary:
    return MailSummary(
        mail_id,
        _header(message, "From"),
        _header(message, "To"),
        _header(message, "Subject"),
        received_at(mail_id),
    )


def list_mail(folder: Path, limit: int = 50, before: str | None = None) -> list[MailSummary]:
    """The newest emails (older than ``before``, an id, when given), headers only."""
    ids = [i for i in mail_ids(folder) if before is None or i < before][:limit]
    found = []
    parser = BytesHeaderParser(policy=email.policy.default)
    for mail_id in ids:
        try:
            with (folder / f"{mail_id}{SUFFIX}").open("rb") as source:
                head = source.read(HEADER_BYTES)
        except FileNotFoundError:  # pruned meanwhile
            continue
        found.append(_summary(mail_id, parser.parsebytes(head.split(b"\r\n\r\n", 1)[0])))
    return found


def _part_text(part: EmailMessage) -> str:
    """A text part decoded, with the wire's CRLF line ends made plain newlines."""
    try:
        text = str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset: show what can be read
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return text.replace("\r\n", "\n")


def read_mail(folder: Path, mail_id: str) -> Mail | None:
    """One email, parsed: headers in order, the text and HTML parts, attachment names."""
    if MAIL_ID.match(mail_id) is None:
        return None
    try:
        content = (folder / f"{mail_id}{SUFFIX}").read_bytes()
    except FileNotFoundError:
        return None
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = html = None
    attachments = []
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        if part.get_content_disposition() == "attachment":
            attachments.append(part.get_filename() or kind)
        elif kind == "text/plain" and text is None:
            text = _part_text(part)
        elif kind == "text/html" and html is None:
            html = _part_text(part)
    headers = [(name, _clean(value)) for name, value in message.items()]
    return Mail(_summary(mail_id, message), headers, text, html, attachments, len(content))
