"""Liquid rendering for everything users write (subjects, update values, bodies).

Liquid has no access to Python objects, so a template cannot escape its data.
A variable with no value renders empty (or its ``default``) and is reported, so
a missing first name never breaks an email but is never silent either.
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from liquid import BoundTemplate, Environment, Undefined
from liquid.exceptions import LiquidError

_missing: ContextVar[list[str] | None] = ContextVar("flowmail_liquid_missing", default=None)


class _RecordingUndefined(Undefined):
    """Renders empty, and notes which variable was missing."""

    def __str__(self) -> str:
        found = _missing.get()
        if found is not None:
            found.append(self.hint.removesuffix(" is undefined") if self.hint else self.name)
        return ""


_ENV = Environment(undefined=_RecordingUndefined)


class TemplateError(ValueError):
    """A template cannot be parsed or rendered; the message names the line."""


@lru_cache(maxsize=4096)
def compile_template(source: str) -> BoundTemplate:
    try:
        return _ENV.from_string(source)
    except LiquidError as exc:
        raise TemplateError(str(exc)) from None


def render(source: str, variables: dict[str, Any]) -> tuple[str, list[str]]:
    """Render ``source``; returns the text and the names of variables that had no value."""
    if "{" not in source:
        return source, []
    template = compile_template(source)
    found: list[str] = []
    token = _missing.set(found)
    try:
        text = template.render(**variables)
    except LiquidError as exc:
        raise TemplateError(str(exc)) from None
    finally:
        _missing.reset(token)
    return text, list(dict.fromkeys(found))


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)
