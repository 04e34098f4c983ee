"""Click tracking, the open pixel, UTM parameters, and unsubscribe/preferences links."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from flowmail.signing import BadToken, sign
from flowmail.templates.links import (
    LinkPolicy,
    add_utm,
    preferences_url,
    resolve_click,
    resolve_open,
    resolve_preferences,
    resolve_unsubscribe,
    track_links,
    unsubscribe_url,
)
from flowmail.templates.model import Template
from flowmail.templates.render import render_message

SECRET = "s3cret"
PUBLIC = "https://mail.example.com"
POLICY = LinkPolicy(SECRET, PUBLIC, "msg-1", campaign="welcome", content="step_1")
UTM = "utm_source=flowmail&utm_medium=email&utm_campaign=welcome&utm_content=step_1"


def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html, re.IGNORECASE)


def destination(href: str) -> tuple[str, str]:
    assert href.startswith(f"{PUBLIC}/c/")
    return resolve_click(SECRET, href.removeprefix(f"{PUBLIC}/c/"))


def test_every_web_link_is_rewritten_to_a_signed_redirect() -> None:
    html = (
        '<a href="https://shop.example/a">a</a> <A HREF="http://shop.example/b?x=1&amp;y=2">b</A>'
        " <a class='x' href='https://shop.example/c'>c</a>"
    )
    out = track_links(html, POLICY)
    found = [destination(h) for h in hrefs(out)]
    assert found == [
        (f"https://shop.example/a?{UTM}", "msg-1"),
        (f"http://shop.example/b?x=1&y=2&{UTM}", "msg-1"),
        (f"https://shop.example/c?{UTM}", "msg-1"),
    ]
    assert ">a</a>" in out and ">b</A>" in out


def test_mailto_anchors_and_own_links_are_left_alone() -> None:
    html = (
        '<a href="mailto:help@example.com">m</a><a href="#top">t</a>'
        f'<a href="{PUBLIC}/u/tok">u</a><a href="tel:+123">p</a><a href="https://keep.example/x">k</a>'
    )
    policy = LinkPolicy(SECRET, PUBLIC, "m", keep=frozenset({"https://keep.example/x"}))
    assert track_links(html, policy) == html


def test_unsubscribe_and_preferences_links_are_not_rewritten_when_rendering() -> None:
    template = Template(
        "t",
        "s",
        html='<a href="{{ unsubscribe_url }}">u</a><a href="{{ preferences_url }}">p</a>'
        '<a href="https://shop.example/">shop</a>',
    )
    values = {
        "unsubscribe_url": "https://prefs.example/u/1",
        "preferences_url": "https://prefs.example/p/1",
    }
    rendered = render_message(template, values, links=POLICY)
    found = hrefs(rendered.html or "")
    assert found[:2] == ["https://prefs.example/u/1", "https://prefs.example/p/1"]
    assert destination(found[2])[0].startswith("https://shop.example/?utm_source=flowmail")


def test_an_altered_or_unsigned_token_is_refused() -> None:
    (href,) = hrefs(track_links('<a href="https://shop.example/">x</a>', POLICY))
    token = href.removeprefix(f"{PUBLIC}/c/")
    body, mac = token.split(".")
    forged = sign("another-secret", "click", {"u": "https://evil.example/", "m": "msg-1"})
    for bad in (
        forged,
        body[:-2] + "AA." + mac,
        body + "." + mac[:-2] + "AA",
        "https://evil.example/",
        "",
        "a.b.c",
    ):
        with pytest.raises(BadToken):
            resolve_click(SECRET, bad)


def test_a_token_signed_for_another_purpose_or_scheme_is_refused() -> None:
    with pytest.raises(BadToken):
        resolve_click(SECRET, sign(SECRET, "open", {"u": "https://x.example/", "m": "m"}))
    with pytest.raises(BadToken):
        resolve_click(SECRET, sign(SECRET, "click", {"u": "javascript:alert(1)", "m": "m"}))
    with pytest.raises(BadToken):
        resolve_click(SECRET, sign(SECRET, "click", {"u": "https://x.example/"}))


def test_utm_parameters_are_added_but_never_duplicated_or_replaced() -> None:
    params = POLICY.utm_parameters()
    assert add_utm("https://x.example/p", params) == f"https://x.example/p?{UTM}"
    mine = add_utm("https://x.example/p?utm_source=news&utm_campaign=fall#top", params)
    query = parse_qs(urlsplit(mine).query)
    assert query == {
        "utm_source": ["news"],
        "utm_campaign": ["fall"],
        "utm_medium": ["email"],
        "utm_content": ["step_1"],
    }
    assert mine.endswith("#top")
    assert add_utm(f"https://x.example/p?{UTM}", params) == f"https://x.example/p?{UTM}"


def test_utm_without_click_tracking_and_neither() -> None:
    html = '<a href="https://x.example/">x</a>'
    plain = LinkPolicy(SECRET, PUBLIC, "m", click_tracking=False, campaign="wf")
    assert hrefs(track_links(html, plain)) == [
        "https://x.example/?utm_source=flowmail&amp;utm_medium=email&amp;utm_campaign=wf"
    ]
    off = LinkPolicy(SECRET, PUBLIC, "m", click_tracking=False, utm=False)
    assert track_links(html, off) == html


def test_the_open_pixel_goes_before_the_end_of_the_body() -> None:
    policy = LinkPolicy(SECRET, PUBLIC, "msg-9", click_tracking=False, open_tracking=True)
    out = track_links("<html><body><p>x</p></body></html>", policy)
    match = re.search(
        r'<img src="https://mail\.example\.com/o/([^"]+)" width="1"[^>]*></body>', out
    )
    assert match is not None
    assert resolve_open(SECRET, match.group(1)) == "msg-9"
    assert track_links("<p>x</p>", policy).startswith("<p>x</p><img ")
    with pytest.raises(BadToken):
        resolve_open(SECRET, match.group(1).replace(".gif", "x.gif"))


def test_unsubscribe_and_preferences_urls_round_trip() -> None:
    url = unsubscribe_url(PUBLIC + "/", SECRET, "ws", "c1", "marketing", "msg-1")
    assert url.startswith(f"{PUBLIC}/u/")
    who = resolve_unsubscribe(SECRET, url.rsplit("/", 1)[1])
    assert (who.workspace, who.contact_id, who.topic, who.message_key) == (
        "ws",
        "c1",
        "marketing",
        "msg-1",
    )
    prefs = preferences_url(PUBLIC, SECRET, "ws", "c1")
    assert prefs.startswith(f"{PUBLIC}/p/")
    who = resolve_preferences(SECRET, prefs.rsplit("/", 1)[1])
    assert (who.contact_id, who.topic, who.message_key) == ("c1", None, None)
    with pytest.raises(BadToken):  # a preferences token does not unsubscribe
        resolve_unsubscribe(SECRET, prefs.rsplit("/", 1)[1])
    with pytest.raises(BadToken):
        resolve_unsubscribe("other", url.rsplit("/", 1)[1])


def test_tracked_links_survive_rendering_with_escaped_ampersands() -> None:
    template = Template("t", "s", html='<a href="https://x.example/?a=1&amp;b={{ v }}">x</a>')
    rendered = render_message(template, {"v": "2&3"}, links=POLICY)
    (href,) = hrefs(rendered.html or "")
    assert destination(href)[0] == f"https://x.example/?a=1&b=2&3&{UTM}"
