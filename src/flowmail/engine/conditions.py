"""Evaluating conditions against a contact, an event, a run and the history."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flowmail.engine.state import ENGAGEMENT_EVENTS, Contact, Event, History, Run
from flowmail.language.conditions import (
    All,
    AnyOf,
    Compare,
    Condition,
    Engaged,
    Engagement,
    Not,
    Predicate,
)
from flowmail.language.conditions import History as HistoryCondition

ENGAGEMENT_WINDOW = timedelta(days=90)
ENGAGEMENT_HALF_LIFE = timedelta(days=14)
ENGAGEMENT_POINTS = {"email_opened": 1.0, "email_clicked": 2.0}


@dataclass(frozen=True)
class Scope:
    """Everything a condition may look at."""

    contact: Contact
    now: datetime
    history: History
    event: Event | None = None
    run: Run | None = None
    predicates: Mapping[str, PredicateFn] = field(default_factory=dict)


PredicateFn = Callable[[Scope], bool]


def evaluate(condition: Condition, scope: Scope) -> bool:
    match condition:
        case Compare(path, op, value):
            return compare(resolve(path, scope), op, value)
        case All(items):
            return all(evaluate(item, scope) for item in items)
        case AnyOf(items):
            return any(evaluate(item, scope) for item in items)
        case Not(item):
            return not evaluate(item, scope)
        case HistoryCondition():
            return _history(condition, scope)
        case Engagement(op, value):
            return compare(engagement_score(scope.history, scope.now), op, value)
        case Engaged(kind, step):
            return scope.run is not None and kind in scope.run.engaged.get(step, [])
        case Predicate(name):
            predicate = scope.predicates.get(name)
            if predicate is None:
                raise LookupError(f"no predicate named {name!r} is registered")
            return bool(predicate(scope))
    raise AssertionError(condition)


_MISSING = object()


def resolve(path: str, scope: Scope) -> Any:
    """Look up ``contact.x.y``, ``event.x`` or ``run.x``; a missing value is None."""
    root, _, rest = path.partition(".")
    data: Any
    if root == "contact":
        data = scope.contact.as_variables()
    elif root == "event":
        if scope.event is None:
            return None
        data = {"name": scope.event.name, "at": scope.event.at.isoformat()}
        data.update(scope.event.properties)
    else:
        data = scope.run.as_variables() if scope.run else {}
    for key in rest.split("."):
        if isinstance(data, Mapping):
            data = data.get(key, _MISSING)
        elif isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        else:
            return None
        if data is _MISSING:
            return None
    return data


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _ordered(actual: Any, expected: Any) -> tuple[Any, Any] | None:
    """Comparable forms of two values: numbers with numbers, text with text."""
    a, b = as_number(actual), as_number(expected)
    if a is not None and b is not None:
        return a, b
    if isinstance(actual, str) and isinstance(expected, str):
        return actual, expected
    return None


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        return float(actual) == float(expected)
    return bool(actual == expected)


def compare(actual: Any, op: str, expected: Any) -> bool:
    """Apply one operator. A missing value fails every test except ne, not_in and exists."""
    if op == "exists":
        return (actual is not None) is bool(expected)
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, item) for item in expected)
    if op == "not_in":
        return not any(_equal(actual, item) for item in expected)
    if actual is None:
        return False
    if op == "contains":
        if isinstance(actual, (list, tuple)):
            return any(_equal(item, expected) for item in actual)
        return isinstance(actual, str) and str(expected) in actual
    if op == "starts_with":
        return isinstance(actual, str) and actual.startswith(str(expected))
    pair = _ordered(actual, expected)
    if pair is None:
        return False
    a, b = pair
    return bool({"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op])


def _history(condition: HistoryCondition, scope: Scope) -> bool:
    since = scope.now - condition.within if condition.within else None
    events = scope.history.events(condition.event, since, scope.now)
    if condition.where is not None:
        events = [e for e in events if evaluate(condition.where, _with_event(scope, e))]
    count = len(events)
    if condition.min is not None and count < condition.min:
        return False
    return condition.max is None or count <= condition.max


def _with_event(scope: Scope, event: Event) -> Scope:
    return Scope(scope.contact, scope.now, scope.history, event, scope.run, scope.predicates)


def engagement_points(history: History, since: datetime, until: datetime) -> float:
    """Opens count 1, clicks 2, each halving every 14 days before ``until``."""
    total = 0.0
    for name in ENGAGEMENT_EVENTS:
        for event in history.events(name, since, until):
            age = (until - event.at) / ENGAGEMENT_HALF_LIFE
            total += ENGAGEMENT_POINTS[name] * 0.5**age
    return total


def engagement_score(history: History, now: datetime) -> float:
    """A number in [0, 1): 0 with no engagement in 90 days, 0.5 at 2 fresh points.

    ``score = points / (points + 2)`` where points are opens (1) and clicks (2),
    each decayed with a 14-day half-life.
    """
    points = engagement_points(history, now - ENGAGEMENT_WINDOW, now)
    return points / (points + 2.0)
