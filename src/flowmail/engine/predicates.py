"""Named Python predicates for ``{predicate: name}`` conditions.

Register your own with :func:`register`::

    from flowmail.engine.predicates import register

    @register("big_spender")
    def big_spender(scope):
        return (scope.contact.attributes.get("lifetime_value") or 0) > 5000

A predicate must be pure: read ``scope`` (contact, event, run, history, now) only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flowmail.engine.conditions import PredicateFn, Scope, as_number, engagement_points
from flowmail.engine.timing import date_fire_time, zone

PREDICATES: dict[str, PredicateFn] = {}


def register(name: str) -> Callable[[PredicateFn], PredicateFn]:
    def decorator(fn: PredicateFn) -> PredicateFn:
        PREDICATES[name] = fn
        return fn

    return decorator


@register("high_value_customer")
def high_value_customer(scope: Scope) -> bool:
    """Lifetime value over 1,000 (``lifetime_value`` or ``total_lifetime_value``)."""
    attributes = scope.contact.attributes
    value = attributes.get("lifetime_value", attributes.get("total_lifetime_value"))
    number = as_number(value)
    return number is not None and number > 1000


@register("recent_purchaser")
def recent_purchaser(scope: Scope) -> bool:
    """A purchase in the last 30 days: a ``purchase_completed`` event or ``last_purchase_date``."""
    since = scope.now - timedelta(days=30)
    if scope.history.events("purchase_completed", since, scope.now):
        return True
    last = scope.contact.attributes.get("last_purchase_date")
    when = date_fire_time(last, timedelta(0), None, zone(scope.contact.timezone))
    return when is not None and since < when <= scope.now


@register("engagement_trending_up")
def engagement_trending_up(scope: Scope) -> bool:
    """More engagement points in the last 15 days than in the 15 days before."""
    middle = scope.now - timedelta(days=15)
    recent = engagement_points(scope.history, middle, scope.now)
    before = engagement_points(scope.history, middle - timedelta(days=15), middle)
    return recent > before
