"""SMTP through aiosmtplib: TLS or STARTTLS, AUTH, and a pool of reusable connections.

Replies become :class:`SendError`:

- 4xx, timeouts, refused or dropped connections, failed AUTH: transient (retried later);
- 5xx on the recipient (550, 551, 553 at ``RCPT``, or any enhanced ``5.1.x`` / ``5.2.1``):
  permanent and a hard bounce (the recipient gets a suppression);
- any other 5xx (``554``, ``5.7.x`` policy, content): permanent, not a bounce.

A pooled connection the server closed while it sat idle is replaced transparently; one lost
after ``DATA`` began is a transient error, because the message may have been accepted.

When the server advertises PIPELINING (RFC 2920), ``MAIL``, ``RCPT`` and ``DATA`` go out
together (see :mod:`.pipelining`, which aiosmtplib lacks): two round trips per message instead
of four, with each reply mapped as above. Throughput also comes from several connections.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from typing import Literal

import aiosmtplib
from aiosmtplib.response import SMTPResponse

from flowmail.clock import Clock, SystemClock
from flowmail.delivery.dkim import DkimSigner
from flowmail.delivery.headers import check_address
from flowmail.delivery.mime import build_message
from flowmail.delivery.model import OutgoingEmail, SendError, SendResult
from flowmail.delivery.providers.pipelining import Progress, can_pipeline, pipelined_transaction

TlsMode = Literal["none", "starttls", "tls"]
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_HARD_AT_RCPT = (550, 551, 553)
_NETWORK_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


def smtp_error(code: int, reply: str, *, stage: str, provider: str = "smtp") -> SendError:
    """Classify one SMTP reply (``stage`` is connect, mail, rcpt or data)."""
    match = _ENHANCED.match(reply or "")
    enhanced = match.group(1) if match else None
    label = f"{code} {enhanced}" if enhanced else str(code)
    text = f"SMTP {label} at {stage.upper()}: {(reply or '').strip()[:300]}"
    if 500 <= code < 600:
        if enhanced is not None:
            hard = enhanced.startswith("5.1.") or enhanced == "5.2.1"  # bad or disabled mailbox
        else:
            hard = stage == "rcpt" and code in _HARD_AT_RCPT
        return SendError(text, permanent=True, hard_bounce=hard, code=label, provider=provider)
    return SendError(text, permanent=False, code=label, provider=provider)


def _transient(exc: BaseException, stage: str, provider: str) -> SendError:
    kind = "timeout" if isinstance(exc, TimeoutError) else "connection"
    return SendError(f"SMTP {kind} error at {stage.upper()}: {exc}", code=kind, provider=provider)


class _Stale(Exception):
    """A pooled connection turned out to be closed before anything was sent on it."""


class SmtpProvider:
    """Delivers through one SMTP server with up to ``connections`` connections at once."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: TlsMode = "none",
        username: str = "",
        password: str = "",
        connections: int = 4,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        dkim: DkimSigner | None = None,
        clock: Clock | None = None,
        local_hostname: str | None = None,
        name: str = "smtp",
        pipelining: bool = True,
    ) -> None:
        if tls not in ("none", "starttls", "tls"):
            raise ValueError(f"smtp_tls must be none, starttls or tls, not {tls!r}")
        if connections < 1:
            raise ValueError("an SMTP pool needs at least one connection")
        self.name = name
        self.host, self.port, self.tls = host, port, tls
        self._username, self._password = username, password
        self.connections = connections
        self.timeout = timeout
        self._tls_context = tls_context
        self._dkim = dkim
        self._clock: Clock = clock or SystemClock()
        self._local_hostname = local_hostname
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots: asyncio.Semaphore | None = None
        self.pipelining = pipelining  # used when the server advertises PIPELINING
        self.opened = 0  # connections made so far, for tests and metrics

    # --- the pool ---------------------------------------------------------------------

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.tls == "tls",
            start_tls=False,  # done by hand in _open, so a failure leaves the socket to abort
            tls_context=self._tls_context,
            timeout=self.timeout,
            local_hostname=self._local_hostname,
        )

    @staticmethod
    def _discard(client: aiosmtplib.SMTP, transport: asyncio.BaseTransport | None = None) -> None:
        """Drop a connection at once, without waiting for a TLS close_notify round trip.
        aiosmtplib closes (gracefully) and forgets its transport on some errors and on QUIT,
        so callers pass the transport they saw before, to abort that one too."""
        for each in (transport, client.transport):
            if isinstance(each, asyncio.WriteTransport):
                each.abort()
        client.close()

    async def _ehlo(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()

    async def _open(self, client: aiosmtplib.SMTP) -> None:
        """Connect, EHLO (so SIZE is known before MAIL), STARTTLS and EHLO again, AUTH."""
        await client.connect()
        await self._ehlo(client)
        if self.tls == "starttls":
            await client.starttls()
            await self._ehlo(client)
        if self._username:
            await client.login(self._username, self._password)

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """An open connection, and whether it was reused from the pool."""
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client, True
            self._discard(client)
        client = self._client()
        try:
            await self._open(client)
        except aiosmtplib.SMTPAuthenticationError as exc:
            self._discard(client)
            raise SendError(
                f"SMTP AUTH failed: {exc.code} {exc.message}", code="auth", provider=self.name
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            self._discard(client)
            raise SendError(
                f"SMTP {exc.code} at CONNECT: {exc.message}", code=str(exc.code), provider=self.name
            ) from exc
        except _NETWORK_ERRORS as exc:
            self._discard(client)
            raise _transient(exc, "connect", self.name) from exc
        self.opened += 1
        return client, False

    def _checkin(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected and len(self._idle) < self.connections:
            self._idle.append(client)
        else:
            self._discard(client)

    # --- one transaction --------------------------------------------------------------

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        """RSET after a refused transaction, so the connection can be reused."""
        if not client.is_connected:
            return
        try:
            await client.rset()
        except _NETWORK_ERRORS:
            self._discard(client)

    async def _transaction(
        self, client: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes
    ) -> str:
        """MAIL, RCPT, DATA (pipelined when the server allows); the server's reply to DATA."""
        progress = Progress()
        transport = client.transport
        try:
            options = [f"SIZE={len(message)}"] if client.supports_extension("size") else []
            try:
                if self.pipelining and can_pipeline(client):
                    response = await pipelined_transaction(
                        client,
                        sender,
                        recipient,
                        message,
                        options=options,
                        timeout=self.timeout,
                        progress=progress,
                    )
                else:
                    response = await self._plain_transaction(
                        client, sender, recipient, message, options, progress
                    )
            except aiosmtplib.SMTPServerDisconnected as exc:
                if progress.stage != "mail" or progress.replies:
                    raise
                self._discard(client, transport)  # nothing was answered: nothing was sent
                raise _Stale from exc
        except aiosmtplib.SMTPResponseException as exc:
            if client.is_connected:
                await self._reset(client)
            else:  # 421: aiosmtplib hung up
                self._discard(client, transport)
            error = smtp_error(exc.code, exc.message, stage=progress.stage, provider=self.name)
            raise error from exc
        except _NETWORK_ERRORS as exc:
            self._discard(client, transport)
            raise _transient(exc, progress.stage, self.name) from exc
        if not client.is_connected:  # e.g. a 421 after DATA made aiosmtplib hang up
            self._discard(client, transport)
        return response.message

    @staticmethod
    async def _plain_transaction(
        client: aiosmtplib.SMTP,
        sender: str,
        recipient: str,
        message: bytes,
        options: list[str],
        progress: Progress,
    ) -> SMTPResponse:
        """One command, one reply: four round trips."""
        await client.mail(sender, options=options)
        progress.replies += 1
        progress.stage = "rcpt"
        await client.rcpt(recipient)
        progress.replies += 1
        progress.stage = "data"
        return await client.data(message)

    # --- Provider -----------------------------------------------------------------------

    async def send(self, email: OutgoingEmail) -> SendResult:
        try:
            sender, recipient = check_address(email.from_address), check_address(email.to)
            message = build_message(email, dkim=self._dkim, date=self._clock.now())
        except ValueError as exc:
            raise SendError(str(exc), permanent=True, code="invalid", provider=self.name) from exc
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.connections)
        async with self._slots:
            for attempt in range(2):
                client, reused = await self._checkout()
                try:
                    reply = await self._transaction(client, sender, recipient, message)
                except _Stale as exc:
                    self._discard(client)
                    if reused and attempt == 0:
                        continue  # the server closed an idle connection: open a new one
                    raise _transient(exc.__cause__ or exc, "mail", self.name) from exc
                finally:
                    self._checkin(client)
                return SendResult(provider=self.name, provider_id=reply.strip() or None)
        raise AssertionError("unreachable")  # pragma: no cover

    async def send_many(self, emails: Sequence[OutgoingEmail]) -> list[SendResult | SendError]:
        """Send over the whole pool at once; results in the order given."""
        results: list[SendResult | SendError | None] = [None] * len(emails)
        pending = iter(enumerate(emails))

        async def worker() -> None:
            for index, email in pending:
                try:
                    results[index] = await self.send(email)
                except SendError as exc:
                    results[index] = exc

        await asyncio.gather(*(worker() for _ in range(min(self.connections, len(emails)))))
        return [result for result in results if result is not None]

    async def close(self) -> None:
        """QUIT every idle connection; connections in use are closed by their sends."""
        idle, self._idle = self._idle, []
        for client in idle:
            transport = client.transport
            try:
                await asyncio.wait_for(client.quit(), timeout=min(self.timeout, 5.0))
            except _NETWORK_ERRORS:
                pass
            finally:
                self._discard(client, transport)
        # Transports closed by a failed send finish closing on the loop's next turns; let
        # them, so a caller that ends its event loop right after does not leak sockets.
        for _ in range(3):
            await asyncio.sleep(0)
