"""Rendering templates: escaping, defaults, missing values, fallbacks, filters, CSS, text, MJML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowmail.engine.state import Contact, Event, Run
from flowmail.templates.liquid import TemplateError, render
from flowmail.templates.markup import (
    html_to_text,
    inline_css_source,
    mjml_to_html,
    protect,
    restore,
    text_source,
)
from flowmail.templates.model import Template
from flowmail.templates.render import (
    compile_message,
    message_variables,
    render_message,
    with_defaults,
)

NOW = datetime(2025, 9, 2, 9, 0, tzinfo=UTC)
FOOT = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}</p>'


def contact(**attributes: Any) -> dict[str, Any]:
    return {"id": "c1", "email": "c1@example.com", "timezone": None, **attributes}


def variables(**attributes: Any) -> dict[str, Any]:
    person = contact(**attributes)
    return {"contact": person, "user": person, "event": {}, "unsubscribe_url": "https://u/1"}


def html_template(body: str, **kwargs: Any) -> Template:
    return Template(
        name=kwargs.pop("name", "t"),
        subject=kwargs.pop("subject", "Hi {{ contact.first_name }}"),
        html=f"<html><body>{body}</body></html>",
        **kwargs,
    )


# --- escaping ----------------------------------------------------------------------------


def test_html_is_escaped_but_subject_and_text_are_not() -> None:
    template = html_template("<p>Hello {{ contact.first_name }}</p>")
    rendered = render_message(template, variables(first_name="<script>alert(1)</script>"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (rendered.html or "")
    assert "<script>" not in (rendered.html or "")
    assert rendered.subject == "Hi <script>alert(1)</script>"
    assert "Hello <script>alert(1)</script>" in rendered.text


def test_an_attribute_value_cannot_break_out_of_its_quotes() -> None:
    template = html_template('<a href="https://x.example/?n={{ contact.first_name }}">x</a>')
    rendered = render_message(template, variables(first_name='" onmouseover="evil()'))
    assert 'onmouseover="evil()"' not in (rendered.html or "")


def test_explicit_text_part_is_not_escaped() -> None:
    template = Template(
        "t", "s", html="<p>{{ contact.first_name }}</p>", text="Hi {{ contact.first_name }}"
    )
    rendered = render_message(template, variables(first_name="Tom & Jerry"))
    assert rendered.text == "Hi Tom & Jerry"
    assert "Tom &amp; Jerry" in (rendered.html or "")


def test_subject_is_one_line_whatever_the_data() -> None:
    template = Template("t", "Hi {{ contact.first_name }}", text="x")
    rendered = render_message(template, variables(first_name="Ann\r\nBcc: evil@example.com\x00"))
    assert rendered.subject == "Hi Ann Bcc: evil@example.com"


def test_a_given_subject_replaces_the_templates() -> None:
    template = Template("t", "Template subject", text="x")
    assert render_message(template, variables(), subject="Step subject").subject == "Step subject"


# --- defaults and missing values -------------------------------------------------------


def test_a_missing_variable_takes_the_templates_default() -> None:
    template = html_template(
        "<p>Hi {{ contact.first_name }} and {{ user.first_name }}</p>",
        defaults={"contact.first_name": "there"},
    )
    rendered = render_message(template, variables())
    assert rendered.subject == "Hi there"
    assert "Hi there and there" in (rendered.html or "")
    assert rendered.missing == ()


def test_a_blank_value_also_takes_the_default() -> None:
    template = Template(
        "t", "Hi {{ contact.first_name }}", text="x", defaults={"contact.first_name": "there"}
    )
    assert render_message(template, variables(first_name="")).subject == "Hi there"
    assert render_message(template, variables(first_name="Ann")).subject == "Hi Ann"


def test_a_missing_variable_without_default_renders_empty_and_is_recorded() -> None:
    template = html_template("<p>Plan: {{ contact.plan }} {{ event.cart_id }}</p>")
    rendered = render_message(template, variables())
    assert rendered.subject == "Hi"
    assert "Plan:" in (rendered.html or "")
    assert rendered.missing == ("contact.first_name", "contact.plan", "event.cart_id")


def test_defaults_never_change_the_callers_variables() -> None:
    original = variables()
    filled = with_defaults(original, {"contact.first_name": "there", "event.x.y": 1})
    assert filled["contact"]["first_name"] == "there"
    assert filled["event"] == {"x": {"y": 1}}
    assert "first_name" not in original["contact"] and original["event"] == {}


def test_the_liquid_default_filter_is_not_reported_missing() -> None:
    template = Template("t", "Hi {{ contact.first_name | default: 'friend' }}", text="x")
    rendered = render_message(template, variables())
    assert (rendered.subject, rendered.missing) == ("Hi friend", ())


def test_engine_render_reports_plain_names() -> None:
    text, missing = render("{{ a.b }} {{ c | upcase }} {{ d.e }}", {"a": {}})
    assert text.strip() == ""
    assert missing == ["a.b", "c", "d"]


# --- fallbacks ---------------------------------------------------------------------------


def test_a_render_failure_uses_the_fallback_template_and_says_why() -> None:
    broken = html_template(
        '<p>{{ contact.balance | money: "EUR" }}</p>' + FOOT, name="promo", fallback="plain"
    )
    plain = Template("plain", "A message for {{ contact.first_name }}", text="Hello")
    rendered = render_message(broken, variables(first_name="Ann", balance="lots"), fallback=plain)
    assert rendered.template == "plain"
    assert rendered.subject == "A message for Ann"
    assert rendered.text == "Hello"
    assert rendered.fallback is not None
    assert (
        "template 'promo' v1 failed (line 1): money: 'lots' is not an amount" in rendered.fallback
    )
    assert "used fallback template 'plain' v1" in rendered.fallback


def test_without_a_fallback_the_template_is_rendered_leniently() -> None:
    broken = html_template(
        '<p>Balance {{ contact.balance | money: "EUR" }} for {{ contact.first_name }}</p>'
    )
    rendered = render_message(broken, variables(first_name="Ann", balance="lots"))
    assert rendered.template == "t"
    assert "Balance  for Ann" in (rendered.html or "")
    assert rendered.fallback is not None and "rendered 't' leniently" in rendered.fallback


def test_a_failing_fallback_is_recorded_too() -> None:
    broken = Template("a", "{{ contact.x | money }}", text="x", fallback="b")
    also = Template("b", "{{ contact.x | local_date }}", text="y")
    rendered = render_message(broken, variables(x="nope"), fallback=also)
    assert rendered.template == "a"
    assert rendered.fallback is not None
    assert "'a' v1 failed" in rendered.fallback and "'b' v1 failed" in rendered.fallback
    assert "rendered 'a' leniently" in rendered.fallback


def test_a_runaway_loop_at_send_time_falls_back() -> None:
    template = Template(
        "loop", "s", text="{% for i in (1..contact.n) %}x{% endfor %}", fallback="plain"
    )
    rendered = render_message(
        template, variables(n=10**7), fallback=Template("plain", "s", text="ok")
    )
    assert rendered.text == "ok"
    assert rendered.fallback is not None and "loop iteration limit" in rendered.fallback


def test_a_lenient_render_is_still_bounded() -> None:
    template = Template("t", "s", text="a{% for i in (1..contact.n) %}x{% endfor %}b")
    rendered = render_message(template, variables(n=10**7))
    assert rendered.text == "ab"
    assert rendered.fallback is not None and "leniently" in rendered.fallback


# --- filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        (None, "02 Sep 2025 23:30"),
        ("Asia/Tokyo", "03 Sep 2025 08:30"),
        ("Nowhere/Land", "02 Sep 2025 23:30"),
    ],
)
def test_local_date_is_in_the_contacts_zone(zone: str | None, expected: str) -> None:
    text, _ = render(
        '{{ event.at | local_date: "%d %b %Y %H:%M" }}',
        {"contact": contact(timezone=zone), "event": {"at": "2025-09-02T23:30:00Z"}},
    )
    assert text == expected


def test_local_date_reads_dates_datetimes_epochs_and_takes_a_zone() -> None:
    values = {
        "contact": contact(timezone="America/New_York"),
        "d": "2025-09-05",
        "dt": datetime(2025, 9, 5, 3, 0, tzinfo=UTC),
        "epoch": 0,
    }
    text, _ = render(
        "{{ d | local_date }}|{{ dt | local_date: '%d %H' }}|{{ epoch | local_date: '%Y' }}"
        "|{{ dt | local_date: '%H', 'Asia/Tokyo' }}|{{ missing | local_date }}",
        values,
    )
    assert text == "05 Sep 2025|04 23|1969|12|"


def test_local_date_on_odd_data_is_an_error() -> None:
    with pytest.raises(TemplateError, match="not a date"):
        render("{{ x | local_date }}", {"x": "next tuesday"})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{ 12.5 | money: "EUR" }}', "€12.50"),
        ("{{ 1234.5 | money }}", "$1,234.50"),
        ('{{ 1234.5 | money: "gbp" }}', "£1,234.50"),
        ('{{ 1234.5 | money: "JPY" }}', "¥1,235"),
        ('{{ "19.999" | money: "CHF" }}', "CHF 20.00"),
        ('{{ -5 | money: "EUR" }}', "-€5.00"),
        ('{{ 3 | money: "XYZ" }}', "XYZ 3.00"),
        ('{{ nothing | money: "EUR" }}', ""),
    ],
)
def test_money(source: str, expected: str) -> None:
    assert render(source, {})[0] == expected


@pytest.mark.parametrize(
    "source", ['{{ "abc" | money }}', '{{ 1 | money: "EURO" }}', "{{ true | money }}"]
)
def test_money_on_odd_data_is_an_error(source: str) -> None:
    with pytest.raises(TemplateError):
        render(source, {})


# --- CSS, text part, MJML ----------------------------------------------------------------


STYLED = """<html><head><style>p { color: red } .big { font-size: 20px }
@media (max-width: 600px) { p { color: blue } }</style></head>
<body><p class="big">Hi {{ contact.first_name }}</p>
<table>{% for item in items %}
<tr><td>{{ item.name }}</td><td>{{ item.price }}</td></tr>{% endfor %}</table>
</body></html>"""


def test_css_is_inlined_and_at_rules_kept() -> None:
    template = Template("t", "s", html=STYLED)
    rendered = render_message(template, {"contact": contact(first_name="Ann"), "items": []})
    html = rendered.html or ""
    assert '<p class="big" style="color: red;font-size: 20px;">Hi Ann</p>' in html
    assert "@media (max-width: 600px)" in html
    assert "p { color: red }" not in html


def test_css_is_inlined_once_per_template_and_loops_survive() -> None:
    compiled = compile_message(Template("t", "s", html=STYLED))
    assert not compiled.inline_each and compiled.text_from_html and compiled.text is not None
    items = [{"name": "Mug", "price": 3}, {"name": "Cup", "price": 4}]
    rendered = render_message(
        Template("t", "s", html=STYLED), {"contact": contact(), "items": items}
    )
    assert (rendered.html or "").count("<tr>") == 2
    assert "Mug 3" in rendered.text and "Cup 4" in rendered.text


def test_a_template_that_cannot_be_inlined_up_front_is_inlined_per_render() -> None:
    html = (
        "<html><head><style>.a { color: red }</style></head><body>"
        '<p {% if vip %}class="a"{% endif %}>Hi</p></body></html>'
    )
    compiled = compile_message(Template("t", "s", html=html))
    assert compiled.inline_each
    rendered = render_message(Template("t", "s", html=html), {"vip": True})
    assert 'style="color: red;"' in (rendered.html or "")
    assert rendered.text == "Hi\n"


def test_text_is_generated_from_the_html_with_links() -> None:
    template = html_template(
        "<h1>Welcome</h1><p>Hi {{ contact.first_name }},</p><ul><li>one</li><li>two</li></ul>"
        '<p><a href="https://example.com/start">Start here</a></p>'
    )
    rendered = render_message(template, variables(first_name="Ann & Bo"))
    assert rendered.text == (
        "Welcome\n\nHi Ann & Bo,\n\n* one\n* two\n\n[Start here](https://example.com/start)\n"
    )


def test_generated_text_is_the_same_up_front_and_per_render() -> None:
    values = {"contact": contact(first_name="Ann"), "items": [{"name": "Mug", "price": 3}]}
    rendered = render_message(Template("t", "s", html=STYLED), values)
    assert rendered.text == html_to_text(rendered.html or "")


def test_mjml_is_compiled_to_html() -> None:
    html = mjml_to_html(
        "<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ contact.first_name }}</mj-text>"
        '<mj-button href="{{ unsubscribe_url }}">Go</mj-button></mj-column></mj-section>'
        "</mj-body></mjml>"
    )
    assert "<!doctype html>" in html.lower() and "{{ contact.first_name }}" in html
    rendered = render_message(Template("m", "s", html=html), variables(first_name="Ann"))
    assert "Hi Ann" in (rendered.html or "") and "https://u/1" in (rendered.html or "")


def test_bad_mjml_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="MJML"):
        mjml_to_html("<mjml><mj-body><mj-section>")


def test_placeholders_round_trip_and_moved_block_tags_are_refused() -> None:
    source = '<p class="{{ c }}">{% if x %}{{ y }}{% endif %}</p>{% raw %}{{ z }}{% endraw %}'
    protected, liquid = protect(source, comments=False)
    assert "{" not in protected
    assert restore(protected, liquid) == source
    assert inline_css_source(source) is not None
    first, second = protected.split("</p>")
    assert restore(second + first, liquid) is None  # the endraw block moved before the if
    assert text_source("<table>{% for i in x %}<tr><td>{{ i }}</td></tr>{% endfor %}</table>")


# --- the variables -------------------------------------------------------------------------


def test_message_variables_add_links_and_address_to_the_engines() -> None:
    trigger = Event("c1", "cart_abandoned", NOW, {"cart_id": "c-9"})
    run = Run("r1", "wf", 1, "c1", NOW, trigger)
    values = message_variables(
        Contact("c1", "c1@example.com", "Europe/Paris", {"first_name": "Ann"}),
        run,
        None,
        NOW,
        unsubscribe_url="https://u",
        preferences_url="https://p",
        postal_address="1 Road",
    )
    assert values["contact"]["first_name"] == "Ann" and values["user"] is values["contact"]
    assert values["event"]["cart_id"] == "c-9"
    assert (values["unsubscribe_url"], values["preferences_url"], values["postal_address"]) == (
        "https://u",
        "https://p",
        "1 Road",
    )


def test_linked_stylesheets_are_never_loaded(tmp_path: Path) -> None:
    sheet = tmp_path / "evil.css"
    sheet.write_text("p { color: red }")
    for href in (str(sheet), f"file://{sheet}", "http://127.0.0.1:9/x.css"):
        html = (
            f'<html><head><link rel="stylesheet" href="{href}"></head><body><p>x</p></body></html>'
        )
        rendered = render_message(Template("t", "s", html=html), {})
        assert "color" not in (rendered.html or "") and "<link" not in (rendered.html or "")
