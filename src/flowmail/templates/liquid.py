"""Liquid rendering for everything users write (subjects, update values, bodies).

Liquid has no access to Python objects, so a template cannot escape its data.
A variable with no value renders empty (or its ``default``) and is reported, so
a missing first name never breaks an email but is never silent either.

Every environment here has resource limits (loop iterations, output size, context
depth, local namespace), so a runaway template stops with an error instead of
holding a worker; the same limits are what :mod:`flowmail.templates.validate`
checks at save time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from io import StringIO
from typing import Any

from liquid import BoundTemplate, Environment, Mode, Undefined
from liquid.exceptions import LiquidError, OutputStreamLimitError

from flowmail.templates import filters

_missing: ContextVar[list[str] | None] = ContextVar("flowmail_liquid_missing", default=None)

LOOP_ITERATION_LIMIT = 10_000  # iterations per render, nested loops counted together
OUTPUT_STREAM_LIMIT = 2_000_000  # characters written per render
LOCAL_NAMESPACE_LIMIT = 1_000_000  # bytes held by assign/capture
CONTEXT_DEPTH_LIMIT = 30


class _RecordingUndefined(Undefined):
    """Renders empty, and notes which variable was missing."""

    def __str__(self) -> str:
        found = _missing.get()
        if found is not None:
            found.append(missing_name(self))
        return ""


def missing_name(value: Undefined) -> str:
    """``contact.first_name`` for a missing ``{{ contact.first_name }}``."""
    hint = value.hint or ""
    if hint.endswith(" is undefined"):
        return hint.removesuffix(" is undefined").strip("'\"")
    return str(value.name)


class _LimitedOutput(StringIO):
    """Liquid's own limited buffer encodes every write to count bytes; counting characters
    bounds the output just as well (4 bytes at most each) at a fraction of the cost."""

    __slots__ = ("limit", "size")

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.size = 0

    def write(self, text: str) -> int:
        self.size += len(text)
        if self.size > self.limit:
            raise OutputStreamLimitError("output stream limit reached", token=None)
        return super().write(text)


class _LimitedTemplate(BoundTemplate):
    def _get_buffer(self) -> StringIO:
        limit = self.env.output_stream_limit
        return StringIO() if limit is None else _LimitedOutput(limit)


class LimitedEnvironment(Environment):
    """The environment for user templates: resource limits on, unknown filters refused."""

    template_class = _LimitedTemplate
    loop_iteration_limit = LOOP_ITERATION_LIMIT
    output_stream_limit = OUTPUT_STREAM_LIMIT
    local_namespace_limit = LOCAL_NAMESPACE_LIMIT
    context_depth_limit = CONTEXT_DEPTH_LIMIT


def make_environment(*, autoescape: bool = False, lax: bool = False) -> LimitedEnvironment:
    """A limited environment with flowmail's filters. ``lax`` skips failing expressions
    instead of raising: the last resort when a message must go out anyway."""
    env = LimitedEnvironment(
        undefined=_RecordingUndefined,
        autoescape=autoescape,
        tolerance=Mode.LAX if lax else Mode.STRICT,
    )
    filters.register(env)
    return env


_ENV = make_environment()


class TemplateError(ValueError):
    """A template cannot be parsed or rendered; the message names the line."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def error_line(exc: LiquidError) -> int | None:
    context = exc.context()
    return context[0] if context else None


def as_template_error(exc: LiquidError) -> TemplateError:
    return TemplateError(str(exc), error_line(exc))


@lru_cache(maxsize=4096)
def compile_template(source: str) -> BoundTemplate:
    try:
        return _ENV.from_string(source)
    except LiquidError as exc:
        raise as_template_error(exc) from None


@contextmanager
def recording_missing() -> Iterator[list[str]]:
    """Collect the names of variables rendered without a value inside the block."""
    found: list[str] = []
    token = _missing.set(found)
    try:
        yield found
    finally:
        _missing.reset(token)


def render(source: str, variables: dict[str, Any]) -> tuple[str, list[str]]:
    """Render ``source``; returns the text and the names of variables that had no value."""
    if "{" not in source:
        return source, []
    template = compile_template(source)
    with recording_missing() as found:
        try:
            text = template.render(**variables)
        except LiquidError as exc:
            raise as_template_error(exc) from None
    return text, list(dict.fromkeys(found))


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)
