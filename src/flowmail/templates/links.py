"""Links in emails: click tracking, the open pixel, UTM parameters, unsubscribe links.

Every tracked link is ``{public_url}/c/{token}`` where the token is the HMAC-signed
pair (destination, message key): the redirect serves only what flowmail itself
signed, so it is never an open redirect. ``mailto:``, ``#anchors``, links into
this installation (unsubscribe, preferences) and the policy's ``keep`` links are
left alone. UTM parameters go on before signing and never replace ones a link
already has.

Paths (served by the HTTP side): ``/c/{token}`` click, ``/o/{token}.gif`` open,
``/u/{token}`` one-click unsubscribe from a topic, ``/p/{token}`` preferences.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flowmail.signing import BadToken, sign, verify

CLICK = "click"
OPEN = "open"
UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"

_HREF = re.compile(
    r"""(<(?:a|area)\b[^>]*?\shref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE | re.DOTALL
)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class LinkPolicy:
    """How one message's links are treated. ``campaign`` and ``content`` become
    ``utm_campaign`` (the workflow id) and ``utm_content`` (the step id)."""

    secret: str
    public_url: str
    message_key: str
    click_tracking: bool = True
    open_tracking: bool = False
    utm: bool = True
    campaign: str | None = None
    content: str | None = None
    keep: frozenset[str] = field(default_factory=frozenset)  # never rewritten

    @property
    def base(self) -> str:
        return self.public_url.rstrip("/")

    def utm_parameters(self) -> list[tuple[str, str]]:
        params = [("utm_source", "flowmail"), ("utm_medium", "email")]
        if self.campaign:
            params.append(("utm_campaign", self.campaign))
        if self.content:
            params.append(("utm_content", self.content))
        return params


def add_utm(url: str, params: list[tuple[str, str]]) -> str:
    """``url`` with each UTM parameter it does not have yet (its own are kept)."""
    return _utm_adder(params)(url)


def _utm_adder(params: list[tuple[str, str]]) -> Callable[[str], str]:
    """A function adding ``params`` to a URL; the encoding is done once for all links."""
    encoded = [(key, urlencode([(key, value)])) for key, value in params]
    everything = "&".join(pair for _, pair in encoded)

    def add(url: str) -> str:
        try:
            parts = urlsplit(url)
            if "utm_" in parts.query:
                have = {k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
                extra = "&".join(pair for key, pair in encoded if key not in have)
            else:
                extra = everything
        except ValueError:
            return url
        if not extra:
            return url
        query = f"{parts.query}&{extra}" if parts.query else extra
        return urlunsplit(parts._replace(query=query))

    return add


def click_token(secret: str, url: str, message_key: str) -> str:
    return sign(secret, CLICK, {"u": url, "m": message_key})


def click_url(policy: LinkPolicy, url: str) -> str:
    return f"{policy.base}/c/{click_token(policy.secret, url, policy.message_key)}"


def resolve_click(secret: str, token: str) -> tuple[str, str]:
    """(destination, message key) of a click token; :class:`BadToken` for anything
    unsigned, altered or not pointing at an http(s) address."""
    data = verify(secret, CLICK, token)
    url, key = data.get("u"), data.get("m")
    if not isinstance(url, str) or not isinstance(key, str) or not _is_web(url):
        raise BadToken("malformed token")
    return url, key


def open_url(policy: LinkPolicy) -> str:
    return f"{policy.base}/o/{sign(policy.secret, OPEN, {'m': policy.message_key})}.gif"


def resolve_open(secret: str, token: str) -> str:
    """The message key of an open pixel's token (with or without ``.gif``)."""
    key = verify(secret, OPEN, token.removesuffix(".gif")).get("m")
    if not isinstance(key, str):
        raise BadToken("malformed token")
    return key


def _is_web(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def _rewriter(policy: LinkPolicy) -> Callable[[str], str | None]:
    """A function giving a link's new address, or ``None`` to leave it as it is."""
    utm = _utm_adder(policy.utm_parameters()) if policy.utm else None
    own = policy.base + "/"

    def rewrite(url: str) -> str | None:
        if not _is_web(url) or url in policy.keep or url.startswith(own):
            return None
        if utm is not None:
            url = utm(url)
        return click_url(policy, url) if policy.click_tracking else url

    return rewrite


def track_links(html: str, policy: LinkPolicy) -> str:
    """Rewrite the HTML's links (and add the open pixel) as ``policy`` says."""
    if policy.click_tracking or policy.utm:
        rewrite = _rewriter(policy)
        done: dict[str, str] = {}

        def replace(match: re.Match[str]) -> str:
            raw = match.group(2) if match.group(2) is not None else match.group(3)
            if raw not in done:
                new = rewrite(htmllib.unescape(raw).strip())
                done[raw] = raw if new is None else htmllib.escape(new, quote=True)
            return f'{match.group(1)}"{done[raw]}"'

        html = _HREF.sub(replace, html)
    if policy.open_tracking:
        html = add_pixel(html, open_url(policy))
    return html


def add_pixel(html: str, src: str) -> str:
    pixel = (
        f'<img src="{htmllib.escape(src, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px">'
    )
    ends = list(_BODY_END.finditer(html))
    if not ends:
        return html + pixel
    at = ends[-1].start()
    return html[:at] + pixel + html[at:]


# --- unsubscribe and preferences ---------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """Who a signed unsubscribe or preferences link is for."""

    workspace: str
    contact_id: str
    topic: str | None
    message_key: str | None


def unsubscribe_token(
    secret: str, workspace: str, contact_id: str, topic: str, message_key: str
) -> str:
    return sign(
        secret, UNSUBSCRIBE, {"w": workspace, "c": contact_id, "t": topic, "m": message_key}
    )


def unsubscribe_url(
    public_url: str, secret: str, workspace: str, contact_id: str, topic: str, message_key: str
) -> str:
    """The one-click link (and the ``List-Unsubscribe`` URL) for one message's topic."""
    token = unsubscribe_token(secret, workspace, contact_id, topic, message_key)
    return f"{public_url.rstrip('/')}/u/{token}"


def preferences_token(
    secret: str, workspace: str, contact_id: str, message_key: str | None = None
) -> str:
    return sign(secret, PREFERENCES, {"w": workspace, "c": contact_id, "m": message_key})


def preferences_url(
    public_url: str, secret: str, workspace: str, contact_id: str, message_key: str | None = None
) -> str:
    """The link to the contact's subscription preferences page."""
    token = preferences_token(secret, workspace, contact_id, message_key)
    return f"{public_url.rstrip('/')}/p/{token}"


def _recipient(data: dict[str, Any], topic_required: bool) -> Recipient:
    ws, contact, topic, key = data.get("w"), data.get("c"), data.get("t"), data.get("m")
    if not isinstance(ws, str) or not isinstance(contact, str):
        raise BadToken("malformed token")
    if topic_required and not isinstance(topic, str):
        raise BadToken("malformed token")
    return Recipient(
        ws,
        contact,
        topic if isinstance(topic, str) else None,
        key if isinstance(key, str) else None,
    )


def resolve_unsubscribe(secret: str, token: str) -> Recipient:
    return _recipient(verify(secret, UNSUBSCRIBE, token), topic_required=True)


def resolve_preferences(secret: str, token: str) -> Recipient:
    return _recipient(verify(secret, PREFERENCES, token), topic_required=False)
