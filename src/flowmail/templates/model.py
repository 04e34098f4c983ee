"""Templates as users write them, and what rendering one produces."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

TRANSACTIONAL = "transactional"


@dataclass(frozen=True)
class Template:
    """One version of a named template. ``html`` may come from ``mjml`` at save time.

    ``topic`` says what kind of email the template is for: anything but
    ``transactional`` is marketing, and must carry an unsubscribe link and the
    sender's postal address.
    """

    name: str
    subject: str
    html: str | None = None
    text: str | None = None
    mjml: str | None = None
    version: int = 1
    defaults: dict[str, Any] = field(default_factory=dict)  # values for missing variables
    fallback: str | None = None  # another template's name, used if this one cannot render
    topic: str = "marketing"

    @property
    def marketing(self) -> bool:
        return self.topic != TRANSACTIONAL

    def content(self) -> dict[str, Any]:
        """What a version is made of (not its name or number)."""
        return {
            "subject": self.subject,
            "html": self.html,
            "text": self.text,
            "mjml": self.mjml,
            "defaults": self.defaults,
            "fallback": self.fallback,
            "topic": self.topic,
        }

    @property
    def digest(self) -> str:
        """Same content, same digest: saving it again makes no new version."""
        data = json.dumps(self.content(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(data.encode()).hexdigest()


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None
    template: str | None = None
    template_version: int | None = None
    missing: tuple[str, ...] = ()  # variables that had no value (nor a default)
    fallback: str | None = None  # why a fallback was used, if one was
