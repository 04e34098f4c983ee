"""Checks a template must pass before it is saved.

- Each part (subject, HTML, text) parses; a syntax error names its line.
- Every filter exists (Liquid only notices an unknown filter when it renders one).
- Rendered against sample data, no part hits a resource limit: a runaway loop, an
  enormous output, or deep nesting is refused now rather than at send time.
- A marketing template (any topic but ``transactional``) has an unsubscribe link
  (``{{ unsubscribe_url }}``) and the sender's postal address (``{{ postal_address }}``
  or the configured address written out) in its HTML and in its text.
- A ``fallback`` names another template that exists.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from liquid import BoundTemplate, Environment
from liquid.exceptions import (
    FilterArgumentError,
    LiquidError,
    LiquidTypeError,
    ResourceLimitError,
    TemplateNotFoundError,
    UnknownFilterError,
)

from flowmail.templates.liquid import error_line, make_environment, recording_missing
from flowmail.templates.markup import mjml_to_html
from flowmail.templates.model import Template
from flowmail.templates.render import with_defaults

_TEXT_ENV = make_environment()
_HTML_ENV = make_environment(autoescape=True)
_TAG = re.compile(r"\{%-?\s*(\w+)")
_OUTPUT = re.compile(r"\{\{.*?\}\}", re.S)
_UNCLOSED = re.compile(r"expected tag end(\w+)")
_BLOCKS = {"if", "unless", "for", "case", "capture", "tablerow", "comment", "raw"}
_ALWAYS_WRONG = (ResourceLimitError, TemplateNotFoundError, UnknownFilterError)

_CONTACT = {
    "id": "sample-contact",
    "email": "sample@example.com",
    "timezone": "Europe/Paris",
    "first_name": "Sam",
    "last_name": "Sample",
    "plan": "pro",
    "tags": ["newsletter", "vip"],
    "lifetime_value": 1250.5,
}
_ITEMS: list[dict[str, Any]] = [
    {"name": f"Item {n}", "price": 10.0 * n, "quantity": n, "url": f"https://shop.example/{n}"}
    for n in (1, 2, 3)
]
SAMPLE_VARIABLES: dict[str, Any] = {
    "contact": _CONTACT,
    "user": _CONTACT,
    "event": {
        "name": "sample_event",
        "at": "2025-09-02T09:00:00+00:00",
        "cart_id": "c-1",
        "cart_total": 140.0,
        "items": _ITEMS,
        "recommendations": _ITEMS,
    },
    "run": {"id": "sample-run", "workflow": "sample", "version": 1, "step": "sample"},
    "workflow": {"id": "sample", "name": "Sample workflow"},
    "now": datetime(2025, 9, 2, 9, 0, tzinfo=UTC).isoformat(),
    "unsubscribe_url": "https://flowmail.example/u/sample",
    "preferences_url": "https://flowmail.example/p/sample",
    "postal_address": "1 Sample Street, Sampletown",
    "cart_items": [{**i, "line_total": 10.0 * n * n} for n, i in enumerate(_ITEMS, 1)],
    "cart_total": 140.0,
    "cart_count": 3,
    "recommended_products": _ITEMS,
}


@dataclass(frozen=True)
class Problem:
    template: str
    message: str
    part: str | None = None  # subject, html, text, mjml
    line: int | None = None

    def __str__(self) -> str:
        where = self.template
        if self.part:
            where += f" ({self.part}"
            where += f", line {self.line})" if self.line else ")"
        return f"{where}: {self.message}"


class TemplateInvalid(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _line(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


def _unclosed(source: str, tag: str) -> int | None:
    """The line of the last ``{% tag %}`` that is never closed."""
    stack: list[tuple[str, int]] = []
    for match in _TAG.finditer(source):
        name = match.group(1)
        if name in _BLOCKS:
            stack.append((name, match.start()))
        elif name.startswith("end") and stack and stack[-1][0] == name[3:]:
            stack.pop()
    open_tags = [index for name, index in stack if name == tag]
    return _line(source, open_tags[-1]) if open_tags else None


def _syntax_problem(name: str, part: str, source: str, exc: LiquidError) -> Problem:
    line = error_line(exc)
    message = str(exc.message)
    if line is None and (unclosed := _UNCLOSED.search(message)):
        line = _unclosed(source, unclosed.group(1))
        if line is not None:
            message = f"{{% {unclosed.group(1)} %}} is never closed ({message})"
    if line is None:  # Liquid gave no position: find the output statement that fails
        for match in _OUTPUT.finditer(source):
            try:
                _TEXT_ENV.from_string(match.group())
            except LiquidError:
                line = _line(source, match.start())
                break
    return Problem(name, f"syntax error: {message}", part, line)


def _parse(
    template: Template, part: str, source: str, env: Environment
) -> tuple[BoundTemplate | None, list[Problem]]:
    try:
        bound = env.from_string(source)
    except LiquidError as exc:
        return None, [_syntax_problem(template.name, part, source, exc)]
    problems = []
    for filter_name, spans in bound.analyze(include_partials=False).filters.items():
        if filter_name not in env.filters:
            line = spans[0].line_col(source)[0] if spans else None
            problems.append(Problem(template.name, f"unknown filter {filter_name!r}", part, line))
    return bound, problems


def _wrong_arguments(exc: LiquidError) -> bool:
    """A filter given the wrong number of arguments: wrong whatever the data."""
    cause = exc.__cause__
    return (
        isinstance(exc, LiquidTypeError | FilterArgumentError)
        and isinstance(cause, TypeError)
        and "argument" in str(cause)
    )


def _try_render(template: Template, part: str, bound: BoundTemplate) -> list[Problem]:
    """Problems the sample data shows that any data would: limits, includes, arity."""
    variables = with_defaults(SAMPLE_VARIABLES, template.defaults)
    with recording_missing():
        try:
            bound.render(**variables)
        except LiquidError as exc:
            if isinstance(exc, _ALWAYS_WRONG) or _wrong_arguments(exc):
                return [Problem(template.name, str(exc.message), part, error_line(exc))]
        except Exception:  # odd results on sample data are the fallback's business
            return []
    return []


def _parts(template: Template) -> list[tuple[str, str, Environment]]:
    parts: list[tuple[str, str, Environment]] = [("subject", template.subject, _TEXT_ENV)]
    if template.html is not None:
        parts.append(("html", template.html, _HTML_ENV))
    if template.text is not None:
        parts.append(("text", template.text, _TEXT_ENV))
    return parts


def _mentions(bound: BoundTemplate, variable: str) -> bool:
    return variable in bound.analyze(include_partials=False).variables


def _shows_address(source: str, bound: BoundTemplate, address: str) -> bool:
    if _mentions(bound, "postal_address"):
        return True
    flat = " ".join(address.split())
    if not flat:
        return False
    text = " ".join(source.split())
    return flat in text or htmllib.escape(flat, quote=False) in text


def _compliance(
    template: Template, bodies: dict[str, tuple[str, BoundTemplate]], postal_address: str
) -> list[Problem]:
    problems = []
    for part, (source, bound) in bodies.items():
        if not _mentions(bound, "unsubscribe_url"):
            problems.append(
                Problem(
                    template.name,
                    f"a marketing email (topic {template.topic!r}) needs an unsubscribe link: "
                    "add {{ unsubscribe_url }}, or set topic: transactional",
                    part,
                )
            )
        if not _shows_address(source, bound, postal_address):
            problems.append(
                Problem(
                    template.name,
                    f"a marketing email (topic {template.topic!r}) must show the sender's "
                    "postal address: add {{ postal_address }}",
                    part,
                )
            )
    if not postal_address.strip():
        problems.append(
            Problem(
                template.name,
                "marketing emails must show the sender's postal address, and none is "
                "configured: set FLOWMAIL_POSTAL_ADDRESS (postal_address in flowmail.toml)",
            )
        )
    return problems


def prepare_template(template: Template) -> Template:
    """What is saved: MJML compiled to HTML (done once, here)."""
    if template.mjml is not None:
        return replace(template, html=mjml_to_html(template.mjml))
    return template


def check_template(template: Template, *, postal_address: str) -> list[Problem]:
    """Every problem with one (prepared) template; empty if it may be saved."""
    if not template.subject.strip():
        return [Problem(template.name, "the subject is empty", "subject")]
    if template.html is None and template.text is None:
        return [Problem(template.name, "a template needs HTML, MJML or text")]
    problems: list[Problem] = []
    bodies: dict[str, tuple[str, BoundTemplate]] = {}
    for part, source, env in _parts(template):
        bound, found = _parse(template, part, source, env)
        problems += found
        if bound is not None and not found:
            problems += _try_render(template, part, bound)
            if part != "subject":
                bodies[part] = (source, bound)
    if template.fallback == template.name:
        problems.append(Problem(template.name, "a template cannot be its own fallback"))
    if template.marketing and not problems:
        problems += _compliance(template, bodies, postal_address)
    return problems


def validate_template(template: Template, *, postal_address: str) -> Template:
    """The template ready to save (MJML compiled), or :class:`TemplateInvalid`."""
    try:
        prepared = prepare_template(template)
    except ValueError as exc:
        raise TemplateInvalid([Problem(template.name, str(exc), "mjml")]) from None
    problems = check_template(prepared, postal_address=postal_address)
    if problems:
        raise TemplateInvalid(problems)
    return prepared


def check_templates(
    templates: Mapping[str, Template], *, postal_address: str, known: set[str] | None = None
) -> list[Problem]:
    """Problems across a set: each template's, and fallbacks that name no template
    (in the set or in ``known``, e.g. the database's)."""
    problems: list[Problem] = []
    names = set(templates) | (known or set())
    for name, template in templates.items():
        try:
            validate_template(template, postal_address=postal_address)
        except TemplateInvalid as exc:
            problems += exc.problems
        if template.fallback and template.fallback not in names:
            problems.append(
                Problem(name, f"the fallback template {template.fallback!r} does not exist")
            )
    return problems
