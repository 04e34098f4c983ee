"""Rendering a template into a message: subject, HTML and text.

HTML output is autoescaped; the subject and text are not (they are not HTML).
CSS is inlined and the text part derived from the HTML once per template version
(see :mod:`flowmail.templates.markup`), so a render is mostly Liquid's own work.

Personalisation never breaks an email:

- a variable with no value takes the template's ``defaults`` (``{"contact.first_name":
  "there"}``; ``contact`` and ``user`` share them), or renders empty and is listed in
  ``Rendered.missing``;
- if the template fails at send time (a filter given odd data, a runaway loop), the
  ``fallback`` template is rendered instead; without one, the same template is
  rendered leniently (failing expressions left empty). ``Rendered.fallback`` says why.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from liquid import BoundTemplate, Environment
from liquid.exceptions import LiquidError

from flowmail.engine.state import Contact, Run
from flowmail.engine.variables import template_variables
from flowmail.language.models import Workflow
from flowmail.templates.content import safe_content_variables
from flowmail.templates.links import LinkPolicy, track_links
from flowmail.templates.liquid import (
    TemplateError,
    as_template_error,
    make_environment,
    recording_missing,
)
from flowmail.templates.markup import (
    collapse_blank_lines,
    html_to_text,
    inline_css,
    inline_css_source,
    text_source,
)
from flowmail.templates.model import Rendered, Template

CACHE_SIZE = 1024
_ALIASES = {"contact": "user", "user": "contact"}

_ENVS: dict[tuple[bool, bool], Environment] = {
    (autoescape, lax): make_environment(autoescape=autoescape, lax=lax)
    for autoescape in (False, True)
    for lax in (False, True)
}


def message_variables(
    contact: Contact,
    run: Run | None,
    workflow: Workflow | None,
    now: datetime,
    *,
    unsubscribe_url: str = "",
    preferences_url: str = "",
    postal_address: str = "",
) -> dict[str, Any]:
    """What an email template sees: :func:`flowmail.engine.variables.template_variables`
    plus ``unsubscribe_url``, ``preferences_url`` and ``postal_address``."""
    return {
        **template_variables(contact, run, workflow, now),
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
        "postal_address": postal_address,
    }


@dataclass(frozen=True)
class Compiled:
    subject: BoundTemplate
    html: BoundTemplate | None
    text: BoundTemplate | None
    inline_each: bool  # the source could not be inlined up front: inline every render
    text_from_html: bool  # text generated from the HTML (tidied after rendering)


_cache: OrderedDict[tuple[Any, ...], Compiled] = OrderedDict()


def _parse(source: str, *, autoescape: bool, lax: bool) -> BoundTemplate:
    try:
        return _ENVS[autoescape, lax].from_string(source)
    except LiquidError as exc:
        raise as_template_error(exc) from None


def _derived(source: str | None, *, autoescape: bool, lax: bool) -> BoundTemplate | None:
    """A template made from the user's (CSS inlined, or text from HTML), if it parses."""
    if source is None:
        return None
    try:
        return _parse(source, autoescape=autoescape, lax=lax)
    except TemplateError:
        return None


def compile_message(template: Template, *, lax: bool = False) -> Compiled:
    """Parse (and pre-process) a template's parts; cached by content."""
    key = (template.subject, template.html, template.text, lax)
    found = _cache.get(key)
    if found is not None:
        with suppress(KeyError):  # another thread may have evicted it meanwhile
            _cache.move_to_end(key)
        return found
    html = text = None
    inline_each = text_from_html = False
    if template.html is not None:
        html = _parse(template.html, autoescape=True, lax=lax)  # errors name the user's lines
        inlined = _derived(inline_css_source(template.html), autoescape=True, lax=lax)
        inline_each = inlined is None
        html = inlined or html
    if template.text is not None:
        text = _parse(template.text, autoescape=False, lax=lax)
    elif template.html is not None:
        text_from_html = True
        text = _derived(text_source(template.html), autoescape=False, lax=lax)
    compiled = Compiled(
        _parse(template.subject, autoescape=False, lax=lax), html, text, inline_each, text_from_html
    )
    _cache[key] = compiled
    if len(_cache) > CACHE_SIZE:
        with suppress(KeyError):
            _cache.popitem(last=False)
    return compiled


def _is_blank(value: object) -> bool:
    return value is None or value == ""


def _set_default(node: dict[str, Any], path: list[str], value: Any) -> None:
    """Copy-on-write: the caller's dictionaries are never changed."""
    head, rest = path[0], path[1:]
    current = node.get(head)
    if not rest:
        if _is_blank(current):
            node[head] = value
        return
    if current is None:
        current = {}
    if isinstance(current, Mapping):
        child = dict(current)
        _set_default(child, rest, value)
        node[head] = child


def with_defaults(variables: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``variables`` with each dotted-path default filled in where there is no value."""
    out = dict(variables)
    for name, value in defaults.items():
        path = name.split(".")
        _set_default(out, path, value)
        alias = _ALIASES.get(path[0])
        if alias and len(path) > 1 and alias in out:
            _set_default(out, [alias, *path[1:]], value)
    return out


def _one_line(text: str) -> str:
    """Subjects are one line: no CR, LF or NUL can reach a header from here."""
    return " ".join(text.replace("\x00", " ").split())


def _render_with(
    template: Template,
    compiled: Compiled,
    variables: dict[str, Any],
    links: LinkPolicy | None,
    subject: str | None,
) -> Rendered:
    with recording_missing() as missing:
        try:
            if subject is None:
                subject = (
                    compiled.subject.render(**variables)
                    if "{" in template.subject
                    else template.subject
                )
            html = compiled.html.render(**variables) if compiled.html else None
            text = compiled.text.render(**variables) if compiled.text else None
        except LiquidError as exc:
            raise as_template_error(exc) from None
        except Exception as exc:  # a filter's bug on odd data must not stop the email
            raise TemplateError(f"render failed: {exc!r}") from exc
    if html is not None:
        if compiled.inline_each:
            html = inline_css(html)
        if text is None:
            text = html_to_text(html)
        if links is not None:
            keep = links.keep | {
                v for k in ("unsubscribe_url", "preferences_url") if (v := variables.get(k))
            }
            html = track_links(html, replace(links, keep=frozenset(keep)))
    if compiled.text_from_html and compiled.text is not None and text is not None:
        text = collapse_blank_lines(text)  # the text template itself was tidied up front
    return Rendered(
        subject=_one_line(subject),
        text=text or "",
        html=html,
        template=template.name,
        template_version=template.version,
        missing=tuple(dict.fromkeys(missing)),
    )


def _render(
    template: Template,
    variables: dict[str, Any],
    links: LinkPolicy | None,
    subject: str | None,
    *,
    lax: bool = False,
) -> Rendered:
    values = with_defaults(variables, template.defaults) if template.defaults else variables
    return _render_with(template, compile_message(template, lax=lax), values, links, subject)


def _reason(template: Template, exc: TemplateError) -> str:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    line = f" (line {exc.line})" if exc.line else ""
    return f"template {template.name!r} v{template.version} failed{line}: {first}"


def render_message(
    template: Template,
    variables: Mapping[str, Any],
    *,
    links: LinkPolicy | None = None,
    fallback: Template | None = None,
    subject: str | None = None,
    content: str | None = None,
) -> Rendered:
    """Render one message.

    ``variables`` as from :func:`message_variables`; ``links`` rewrites links and adds
    the open pixel; ``fallback`` is the template named by ``template.fallback``, loaded
    by the caller; ``subject`` (already rendered, e.g. an email step's own) replaces the
    template's; ``content`` names a content provider whose variables are added.
    """
    values = dict(variables)
    notes: list[str] = []
    if content is not None:
        extra, problem = safe_content_variables(content, values)
        values.update(extra)
        if problem:
            notes.append(problem)
    try:
        rendered = _render(template, values, links, subject)
    except TemplateError as exc:
        notes.append(_reason(template, exc))
        rendered = _fall_back(template, values, links, subject, fallback, notes)
    if notes:
        rendered = replace(rendered, fallback="; ".join(notes))
    return rendered


def _fall_back(
    template: Template,
    values: dict[str, Any],
    links: LinkPolicy | None,
    subject: str | None,
    fallback: Template | None,
    notes: list[str],
) -> Rendered:
    if fallback is not None and fallback.name != template.name:
        try:
            rendered = _render(fallback, values, links, subject)
        except TemplateError as exc:
            notes.append(_reason(fallback, exc))
        else:
            notes.append(f"used fallback template {fallback.name!r} v{fallback.version}")
            return rendered
    notes.append(f"rendered {template.name!r} leniently")
    try:
        return _render(template, values, links, subject, lax=True)
    except TemplateError as exc:
        raise TemplateError("; ".join([*notes, f"failed again: {exc}"]), exc.line) from None
