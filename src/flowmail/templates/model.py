"""Templates as users write them, and what rendering one produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Template:
    """One version of a named template. ``html`` may come from ``mjml`` at save time."""

    name: str
    subject: str
    html: str | None = None
    text: str | None = None
    mjml: str | None = None
    version: int = 1
    defaults: dict[str, Any] = field(default_factory=dict)  # values for missing variables
    fallback: str | None = None  # another template's name, used if this one cannot render


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None
    template: str | None = None
    template_version: int | None = None
    missing: tuple[str, ...] = ()  # variables that had no value (nor a default)
    fallback: str | None = None  # why a fallback was used, if one was
