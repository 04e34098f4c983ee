"""HTML work done once per template version instead of once per email.

CSS inlining (css-inline) and the plain-text part (inscriptis) are the costly
steps of rendering. Both are applied to the *Liquid source* when a template is
first compiled: each Liquid tag or output is swapped for a placeholder word (an
HTML comment for a block tag between elements, so table parsing cannot move it),
the HTML is processed, and the Liquid is put back. If the processing moved or
lost a block tag, the source cannot be treated this way and the caller falls back
to processing each rendered email (correct, only slower).

CSS rules only reach elements written in the template: a class name that comes
from a variable (``class="{{ tier }}"``) is not matched when inlining up front.
"""

from __future__ import annotations

import re
from bisect import bisect_left

import css_inline
import mrml
from inscriptis import get_text
from inscriptis.model.config import ParserConfig

from flowmail.templates.liquid import TemplateError

_LIQUID = re.compile(
    r"\{%-?\s*(?P<block>raw|comment)\s*-?%\}.*?\{%-?\s*end(?P=block)\s*-?%\}"
    r"|\{\{.*?\}\}|\{%.*?%\}",
    re.S,
)
_MARK = "qqflm"
_PLACEHOLDER = re.compile(_MARK + r"(\d+)q")
_COMMENT = re.compile(r"<!--\s*(" + _MARK + r"\d+q)\s*-->")

_INLINER = css_inline.CSSInliner(
    keep_at_rules=True,  # @media rules stay in a <style> for clients that read them
    load_remote_stylesheets=False,  # never fetch a URL named by a template
)
_TEXT_CONFIG = ParserConfig(display_links=True)
_TABLE_BLOCK = re.compile(r"<(/?)(?:table|thead|tbody|tfoot|tr|caption)\b[^>]*>", re.I)
_TABLE_CELL = re.compile(r"<(/?)(?:td|th)\b[^>]*>", re.I)
_BLANK_LINES = re.compile(r"\n{3,}")


def _scan(html: str, in_tag: bool, quote: str | None) -> tuple[bool, str | None]:
    """Whether the end of ``html`` is inside an element's ``<...>`` (and in which quote)."""
    for i, ch in enumerate(html):
        if not in_tag:
            if ch == "<" and i + 1 < len(html) and (html[i + 1].isalpha() or html[i + 1] in "/!"):
                in_tag = True
        elif quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == ">":
            in_tag = False
    return in_tag, quote


def protect(source: str, *, comments: bool) -> tuple[str, list[str]]:
    """Swap Liquid for placeholders; returns the HTML and the Liquid pieces by index."""
    pieces: list[str] = []
    liquid: list[str] = []
    in_tag, quote = False, None
    pos = 0
    for match in _LIQUID.finditer(source):
        html = source[pos : match.start()]
        in_tag, quote = _scan(html, in_tag, quote)
        word = f"{_MARK}{len(liquid)}q"
        liquid.append(match.group())
        block = match.group().startswith("{%")
        pieces.append(html)
        pieces.append(f"<!--{word}-->" if comments and block and not in_tag else word)
        pos = match.end()
    pieces.append(source[pos:])
    return "".join(pieces), liquid


def restore(html: str, liquid: list[str]) -> str | None:
    """Put the Liquid back, or ``None`` if the processing broke its structure: every
    block tag must survive once and in order; an output may be dropped (as in a removed
    ``<style>``) or move, but only between the same two block tags, and never repeat."""
    html = _COMMENT.sub(r"\1", html)
    blocks = [i for i, piece in enumerate(liquid) if piece.startswith("{%")]
    is_block = set(blocks)
    seen: set[int] = set()
    tags_seen = 0
    for match in _PLACEHOLDER.finditer(html):
        index = int(match.group(1))
        if index >= len(liquid) or index in seen:
            return None
        seen.add(index)
        if index in is_block:
            if tags_seen >= len(blocks) or blocks[tags_seen] != index:
                return None
            tags_seen += 1
        elif tags_seen != bisect_left(blocks, index):
            return None
    if tags_seen != len(blocks):
        return None
    return _PLACEHOLDER.sub(lambda m: liquid[int(m.group(1))], html)


def inline_css(html: str) -> str:
    """Move ``<style>`` rules into ``style`` attributes (at-rules stay in a ``<style>``)."""
    try:
        return str(_INLINER.inline(html))
    except css_inline.InlineError as exc:
        raise TemplateError(f"CSS could not be inlined: {exc}") from None


def inline_css_source(source: str) -> str | None:
    """``source`` (Liquid HTML) with its CSS inlined, or ``None`` if that cannot be done
    without disturbing the Liquid."""
    if _tag_inside_element(source):
        return None  # e.g. <p {% if vip %}class="gold"{% endif %}>: the rules depend on data
    protected, liquid = protect(source, comments=True)
    return restore(inline_css(protected), liquid)


def _tag_inside_element(source: str) -> bool:
    in_tag, quote, pos = False, None, 0
    for match in _LIQUID.finditer(source):
        in_tag, quote = _scan(source[pos : match.start()], in_tag, quote)
        if in_tag and match.group().startswith("{%"):
            return True
        pos = match.end()
    return False


def _flatten_tables(html: str) -> str:
    """Layout tables read badly as text: rows become lines, cells words on them."""
    html = _TABLE_BLOCK.sub(lambda m: f"<{m.group(1)}div>", html)
    return _TABLE_CELL.sub(lambda m: "</span> " if m.group(1) else "<span>", html)


def tidy_text(text: str) -> str:
    """No indentation, no trailing spaces, at most one blank line in a row."""
    text = "\n".join(map(str.strip, text.split("\n")))
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"


def collapse_blank_lines(text: str) -> str:
    """The per-email part of :func:`tidy_text` for a text template that was tidied already."""
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"


def html_to_text(html: str) -> str:
    """The plain-text part for an HTML email; links are kept as ``[text](url)``."""
    return tidy_text(get_text(_flatten_tables(html), _TEXT_CONFIG))


def text_source(source: str) -> str | None:
    """A Liquid *text* template made from a Liquid HTML template, or ``None``."""
    protected, liquid = protect(source, comments=False)
    return restore(tidy_text(get_text(_flatten_tables(protected), _TEXT_CONFIG)), liquid)


def mjml_to_html(source: str) -> str:
    """Compile MJML (with Liquid in it) to HTML: done once, when a template is saved."""
    try:
        return str(mrml.to_html(source).content)
    except Exception as exc:  # mrml reports every problem as a bare OSError or ValueError
        raise TemplateError(f"MJML: {exc}") from None
