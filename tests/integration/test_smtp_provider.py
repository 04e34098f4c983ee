"""The SMTP provider against a real aiosmtpd server on loopback: messages parsed back,
connections reused, STARTTLS / implicit TLS with AUTH, DKIM verified on what arrived, and a
misbehaving server (421, 450, 550, 554, slow, dropping connections) mapped to the right
:class:`SendError`. Every test on the ``sink`` fixture runs twice: against a server that
advertises PIPELINING (RFC 2920; commands then go out in groups) and one that does not."""

from __future__ import annotations

import asyncio
import base64
import email
import socket
import ssl
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import dkim as dkimpy  # type: ignore[import-untyped]
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from flowmail.clock import VirtualClock
from flowmail.delivery.dkim import DkimSigner
from flowmail.delivery.model import OutgoingEmail, SendError, SendResult
from flowmail.delivery.providers.smtp import SmtpProvider, smtp_error

NOW = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


@dataclass
class Sink:
    """An aiosmtpd handler that stores what it accepts and misbehaves on request."""

    envelopes: list[Envelope] = field(default_factory=list)
    mail_reply: str | None = None
    rcpt_reply: str | None = None
    data_reply: str | None = None
    data_delay: float = 0.0
    drop_at: str | None = None  # "mail" or "data": close the connection instead of answering
    close_after_data: bool = False  # accept, then close the connection
    pipelining: bool = False  # advertise PIPELINING in the EHLO reply
    accept_data_anyway: bool = False  # keep a refused recipient, so DATA gets 354
    grouped: list[bool] = field(default_factory=list)  # at each MAIL: RCPT already received?
    sessions: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        self.mail_reply = self.rcpt_reply = self.data_reply = self.drop_at = None
        self.data_delay = 0.0
        self.close_after_data = False

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> list[str]:
        session.host_name = hostname
        extra = ["250-PIPELINING"] if self.pipelining else []
        return [*responses[:-1], *extra, responses[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        pending = bytes(getattr(server._reader, "_buffer", b""))  # read, not yet handled
        self.grouped.append(pending.startswith(b"RCPT TO:"))
        if self.drop_at == "mail":
            assert server.transport is not None
            server.transport.close()
            return "250 OK"
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.rcpt_reply:
            if self.accept_data_anyway:
                envelope.rcpt_tos.append(address)
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.drop_at == "data":
            assert server.transport is not None
            server.transport.close()
            return "250 OK"
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply:
            return self.data_reply
        with self.lock:
            self.envelopes.append(envelope)
        if self.close_after_data:
            transport = server.transport
            assert transport is not None
            asyncio.get_running_loop().call_later(0.01, transport.close)
        return "250 2.0.0 Ok: queued as Q1"

    def messages(self) -> list[EmailMessage]:
        out = []
        for envelope in self.envelopes:
            content = envelope.content
            assert isinstance(content, bytes)
            message = email.message_from_bytes(content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            out.append(message)
        return out


class CountingSMTP(SMTP):
    """Counts the reads the server makes: one per batch of bytes the client sent and then
    waited on, so a pipelined transaction costs two and a plain one four."""

    def __init__(self, controller: CountingController, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._controller = controller

    def data_received(self, data: bytes) -> None:
        self._controller.reads += 1
        super().data_received(data)


class CountingController(Controller):
    """Counts the connections the server accepts (``factory`` runs once per connection)."""

    def __init__(self, handler: Sink, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.connections = 0
        self.reads = 0

    def factory(self) -> SMTP:
        self.connections += 1
        return CountingSMTP(self, self.handler, **self.SMTP_kwargs)

    def start(self) -> None:
        super().start()
        self.connections = self.reads = 0  # forget the controller's own start-up probe


@pytest.fixture(params=["pipelining", "plain"])
def sink(request: pytest.FixtureRequest) -> Sink:
    return Sink(pipelining=request.param == "pipelining")


@pytest.fixture
def server(sink: Sink) -> Iterator[CountingController]:
    controller = CountingController(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


def make_email(i: int = 0, **changes: Any) -> OutgoingEmail:
    base = OutgoingEmail(
        message_id=f"m{i}.run7@mail.example.com",
        idempotency_key=f"m{i}",
        from_address="news@example.com",
        from_name="Example News",
        to=f"user{i}@example.org",
        subject=f"Hello {i} — ünïcode",
        text=f"Hi user {i},\n.\nA line that starts with a dot, above.\n",
        html=f"<p>Hi user {i}</p>\n",
        headers={
            "List-Unsubscribe": f"<https://example.com/u/{i}>, <mailto:unsub+{i}@example.com>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Feedback-ID": "welcome:hello:flowmail",
        },
        tags={"workflow": "welcome", "step": "hello", "message": f"m{i}"},
    )
    return replace(base, **changes)


def provider(port: int, **kwargs: Any) -> SmtpProvider:
    kwargs.setdefault("timeout", 5.0)
    return SmtpProvider(
        host="127.0.0.1",
        port=port,
        local_hostname="client.test",
        clock=VirtualClock(NOW),
        **kwargs,
    )


async def using(smtp: SmtpProvider, body: Callable[[SmtpProvider], Awaitable[T]]) -> T:
    try:
        return await body(smtp)
    finally:
        await smtp.close()


# --- delivery and parsing back ---------------------------------------------------------------


def test_messages_arrive_intact(server: CountingController, sink: Sink) -> None:
    mail = make_email(1)
    result = run(using(provider(server.port), lambda p: p.send(mail)))
    assert result == SendResult(provider="smtp", provider_id="2.0.0 Ok: queued as Q1")
    (envelope,) = sink.envelopes
    assert envelope.mail_from == "news@example.com"
    assert envelope.rcpt_tos == ["user1@example.org"]
    assert any(option.upper().startswith("SIZE=") for option in envelope.mail_options)
    (message,) = sink.messages()
    assert list(message.keys()) == [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Feedback-ID",
        "X-Flowmail-Workflow",
        "X-Flowmail-Step",
        "X-Flowmail-Message",
        "Content-Type",
    ]
    assert str(message["Subject"]) == "Hello 1 — ünïcode"
    assert str(message["Message-ID"]) == "<m1.run7@mail.example.com>"
    assert str(message["Date"]) == "Mon, 01 Sep 2025 09:00:00 +0000"
    assert str(message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    plain, html = message.iter_parts()
    assert isinstance(plain, EmailMessage) and isinstance(html, EmailMessage)
    assert plain.get_content().replace("\r\n", "\n") == mail.text  # the dot line survived
    assert html.get_content().replace("\r\n", "\n") == mail.html


def test_dkim_verifies_on_the_received_message(
    server: CountingController, sink: Sink, tmp_path: Path
) -> None:
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"mail._domainkey.example.com." else None

    signer = DkimSigner("example.com", "mail", key.read_bytes())
    run(using(provider(server.port, dkim=signer), lambda p: p.send(make_email(2))))
    (envelope,) = sink.envelopes
    assert isinstance(envelope.content, bytes)
    assert envelope.content.startswith(b"DKIM-Signature:")
    assert dkimpy.verify(envelope.content, dnsfunc=dns)


def test_an_invalid_address_is_a_permanent_error_before_any_connection(
    server: CountingController, sink: Sink
) -> None:
    mail = make_email(3, to="victim@example.org\r\nRCPT TO:<other@example.org>")
    with pytest.raises(SendError) as caught:
        run(using(provider(server.port), lambda p: p.send(mail)))
    assert caught.value.permanent and not caught.value.hard_bounce
    assert caught.value.code == "invalid"
    assert server.connections == 0 and not sink.envelopes


# --- the pool ------------------------------------------------------------------------------


def test_one_connection_is_reused_for_sequential_sends(
    server: CountingController, sink: Sink
) -> None:
    async def body(smtp: SmtpProvider) -> None:
        for i in range(20):
            await smtp.send(make_email(i))

    smtp = provider(server.port, connections=4)
    run(using(smtp, body))
    assert len(sink.envelopes) == 20
    assert server.connections == 1 and smtp.opened == 1


def test_send_many_spreads_over_the_pool(server: CountingController, sink: Sink) -> None:
    emails = [make_email(i) for i in range(60)]
    smtp = provider(server.port, connections=4)
    results = run(using(smtp, lambda p: p.send_many(emails)))
    assert all(isinstance(result, SendResult) for result in results)
    assert len(results) == 60 and len(sink.envelopes) == 60
    assert server.connections == 4 and smtp.opened == 4
    received = sorted(str(m["Message-ID"]) for m in sink.messages())
    assert received == sorted(f"<{e.message_id}>" for e in emails)


def test_a_connection_the_server_closed_is_replaced(server: CountingController, sink: Sink) -> None:
    sink.close_after_data = True

    async def body(smtp: SmtpProvider) -> None:
        for i in range(3):
            await smtp.send(make_email(i))
            await asyncio.sleep(0.1)  # the server hangs up meanwhile

    smtp = provider(server.port, connections=1)
    run(using(smtp, body))
    assert len(sink.envelopes) == 3
    assert server.connections == 3 and smtp.opened == 3


def test_send_many_reports_each_failure_in_place(server: CountingController, sink: Sink) -> None:
    emails = [make_email(0), make_email(1, to="bad address@example.org"), make_email(2)]
    results = run(using(provider(server.port), lambda p: p.send_many(emails)))
    assert isinstance(results[0], SendResult) and isinstance(results[2], SendResult)
    assert isinstance(results[1], SendError) and results[1].permanent


# --- PIPELINING ------------------------------------------------------------------------------


@pytest.mark.parametrize("client_pipelining", [True, False])
def test_pipelining_halves_the_round_trips(
    server: CountingController, sink: Sink, client_pipelining: bool
) -> None:
    emails = [make_email(i) for i in range(10)]

    async def body(smtp: SmtpProvider) -> list[SendResult]:
        return [await smtp.send(mail) for mail in emails]

    smtp = provider(server.port, connections=1, pipelining=client_pipelining)
    results = run(using(smtp, body))
    assert all(r.provider_id == "2.0.0 Ok: queued as Q1" for r in results)
    assert [str(m["Message-ID"]) for m in sink.messages()] == [f"<{e.message_id}>" for e in emails]
    assert all(
        envelope.rcpt_tos == [f"user{i}@example.org"] for i, envelope in enumerate(sink.envelopes)
    )
    pipelined = sink.pipelining and client_pipelining
    assert sink.grouped == [pipelined] * 10
    # one read for EHLO and one for QUIT, then two per message pipelined, four otherwise
    if pipelined:
        assert server.reads <= 2 + 2 * 10 + 1
    else:
        assert server.reads >= 2 + 4 * 10


def test_data_accepted_after_a_refused_recipient_ends_an_empty_message(
    server: CountingController, sink: Sink
) -> None:
    """A server that answers 354 to a pipelined DATA although it refused the recipient gets
    an empty message (RFC 2920 3.1), never the real one; the refusal decides the outcome."""
    sink.rcpt_reply, sink.accept_data_anyway = "550 5.1.1 No such user here", True

    async def body(smtp: SmtpProvider) -> tuple[SendError, SendResult]:
        with pytest.raises(SendError) as caught:
            await smtp.send(make_email(1))
        sink.reset()
        return caught.value, await smtp.send(make_email(2))

    smtp = provider(server.port, connections=1)
    error, after = run(using(smtp, body))
    assert error.permanent and error.hard_bounce and error.code == "550 5.1.1"
    assert isinstance(after, SendResult) and smtp.opened == 1
    contents = [envelope.content for envelope in sink.envelopes]
    assert all(isinstance(content, bytes) for content in contents)
    assert not any(b"m1.run7" in content for content in contents if isinstance(content, bytes))
    assert b"<m2.run7@mail.example.com>" in (contents[-1] or b"")


GROUP_REPLIES = b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 Go ahead\r\n"


@pytest.mark.parametrize(
    "chunks",
    [
        [GROUP_REPLIES],  # all three replies in one read
        [GROUP_REPLIES[:20], GROUP_REPLIES[20:]],  # cut inside the second reply
        [b"250-2.1.0 first line\r\n", GROUP_REPLIES],  # a multi-line reply to MAIL
        [GROUP_REPLIES[i : i + 1] for i in range(len(GROUP_REPLIES))],  # a byte at a time
        [b"250 OK\r\n550 5.1.1 No such user\r\n503 5.5.1 Need RCPT\r\n"],  # refused
    ],
    ids=["coalesced", "cut", "multiline", "bytes", "refused"],
)
def test_pipelined_replies_however_they_are_cut(chunks: list[bytes]) -> None:
    """A scripted server: the group's replies are matched to MAIL, RCPT and DATA whether
    they come in one read or many."""
    refused = b"550" in chunks[0]
    seen: list[bytes] = []
    served = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(*parts: bytes) -> None:
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.002)

        await say(b"220 scripted ESMTP\r\n")
        await reader.readuntil(b"\r\n")  # EHLO
        await say(b"250-scripted\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n")
        for _ in range(2):
            seen.append(await reader.readuntil(b"DATA\r\n"))
            await say(*chunks)
            if refused:
                seen.append(await reader.readuntil(b"\r\n"))
                await say(b"250 2.0.0 Reset\r\n")
            else:
                seen.append(await reader.readuntil(b"\r\n.\r\n"))
                await say(b"250 2.0.0 Queued as Q9\r\n")
        await reader.readuntil(b"\r\n")  # QUIT
        writer.write(b"221 Bye\r\n")
        writer.close()
        await writer.wait_closed()
        served.set()

    async def main() -> list[SendResult | SendError]:
        listener = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            smtp = provider(port, connections=1)
            sent = await using(smtp, lambda p: p.send_many([make_email(1), make_email(2)]))
            await asyncio.wait_for(served.wait(), 5.0)
            return sent
        finally:
            listener.close()

    results = asyncio.run(main())
    assert seen[0].startswith(b"MAIL FROM:<news@example.com> SIZE=")
    assert seen[0].endswith(b"\r\nRCPT TO:<user1@example.org>\r\nDATA\r\n")
    if refused:
        assert all(isinstance(r, SendError) and r.hard_bounce for r in results)
        assert seen[1] == seen[3] == b"RSET\r\n"
    else:
        assert all(
            isinstance(r, SendResult) and r.provider_id == "2.0.0 Queued as Q9" for r in results
        )
        assert b"Message-ID: <m1.run7@mail.example.com>" in seen[1]
        assert b"\r\n..\r\n" in seen[1]  # the dot line, stuffed


# --- a misbehaving server ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "reply", "permanent", "hard_bounce", "code"),
    [
        ("rcpt", "421 4.3.2 Service shutting down", False, False, "421 4.3.2"),
        ("rcpt", "450 4.2.1 Mailbox busy, try later", False, False, "450 4.2.1"),
        ("rcpt", "451 Temporary local problem", False, False, "451"),
        ("rcpt", "550 5.1.1 No such user here", True, True, "550 5.1.1"),
        ("rcpt", "550 No such user here", True, True, "550"),
        ("rcpt", "551 User not local", True, True, "551"),
        ("rcpt", "553 Mailbox name not allowed", True, True, "553"),
        ("rcpt", "550 5.7.1 Relaying denied by policy", True, False, "550 5.7.1"),
        ("rcpt", "552 5.2.2 Mailbox full", True, False, "552 5.2.2"),
        ("data", "554 5.7.1 Message rejected as spam", True, False, "554 5.7.1"),
        ("data", "550 Content rejected", True, False, "550"),
        ("data", "451 4.7.1 Greylisted, come back later", False, False, "451 4.7.1"),
        ("data", "421 4.4.2 Closing connection", False, False, "421 4.4.2"),
        ("mail", "553 5.1.8 Sender address rejected", True, True, "553 5.1.8"),
        ("mail", "554 5.7.1 Sender blocked", True, False, "554 5.7.1"),
        ("mail", "452 4.3.1 Insufficient system storage", False, False, "452 4.3.1"),
    ],
)
def test_replies_map_to_send_errors(
    server: CountingController,
    sink: Sink,
    stage: str,
    reply: str,
    permanent: bool,
    hard_bounce: bool,
    code: str,
) -> None:
    setattr(sink, f"{stage}_reply", reply)

    async def body(smtp: SmtpProvider) -> tuple[SendError, SendResult]:
        with pytest.raises(SendError) as caught:
            await smtp.send(make_email(1))
        sink.reset()
        return caught.value, await smtp.send(make_email(2))  # the pool still works

    error, after = run(using(provider(server.port, connections=1), body))
    assert (error.permanent, error.hard_bounce, error.code) == (permanent, hard_bounce, code)
    assert error.provider == "smtp"
    assert sink.grouped == [sink.pipelining] * 2  # MAIL, RCPT and DATA went out together
    assert isinstance(after, SendResult)
    assert [str(m["Message-ID"]) for m in sink.messages()] == ["<m2.run7@mail.example.com>"]


def test_a_slow_server_is_a_transient_timeout(server: CountingController, sink: Sink) -> None:
    sink.data_delay = 1.0

    async def body(smtp: SmtpProvider) -> tuple[SendError, SendResult]:
        with pytest.raises(SendError) as caught:
            await smtp.send(make_email(1))
        sink.reset()
        return caught.value, await smtp.send(make_email(2))

    error, after = run(using(provider(server.port, timeout=0.3, connections=1), body))
    assert not error.permanent and error.code == "timeout"
    assert isinstance(after, SendResult)


@pytest.mark.parametrize("stage", ["mail", "data"])
def test_a_dropped_connection_is_transient(
    server: CountingController, sink: Sink, stage: str
) -> None:
    sink.drop_at = stage

    async def body(smtp: SmtpProvider) -> tuple[SendError, SendResult]:
        with pytest.raises(SendError) as caught:
            await smtp.send(make_email(1))
        sink.reset()
        return caught.value, await smtp.send(make_email(2))

    error, after = run(using(provider(server.port, connections=1), body))
    assert not error.permanent and not error.hard_bounce
    assert error.code == "connection"
    assert stage.upper() in str(error)
    assert isinstance(after, SendResult)
    assert len(sink.envelopes) == 1


def test_a_refused_connection_is_transient() -> None:
    with pytest.raises(SendError) as caught:
        run(using(provider(free_port()), lambda p: p.send(make_email(1))))
    assert not caught.value.permanent and caught.value.code == "connection"


def test_smtp_error_classification() -> None:
    assert smtp_error(550, "5.1.1 unknown", stage="data").hard_bounce
    assert smtp_error(550, "5.2.1 account disabled", stage="rcpt").hard_bounce
    assert not smtp_error(550, "unknown", stage="data").hard_bounce
    assert not smtp_error(421, "bye", stage="connect").permanent
    assert smtp_error(500, "syntax", stage="mail").permanent


# --- TLS and AUTH ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cafile=str(cert))
    return server_side, client_side


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"flow", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_tls_with_auth(sink: Sink, certificate: tuple[Path, Path], mode: str) -> None:
    server_side, client_side = _contexts(certificate)
    options: dict[str, Any] = {"authenticator": _authenticator}
    if mode == "starttls":
        options |= {"tls_context": server_side, "require_starttls": True, "auth_required": True}
    else:  # aiosmtpd does not see implicit TLS as TLS for AUTH, so AUTH stays optional here
        options |= {"ssl_context": server_side, "auth_require_tls": False}
    controller = CountingController(sink, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        good = provider(
            controller.port, tls=mode, username="flow", password="s3cret", tls_context=client_side
        )
        run(using(good, lambda p: p.send_many([make_email(i) for i in range(3)])))
        assert len(sink.envelopes) == 3
        assert all(envelope.content for envelope in sink.envelopes)
        bad = provider(
            controller.port, tls=mode, username="flow", password="wrong", tls_context=client_side
        )
        with pytest.raises(SendError) as caught:
            run(using(bad, lambda p: p.send(make_email(9))))
        assert not caught.value.permanent and caught.value.code == "auth"
        untrusting = provider(controller.port, tls=mode, username="flow", password="s3cret")
        with pytest.raises(SendError) as refused:  # the self-signed certificate is not trusted
            run(using(untrusting, lambda p: p.send(make_email(9))))
        assert not refused.value.permanent
        assert len(sink.envelopes) == 3
    finally:
        controller.stop()


def test_plain_auth_without_tls(sink: Sink) -> None:
    controller = CountingController(
        sink,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=_authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        smtp = provider(controller.port, username="flow", password="s3cret")
        run(using(smtp, lambda p: p.send(make_email(1))))
        assert len(sink.envelopes) == 1
    finally:
        controller.stop()


def test_unknown_tls_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="starttls"):
        SmtpProvider(host="127.0.0.1", port=25, tls="ssl")  # type: ignore[arg-type]
