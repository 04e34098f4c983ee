"""Content providers: the abandoned cart and product recommendations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flowmail.templates import content
from flowmail.templates.content import (
    UnknownContent,
    content_names,
    content_variables,
    recommendation_provider,
    use_default_recommendations,
)
from flowmail.templates.model import Template
from flowmail.templates.render import render_message


@pytest.fixture(autouse=True)
def default_recommendations() -> Iterator[None]:
    yield
    use_default_recommendations()


def values(**event: Any) -> dict[str, Any]:
    person = {"id": "c1", "first_name": "Ann", "timezone": None}
    return {"contact": person, "user": person, "event": {"name": "cart_abandoned", **event}}


ITEMS = [
    {
        "name": "Mug",
        "price": 12.5,
        "quantity": 2,
        "url": "https://s/mug",
        "image": "https://s/m.png",
    },
    {"name": "Beans", "price": "9.99", "url": "https://s/beans"},
]


def test_both_article_blocks_are_registered() -> None:
    assert {"abandoned_cart", "product_recommendation"} <= set(content_names())
    assert content_variables(None, values()) == {}
    with pytest.raises(UnknownContent):
        content_variables("weather", values())


def test_cart_items_come_from_the_trigger_event() -> None:
    found = content_variables("abandoned_cart", values(items=ITEMS))
    assert found["cart_count"] == 2
    assert found["cart_total"] == 34.99
    mug, beans = found["cart_items"]
    assert (mug["name"], mug["price"], mug["quantity"], mug["line_total"]) == ("Mug", 12.5, 2, 25.0)
    assert (mug["url"], mug["image"]) == ("https://s/mug", "https://s/m.png")
    assert (beans["price"], beans["quantity"], beans["line_total"], beans["image"]) == (
        9.99,
        1,
        9.99,
        None,
    )


def test_the_events_cart_total_wins_and_odd_items_are_cleaned_up() -> None:
    raw = [*ITEMS, "not an item", {"title": "Gift card", "price": "free", "quantity": -3}]
    found = content_variables("abandoned_cart", values(items=raw, cart_total="40.00"))
    assert found["cart_total"] == 40.0
    assert [i["name"] for i in found["cart_items"]] == ["Mug", "Beans", "Gift card"]
    gift = found["cart_items"][2]
    assert (gift["price"], gift["quantity"], gift["line_total"]) == (None, 1, None)


def test_no_items_is_an_empty_cart() -> None:
    assert content_variables("abandoned_cart", values(items="nope")) == {
        "cart_items": [],
        "cart_total": 0,
        "cart_count": 0,
    }


def test_carts_are_bounded() -> None:
    many = [{"name": str(n), "price": 1} for n in range(500)]
    assert content_variables("abandoned_cart", values(items=many))["cart_count"] == 50


def test_default_recommendations_come_from_the_event() -> None:
    picks = [{"name": "Kettle", "price": "30", "url": "https://s/k"}, "junk"]
    assert content_variables("product_recommendation", values(recommendations=picks)) == {
        "recommended_products": [{"name": "Kettle", "price": 30.0, "url": "https://s/k"}]
    }
    assert content_variables("product_recommendation", values()) == {"recommended_products": []}


def test_a_plugged_in_provider_is_used() -> None:
    seen: list[tuple[str, str]] = []

    @recommendation_provider
    def catalogue(contact: dict[str, Any], event: dict[str, Any]) -> list[dict[str, Any]]:
        seen.append((contact["id"], event["name"]))
        return [{"name": f"Top {n}", "price": n} for n in range(20)]

    found = content_variables("product_recommendation", values())
    assert seen == [("c1", "cart_abandoned")]
    assert len(found["recommended_products"]) == 12


def test_a_failing_provider_gives_empty_content_and_says_why() -> None:
    @recommendation_provider
    def broken(contact: dict[str, Any], event: dict[str, Any]) -> list[dict[str, Any]]:
        raise RuntimeError("catalogue is down")

    template = Template(
        "t", "s", text="{% for p in recommended_products %}{{ p.name }}{% endfor %}done"
    )
    rendered = render_message(template, values(), content="product_recommendation")
    assert rendered.text == "done"
    assert rendered.fallback is not None and "catalogue is down" in rendered.fallback


def test_the_documented_example_template_renders() -> None:
    doc = content.__doc__ or ""
    example = doc.split("An example cart template (HTML)::", 1)[1].split("\n\n", 2)[1]
    html = "\n".join(line.removeprefix("    ") for line in example.splitlines())
    assert "{% for item in cart_items %}" in html

    @recommendation_provider
    def picks(contact: dict[str, Any], event: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"name": "Filters", "price": 4, "url": "https://s/f"}]

    template = Template("cart", "Your cart", html=f"<html><body>{html}</body></html>")
    rendered = render_message(template, values(items=ITEMS), content="abandoned_cart")
    assert rendered.fallback is None, rendered.fallback
    text = rendered.text
    assert "[Mug](https://s/mug) \N{MULTIPLICATION SIGN} 2 $25.00" in text
    assert "Total: $34.99" in text
    assert "Filters" not in text  # recommendations were not asked for
    both = render_message(template, values(items=ITEMS), content="product_recommendation")
    assert "[Filters](https://s/f) $4.00" in both.text
