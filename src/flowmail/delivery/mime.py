"""RFC 5322 / RFC 2045 message bytes for an :class:`OutgoingEmail`, written by hand.

``email.message.EmailMessage`` with its policy machinery builds only a few hundred messages a
second; this builder writes the same structure directly (``bench/mime_bench.py`` measures
both). Every header value goes through :mod:`flowmail.delivery.headers`, so nothing a template
or a contact attribute contains can start a new header.

The shape:

- text only: ``text/plain; charset="utf-8"``;
- text and HTML: ``multipart/alternative`` with the text part first.

Each body is ``7bit`` when it is plain ASCII with short lines, ``quoted-printable`` when it is
mostly ASCII, ``base64`` otherwise. The multipart boundary contains ``=_``, which neither
quoted-printable nor base64 output can contain; a 7bit body that happens to contain it is sent
quoted-printable instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

from flowmail.delivery import headers as h
from flowmail.delivery.headers import HeaderError
from flowmail.delivery.model import OutgoingEmail

if TYPE_CHECKING:
    from flowmail.delivery.dkim import DkimSigner

__all__ = ["HeaderError", "build_message", "encode_body"]

_SAFE_7BIT = bytes([9, 10, *range(32, 127)])
_ASCII = bytes(range(128))
_LONG_LINE = re.compile(rb"[^\n]{999}")
_BOUNDARY_MARK = b"=_fm_"


def encode_body(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, encoded bytes with CRLF line ends) for a text body."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    data = text.encode("utf-8", errors="replace")
    if data.isascii():
        if (
            not data.translate(None, _SAFE_7BIT)
            and _BOUNDARY_MARK not in data
            and not _LONG_LINE.search(data)
        ):
            return "7bit", data.replace(b"\n", b"\r\n")
        return "quoted-printable", _qp(data)
    non_ascii = len(data.translate(None, _ASCII))
    if non_ascii * 6 < len(data):
        return "quoted-printable", _qp(data)
    encoded = base64.encodebytes(data.replace(b"\n", b"\r\n"))
    return "base64", encoded.replace(b"\n", b"\r\n")


def _qp(data: bytes) -> bytes:
    return binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n")


def _part_headers(subtype: str, encoding: str) -> bytes:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n"
    ).encode("ascii")


def message_headers(email: OutgoingEmail, date: datetime) -> list[str]:
    """Every header line (folded, without the final CRLF) except the Content-* ones."""
    if date.tzinfo is None:
        raise ValueError("the Date header needs an aware datetime")
    message_id = h.check_message_id(email.message_id)
    lines = [
        h.mailbox("From", email.from_name, email.from_address),
        "To: " + h.check_address(email.to),
    ]
    if email.reply_to:
        lines.append("Reply-To: " + h.check_address(email.reply_to))
    lines.append(h.unstructured("Subject", email.subject))
    lines.append("Date: " + format_datetime(date))
    lines.append(f"Message-ID: <{message_id}>")
    lines.append("MIME-Version: 1.0")
    for name, value in h.custom_headers(email.headers, email.tags):
        lines.append(h.unstructured(name, value))
    return lines


def build_message(email: OutgoingEmail, *, dkim: DkimSigner | None = None, date: datetime) -> bytes:
    """The message as bytes, ready for SMTP ``DATA`` or a raw-MIME API.

    Raises :class:`HeaderError` (a ``ValueError``) for an address, Message-ID or header name
    that cannot be written safely; header *values* are always cleaned, never refused.
    """
    head = "\r\n".join(message_headers(email, date))
    text_encoding, text_body = encode_body(email.text)
    if email.html is None:
        top = '\r\nContent-Type: text/plain; charset="utf-8"\r\n'
        top += f"Content-Transfer-Encoding: {text_encoding}\r\n\r\n"
        message = b"".join(((head + top).encode("ascii"), text_body))
    else:
        html_encoding, html_body = encode_body(email.html)
        digest = hashlib.blake2s(email.message_id.encode("utf-8"), digest_size=12).hexdigest()
        boundary = f"=_fm_{digest}".encode("ascii")
        top = f'\r\nContent-Type: multipart/alternative; boundary="{boundary.decode()}"\r\n\r\n'
        delimiter = b"--" + boundary + b"\r\n"
        message = b"".join(
            (
                (head + top).encode("ascii"),
                delimiter,
                _part_headers("plain", text_encoding),
                b"\r\n",
                text_body,
                b"\r\n",
                delimiter,
                _part_headers("html", html_encoding),
                b"\r\n",
                html_body,
                b"\r\n--" + boundary + b"--\r\n",
            )
        )
    if dkim is not None:
        message = dkim.sign(message)
    return message
