"""RFC 2920 PIPELINING on an aiosmtplib connection: ``MAIL FROM``, ``RCPT TO`` and ``DATA``
go out in one write and their three replies are read together, then the message and its
final dot: two round trips per message instead of four.

aiosmtplib has no PIPELINING support and its protocol hands out one reply per command, so
this drives the connection's :class:`aiosmtplib.protocol.SMTPProtocol` directly, under its
command lock, with two precautions:

- replies that arrive in one read stay in the protocol's buffer once the first is parsed,
  so each next reply is taken from that buffer before waiting for more data;
- the protocol drops data that arrives while a parsed reply waits to be picked up. A read is
  therefore awaited as ``read_response(timeout=None)`` (a plain await of the protocol's
  future; ``asyncio.wait_for`` on Python 3.11 adds a loop turn in which the next read could
  land in that gap) under ``asyncio.timeout``, and the next read is armed without yielding.

:func:`can_pipeline` is false when the server does not advertise PIPELINING, or when the
installed aiosmtplib lacks what this relies on; the caller then uses the plain commands.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import SMTPProtocol, normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

_PERIOD = re.compile(rb"(?m)^\.")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_AFTER_421 = 1.0  # seconds to wait for the rest of a group's replies after a 421
_PROTOCOL_OK = all(
    callable(getattr(SMTPProtocol, name, None))
    for name in ("_read_response_from_buffer", "read_response", "write")
)


@dataclass
class Progress:
    """Where a transaction got to: the stage whose reply decides the outcome (mail, rcpt
    or data) and how many replies the server has given so far."""

    stage: str = "mail"
    replies: int = 0


def can_pipeline(client: aiosmtplib.SMTP) -> bool:
    return _PROTOCOL_OK and client.protocol is not None and client.supports_extension("pipelining")


def _command(*args: bytes) -> bytes:
    for arg in args:
        if _CONTROL.search(arg):
            raise ValueError("Command arg contains a prohibited control character")
    return b" ".join(args) + b"\r\n"


async def _read(protocol: SMTPProtocol, timeout: float | None) -> SMTPResponse:
    reply = protocol._read_response_from_buffer()  # one that came in the same read as the last
    if reply is not None:
        return reply
    try:
        async with asyncio.timeout(timeout):
            return await protocol.read_response(timeout=None)
    except TimeoutError as exc:
        raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from exc


async def pipelined_transaction(
    client: aiosmtplib.SMTP,
    sender: str,
    recipient: str,
    message: bytes,
    *,
    options: list[str],
    timeout: float | None,
    progress: Progress,
) -> SMTPResponse:
    """MAIL, RCPT and DATA in one group, then the message; the reply to the message.

    A refusal raises the matching :class:`aiosmtplib.SMTPResponseException` with
    ``progress.stage`` left at the first refused command, once every reply of the group has
    been read, so the connection stays in step and can be ``RSET``. After a ``421`` the rest
    of the group is read (briefly: the server may just hang up), then the connection is
    closed, as aiosmtplib does; so is it on a lost connection or a timeout."""
    protocol = client.protocol
    lock = protocol._command_lock if protocol is not None else None
    if protocol is None or lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    group = (
        _command(
            b"MAIL",
            b"FROM:" + quote_address(sender).encode("ascii"),
            *(option.encode("ascii") for option in options),
        )
        + _command(b"RCPT", b"TO:" + quote_address(recipient).encode("ascii"))
        + b"DATA\r\n"
    )
    body = _PERIOD.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"
    try:
        async with lock:
            protocol.write(group)
            refused: aiosmtplib.SMTPResponseException | None = None
            closing = False  # a 421: the server will hang up
            reply = SMTPResponse(-1, "")
            for stage in ("mail", "rcpt", "data"):
                if refused is None:
                    progress.stage = stage
                try:  # after a 421 the rest of the group may never be answered
                    wait = min(_AFTER_421, timeout or _AFTER_421) if closing else timeout
                    reply = await _read(protocol, wait)
                except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
                    if refused is None:
                        raise
                    closing = True  # the refusal says why; the connection is done
                    break
                progress.replies += 1
                if refused is None:
                    refused = _refusal(stage, reply, sender, recipient)
                closing = closing or reply.code == 421
            if refused is not None:
                if closing:
                    client.close()
                elif reply.code == 354:  # DATA accepted after all: end an empty message
                    protocol.write(b".\r\n")
                    await _read(protocol, timeout)
                raise refused
            protocol.write(body)
            reply = await _read(protocol, timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()  # the replies may be out of step now
        raise
    if reply.code == 421:
        client.close()
    if reply.code != 250:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply


def _refusal(
    stage: str, reply: SMTPResponse, sender: str, recipient: str
) -> aiosmtplib.SMTPResponseException | None:
    if stage == "mail" and reply.code != 250:
        return aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
    if stage == "rcpt" and reply.code not in (250, 251):
        return aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
    if stage == "data" and reply.code != 354:
        return aiosmtplib.SMTPDataError(reply.code, reply.message)
    return None
