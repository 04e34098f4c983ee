"""Header values made safe: no CR, LF, NUL or other control character from any template or
attribute can ever start a new header, whether raw or hidden in an RFC 2047 encoded word.

Python 3.11.7 still has CVE-2024-6923 (the stdlib email generator does not quote newlines in
encoded words), so nothing here relies on the standard library's header machinery:

1. :func:`clean_text` decodes any encoded words in the input first (repeatedly, bounded), then
   replaces every control, line-separator and surrogate character with a space and collapses
   runs of spaces. What is left is one line of printable text.
2. Text that is not plain ASCII, or still contains ``=?``, or has a word too long to fold, is
   written as RFC 2047 ``B`` encoded words of our own; their content is already clean, so a
   decoder can never find a newline in them.
3. Addresses are checked against a strict ``dot-atom@domain`` grammar: no spaces, quotes,
   angle brackets, commas, control characters or ``=?`` (the stdlib decodes encoded words even
   inside an address).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping

MAX_LINE = 78  # RFC 5322 recommended line length (hard limit 998)
MAX_WORD_LINE = 76  # RFC 2047: a line holding encoded words is at most 76 characters
HARD_LINE = 998
MAX_NAME = 40  # our own limit on custom header names

# Headers the builder writes itself; a caller may not add or replace them.
RESERVED = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "reply-to",
        "sender",
        "return-path",
        "received",
        "dkim-signature",
        "in-reply-to",
        "references",
    }
)
RESERVED_PREFIXES = ("content-", "resent-", "arc-")

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SPACES = re.compile(" {2,}")
# Lenient, like the decoders we must outsmart: charset, B or Q, then anything up to "?=".
_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([bBqQ])\?(.*?)\?=", re.DOTALL)
_EW_GAP = re.compile(r"(\?=)[ \t\r\n]+(=\?)")
_QP_HEX = re.compile(r"=([0-9A-Fa-f]{2})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_PHRASE_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_MAX_DECODE_ROUNDS = 8


class HeaderError(ValueError):
    """A header name, address or Message-ID that cannot be written safely."""


# --- text ----------------------------------------------------------------------------


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, payload = match.group(1), match.group(2).upper(), match.group(3)
    charset = charset.split("*", 1)[0] or "ascii"
    try:
        if encoding == "B":
            raw = base64.b64decode(payload + "=" * (-len(payload) % 4))
        else:
            raw = _QP_HEX.sub(lambda m: chr(int(m.group(1), 16)), payload.replace("_", " ")).encode(
                "latin-1"
            )
        return raw.decode(charset, errors="replace")
    except (LookupError, ValueError, binascii.Error):
        return "\ufffd"  # undecodable: never leave an encoded word behind


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words the way a lenient reader would, until none is left."""
    for _ in range(_MAX_DECODE_ROUNDS):
        if "=?" not in text:
            return text
        joined = _EW_GAP.sub(r"\1\2", text)  # whitespace between encoded words is dropped
        decoded = _ENCODED_WORD.sub(_decode_word, joined)
        if decoded == joined:
            return text
        text = decoded
    return text.replace("=?", "= ?")  # nested beyond reason: break every introducer


def clean_text(value: str) -> str:
    """One safe line: encoded words decoded, control characters gone, spaces collapsed."""
    if not (value.isascii() and value.isprintable()) or "=?" in value:
        value = _CONTROL.sub(" ", decode_words(_CONTROL.sub(" ", value)))
    if "  " in value:
        value = _SPACES.sub(" ", value)
    return value.strip(" ")


# --- folding and encoding -------------------------------------------------------------


def _fold(first: str, tokens: Iterable[str], limit: int = MAX_LINE) -> str:
    """Join tokens with single spaces, breaking lines (CRLF + space) before a token that would
    pass ``limit``. The first token always stays on the first line."""
    lines: list[str] = []
    line = first
    empty = True
    for token in tokens:
        if not empty and len(line) + 1 + len(token) > limit:
            lines.append(line)
            line = " " + token
        else:
            line = f"{line} {token}"
        empty = False
    lines.append(line)
    return "\r\n".join(lines)


def _chunks(text: str, first_room: int, room: int) -> list[str]:
    """Split ``text`` on character boundaries into pieces whose UTF-8 form is at most
    ``first_room`` bytes (the first) and ``room`` bytes (the others)."""
    data = text.encode("utf-8")
    if len(data) <= first_room:
        return [text]
    pieces: list[str] = []
    start = 0
    size = 0
    limit = first_room
    for index, char in enumerate(text):
        width = len(char.encode("utf-8"))
        if size and size + width > limit:
            pieces.append(text[start:index])
            start, size, limit = index, 0, room
        size += width
    pieces.append(text[start:])
    return pieces


def encoded_words(text: str, first_room: int) -> list[str]:
    """``text`` as RFC 2047 B encoded words; the first fits ``first_room`` characters."""
    overhead = len("=?UTF-8?B??=")
    first_bytes = max(6, (first_room - overhead) // 4 * 3)
    other_bytes = (MAX_WORD_LINE - 1 - overhead) // 4 * 3
    return [
        "=?UTF-8?B?" + base64.b64encode(piece.encode("utf-8")).decode("ascii") + "?="
        for piece in _chunks(text, first_bytes, other_bytes)
    ]


def _needs_encoding(text: str, room: int) -> bool:
    if not text.isascii() or "=?" in text:
        return True
    return any(len(word) > room for word in text.split(" "))


def unstructured(name: str, value: str) -> str:
    """``Name: value`` (without the final CRLF) for free text such as Subject."""
    text = clean_text(value)
    head = name + ":"
    if not text:
        return head
    if not _needs_encoding(text, HARD_LINE - len(head) - 2):
        return _fold(head, text.split(" "))
    first_room = MAX_WORD_LINE - len(head) - 1
    return _fold(head, encoded_words(text, first_room), MAX_WORD_LINE)


# --- names, addresses, ids ------------------------------------------------------------


def check_name(name: str) -> str:
    """A custom header name: letters, digits and dashes, not one the builder owns."""
    if not isinstance(name, str) or len(name) > MAX_NAME or not _NAME.fullmatch(name):
        raise HeaderError(f"invalid header name {name!r}")
    lower = name.lower()
    if lower in RESERVED or lower.startswith(RESERVED_PREFIXES):
        raise HeaderError(f"header {name!r} is written by flowmail and cannot be set")
    return name


def check_address(address: str) -> str:
    """One ``local@domain`` address, strictly; an internationalised domain becomes IDNA."""
    if not isinstance(address, str) or not 3 <= len(address) <= 254:
        raise HeaderError(f"invalid email address {address!r}")
    local, at, domain = address.rpartition("@")
    if not at or "=?" in address or not _LOCAL.fullmatch(local) or len(local) > 64:
        raise HeaderError(f"invalid email address {address!r}")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise HeaderError(f"invalid email domain in {address!r}") from exc
    if not _DOMAIN.fullmatch(domain):
        raise HeaderError(f"invalid email address {address!r}")
    return f"{local}@{domain}"


def check_message_id(message_id: str) -> str:
    """A Message-ID without angle brackets: ``dot-atom@dot-atom``."""
    left, at, right = message_id.rpartition("@") if isinstance(message_id, str) else ("", "", "")
    if (
        not at
        or "=?" in message_id
        or len(message_id) > 250
        or not _LOCAL.fullmatch(left)
        or not _LOCAL.fullmatch(right)
    ):
        raise HeaderError(f"invalid Message-ID {message_id!r}")
    return message_id


def clean_name(display_name: str | None) -> str:
    """A display name as it will be shown: cleaned, at most 200 characters."""
    return clean_text(display_name or "")[:200].strip(" ")


def mailbox(name: str, display_name: str | None, address: str) -> str:
    """``Name: Display Name <address>`` (without the final CRLF), folded and encoded."""
    address = check_address(address)
    phrase = clean_name(display_name)
    head = name + ":"
    if not phrase:
        return f"{head} {address}"
    angle = f"<{address}>"
    if "=?" not in phrase and _PHRASE_ATOMS.fullmatch(phrase):
        return _fold(head, [*phrase.split(" "), angle])
    if phrase.isascii() and "=?" not in phrase and len(head) + len(phrase) + len(angle) < 72:
        quoted = '"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{head} {quoted} {angle}"
    words = encoded_words(phrase, MAX_WORD_LINE - len(head) - 1)
    return _fold(head, [*words, angle], MAX_WORD_LINE)


def display_address(display_name: str | None, address: str) -> str:
    """``"Display Name" <address>`` in Unicode, for JSON APIs that take a From string."""
    address = check_address(address)
    phrase = clean_name(display_name)
    if not phrase:
        return address
    return '"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + f'" <{address}>'


# --- the custom header set --------------------------------------------------------------


def tag_header(tag: str) -> str:
    """The header a tag travels in: ``workflow`` or ``flowmail_workflow`` ->
    ``X-Flowmail-Workflow``."""
    if not isinstance(tag, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,24}", tag):
        raise HeaderError(f"invalid tag name {tag!r}")
    name = tag.removeprefix("flowmail_")  # ``flowmail_step`` is ``X-Flowmail-Step`` too
    return "X-Flowmail-" + "-".join(part.capitalize() for part in re.split(r"[_-]", name) if part)


def custom_headers(headers: Mapping[str, str], tags: Mapping[str, str]) -> list[tuple[str, str]]:
    """The caller's headers, then one ``X-Flowmail-*`` header per tag that is not already
    there, as checked (name, cleaned value) pairs in a stable order."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in headers.items():
        check_name(name)
        if name.lower() in seen:
            raise HeaderError(f"header {name!r} given twice")
        seen.add(name.lower())
        out.append((name, clean_text(str(value))))
    for tag, value in tags.items():
        name = tag_header(tag)
        if name.lower() not in seen:
            seen.add(name.lower())
            out.append((name, clean_text(str(value))))
    return out
