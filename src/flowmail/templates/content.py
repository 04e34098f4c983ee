"""Content providers: extra variables an email step asks for with ``content:``.

The article's two blocks:

``content: abandoned_cart``
    ``cart_items``: the trigger event's ``items`` property, each item cleaned up to
    ``{name, price, quantity, url, image, line_total}`` (``quantity`` defaults to 1,
    at most 50 items); ``cart_total``: the event's ``cart_total``, or the sum of the
    line totals; ``cart_count``: the number of items.

``content: product_recommendation``
    ``recommended_products``: a list of ``{name, price, url, image, ...}`` from the
    recommendation provider (at most 12). The default provider returns the trigger
    event's ``recommendations`` property, or an empty list. Plug in your own::

        from flowmail.templates.content import recommendation_provider

        @recommendation_provider
        def from_catalog(contact: dict, event: dict) -> list[dict]:
            return catalog.top_sellers(for_contact=contact["id"], limit=4)

An example cart template (HTML)::

    <p>Hi {{ contact.first_name }}, you left these behind:</p>
    <table>
      {% for item in cart_items %}
      <tr>
        <td><img src="{{ item.image }}" alt="" width="64"></td>
        <td><a href="{{ item.url }}">{{ item.name }}</a> &times; {{ item.quantity }}</td>
        <td>{{ item.line_total | money: "USD" }}</td>
      </tr>
      {% endfor %}
    </table>
    <p>Total: {{ cart_total | money: "USD" }}</p>
    {% if recommended_products.size > 0 %}<p>You might also like:</p>{% endif %}
    {% for product in recommended_products %}
      <a href="{{ product.url }}">{{ product.name }}</a> {{ product.price | money: "USD" }}
    {% endfor %}

Odd items are cleaned up or dropped. A provider that raises gives empty content
(:func:`safe_content_variables`), and the rendered message's ``fallback`` says why:
content never stops an email.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_CART_ITEMS = 50
MAX_RECOMMENDATIONS = 12

ABANDONED_CART = "abandoned_cart"
PRODUCT_RECOMMENDATION = "product_recommendation"

Variables = Mapping[str, Any]
ContentProvider = Callable[[Variables], dict[str, Any]]
RecommendationProvider = Callable[[dict[str, Any], dict[str, Any]], list[dict[str, Any]]]

_content: dict[str, ContentProvider] = {}


class UnknownContent(ValueError):
    pass


class ContentError(RuntimeError):
    """A content provider failed."""


def content_provider(name: str) -> Callable[[ContentProvider], ContentProvider]:
    """Register a content block under ``name`` (what an email step's ``content:`` says)."""

    def register(func: ContentProvider) -> ContentProvider:
        _content[name] = func
        return func

    return register


def content_names() -> list[str]:
    return sorted(_content)


def content_variables(name: str | None, variables: Variables) -> dict[str, Any]:
    """The variables ``name`` adds to ``variables`` (none for ``None``)."""
    if name is None:
        return {}
    try:
        provider = _content[name]
    except KeyError:
        raise UnknownContent(f"no content provider named {name!r}") from None
    try:
        return provider(variables)
    except Exception as exc:  # a user's provider: any failure is reported, not raised through
        raise ContentError(f"content {name!r} failed: {exc!r}") from exc


_EMPTY: dict[str, dict[str, Any]] = {
    ABANDONED_CART: {"cart_items": [], "cart_total": 0, "cart_count": 0},
    PRODUCT_RECOMMENDATION: {"recommended_products": []},
}


def safe_content_variables(name: str | None, variables: Variables) -> tuple[dict[str, Any], str]:
    """Like :func:`content_variables`, but empty content and the reason ("" if none) instead
    of an error."""
    try:
        return content_variables(name, variables), ""
    except (ContentError, UnknownContent) as exc:
        return dict(_EMPTY.get(name or "", {})), str(exc)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return float(number) if number.is_finite() else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def cart_item(raw: object) -> dict[str, Any] | None:
    """One cart item in the documented shape, or ``None`` if it is not an item at all."""
    if not isinstance(raw, Mapping):
        return None
    price = _number(raw.get("price"))
    quantity = _number(raw.get("quantity"))
    count = int(quantity) if quantity is not None and quantity > 0 else 1
    return {
        **{k: v for k, v in raw.items() if isinstance(k, str)},
        "name": _text(raw.get("name")) or _text(raw.get("title")) or "",
        "price": price,
        "quantity": count,
        "url": _text(raw.get("url")),
        "image": _text(raw.get("image")),
        "line_total": None if price is None else round(price * count, 2),
    }


def _event(variables: Variables) -> dict[str, Any]:
    event = variables.get("event")
    return dict(event) if isinstance(event, Mapping) else {}


@content_provider(ABANDONED_CART)
def abandoned_cart(variables: Variables) -> dict[str, Any]:
    """``cart_items``, ``cart_total`` and ``cart_count`` from the trigger event."""
    event = _event(variables)
    raw = event.get("items")
    items = [
        item
        for item in (cart_item(r) for r in (raw if isinstance(raw, list) else [])[:MAX_CART_ITEMS])
        if item is not None
    ]
    total = _number(event.get("cart_total"))
    if total is None:
        total = round(sum(i["line_total"] or 0 for i in items), 2)
    return {"cart_items": items, "cart_total": total, "cart_count": len(items)}


def event_recommendations(contact: dict[str, Any], event: dict[str, Any]) -> list[dict[str, Any]]:
    """The default provider: the trigger event's ``recommendations`` property."""
    found = event.get("recommendations")
    return list(found) if isinstance(found, list) else []


_recommender: RecommendationProvider = event_recommendations


def recommendation_provider(func: RecommendationProvider) -> RecommendationProvider:
    """Decorator: make ``func(contact, event) -> [product, ...]`` the provider."""
    global _recommender
    _recommender = func
    return func


def use_default_recommendations() -> None:
    recommendation_provider(event_recommendations)


@content_provider(PRODUCT_RECOMMENDATION)
def product_recommendation(variables: Variables) -> dict[str, Any]:
    """``recommended_products`` from the current recommendation provider."""
    contact = variables.get("contact")
    products = _recommender(
        dict(contact) if isinstance(contact, Mapping) else {}, _event(variables)
    )
    cleaned = []
    for raw in products[:MAX_RECOMMENDATIONS]:
        if isinstance(raw, Mapping):
            product = {k: v for k, v in raw.items() if isinstance(k, str)}
            product["price"] = _number(raw.get("price"))
            product.setdefault("name", "")
            cleaned.append(product)
    return {"recommended_products": cleaned}
