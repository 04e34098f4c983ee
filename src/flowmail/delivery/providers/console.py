"""Providers for development: print a line per email, or write each one as a ``.eml`` file."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from flowmail.clock import Clock, SystemClock
from flowmail.delivery.dkim import DkimSigner
from flowmail.delivery.headers import check_message_id, clean_text
from flowmail.delivery.mime import build_message
from flowmail.delivery.model import OutgoingEmail, SendError, SendResult


def _invalid(exc: ValueError, provider: str) -> SendError:
    return SendError(str(exc), permanent=True, code="invalid", provider=provider)


class ConsoleProvider:
    """Prints ``<message-id> from -> to: subject`` for each email; sends nothing."""

    name = "console"

    def __init__(self, stream: TextIO | None = None, *, clock: Clock | None = None) -> None:
        self._stream = stream
        self._clock: Clock = clock or SystemClock()

    async def send(self, email: OutgoingEmail) -> SendResult:
        try:
            build_message(email, date=self._clock.now())  # the same checks as a real send
        except ValueError as exc:
            raise _invalid(exc, self.name) from exc
        stream = self._stream or sys.stdout
        tags = " ".join(f"{key}={clean_text(value)}" for key, value in email.tags.items())
        stream.write(
            f"[flowmail console] <{email.message_id}> {email.from_address} -> {email.to}: "
            f"{clean_text(email.subject)!r} {tags}".rstrip()
            + "\n"
        )
        return SendResult(provider=self.name, provider_id=email.message_id)

    async def send_many(self, emails: Sequence[OutgoingEmail]) -> list[SendResult | SendError]:
        results: list[SendResult | SendError] = []
        for email in emails:
            try:
                results.append(await self.send(email))
            except SendError as exc:
                results.append(exc)
        return results

    async def close(self) -> None:
        return None


class FileProvider:
    """Writes each email, exactly as it would go out, to ``<folder>/<message-id>.eml``.
    A resend with the same Message-ID overwrites the same file."""

    name = "file"

    def __init__(
        self,
        folder: str | Path,
        *,
        dkim: DkimSigner | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.folder = Path(folder)
        self._dkim = dkim
        self._clock: Clock = clock or SystemClock()

    def path_for(self, message_id: str) -> Path:
        safe = check_message_id(message_id).replace("/", "_")
        return self.folder / f"{safe}.eml"

    def _write(self, path: Path, message: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".eml.part")
        partial.write_bytes(message)
        partial.replace(path)

    async def send(self, email: OutgoingEmail) -> SendResult:
        try:
            message = build_message(email, dkim=self._dkim, date=self._clock.now())
            path = self.path_for(email.message_id)
        except ValueError as exc:
            raise _invalid(exc, self.name) from exc
        try:
            await asyncio.to_thread(self._write, path, message)
        except OSError as exc:
            raise SendError(f"cannot write {path}: {exc}", code="io", provider=self.name) from exc
        return SendResult(provider=self.name, provider_id=str(path))

    async def send_many(self, emails: Sequence[OutgoingEmail]) -> list[SendResult | SendError]:
        results: list[SendResult | SendError] = []
        for email in emails:
            try:
                results.append(await self.send(email))
            except SendError as exc:
                results.append(exc)
        return results

    async def close(self) -> None:
        return None
