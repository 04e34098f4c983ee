"""Optional DKIM signing (RFC 6376) with dkimpy: rsa-sha256, relaxed/relaxed.

The signature covers the headers that identify the sender and the content, and the
List-Unsubscribe pair, so a relay cannot add or change an unsubscribe link. A listed header
that a message does not have is still signed (as absent), so it cannot be added later either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dkim as dkimpy  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from flowmail.settings import Settings

SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
)


class DkimError(ValueError):
    """The DKIM key or configuration is unusable."""


@dataclass(frozen=True)
class DkimSigner:
    domain: str
    selector: str
    private_key: bytes = field(repr=False)  # PEM, PKCS#1 or PKCS#8
    headers: tuple[str, ...] = SIGNED_HEADERS

    def __post_init__(self) -> None:
        if not self.domain or not self.selector:
            raise DkimError("DKIM needs a domain and a selector")
        if b"PRIVATE KEY-----" not in self.private_key:
            raise DkimError("the DKIM key is not a PEM private key")

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """A signer from ``dkim_domain``, ``dkim_selector`` and ``dkim_key_file``; ``None``
        when ``dkim_domain`` is empty (DKIM off)."""
        if not settings.dkim_domain:
            return None
        if not settings.dkim_selector or not settings.dkim_key_file:
            raise DkimError("dkim_domain is set, so dkim_selector and dkim_key_file are needed")
        try:
            key = Path(settings.dkim_key_file).read_bytes()
        except OSError as exc:
            raise DkimError(f"cannot read the DKIM key file: {exc}") from exc
        return cls(settings.dkim_domain, settings.dkim_selector, key)

    def signature(self, message: bytes) -> bytes:
        """The ``DKIM-Signature: ...`` header (CRLF line ends, final CRLF included)."""
        try:
            header: bytes = dkimpy.sign(
                message,
                self.selector.encode("ascii"),
                self.domain.encode("ascii"),
                self.private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=b"rsa-sha256",
                include_headers=[name.encode("ascii") for name in self.headers],
                linesep=b"\r\n",
            )
        except dkimpy.DKIMException as exc:
            raise DkimError(f"DKIM signing failed: {exc}") from exc
        return header

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header in front."""
        return self.signature(message) + message
