"""Conditions as data: parsed from the user's mapping into a small tree.

Grammar (a mapping with several keys means all of them must hold)::

    {contact.plan: pro}                     equality
    {event.cart_total: {gte: 20}}           operator
    {all: [...]} {any: [...]} {not: {...}}  combinators
    {history: {event, within, min, max, where}}
    {engagement: {gte: 0.5}}
    {opened: step_id} {clicked: step_id}
    {predicate: name}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flowmail.language.durations import parse_duration

OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "starts_with",
    "in",
    "not_in",
    "exists",
)
ALIASES = {
    "equals": "eq",
    "not_equals": "ne",
    "greater_than": "gt",
    "less_than": "lt",
    "greater_equal": "gte",
    "less_equal": "lte",
    "in_list": "in",
    "in_array": "in",
}
PATH_ROOTS = ("contact", "user", "event", "run")


class ConditionError(ValueError):
    """A condition the user wrote cannot be understood."""


@dataclass(frozen=True)
class Compare:
    path: str
    op: str
    value: Any


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


@dataclass(frozen=True)
class History:
    event: str
    within: timedelta | None
    min: int | None
    max: int | None
    where: Condition | None


@dataclass(frozen=True)
class Engagement:
    op: str
    value: float


@dataclass(frozen=True)
class Engaged:
    kind: str  # "opened" or "clicked"
    step: str


@dataclass(frozen=True)
class Predicate:
    name: str


Condition = Compare | All | AnyOf | Not | History | Engagement | Engaged | Predicate


def normalize_op(op: str) -> str:
    name = ALIASES.get(op, op)
    if name not in OPERATORS:
        known = ", ".join(OPERATORS)
        raise ConditionError(f"unknown operator {op!r}; known operators: {known}")
    return name


def parse_condition(raw: object) -> Condition:
    """Turn the user's mapping into a :data:`Condition`, or raise :class:`ConditionError`."""
    if isinstance(raw, (Compare, All, AnyOf, Not, History, Engagement, Engaged, Predicate)):
        return raw
    if not isinstance(raw, dict) or not raw:
        raise ConditionError(f"a condition must be a non-empty mapping, got {raw!r}")
    items = tuple(_parse_key(str(key), value) for key, value in raw.items())
    return items[0] if len(items) == 1 else All(items)


def _parse_list(key: str, value: object) -> tuple[Condition, ...]:
    if not isinstance(value, list) or not value:
        raise ConditionError(f"'{key}' needs a non-empty list of conditions")
    return tuple(parse_condition(item) for item in value)


def _parse_key(key: str, value: object) -> Condition:
    if key == "all":
        return All(_parse_list(key, value))
    if key == "any":
        return AnyOf(_parse_list(key, value))
    if key == "not":
        return Not(parse_condition(value))
    if key == "history":
        return _parse_history(value)
    if key == "engagement":
        compare = _parse_compare("engagement", value)
        if not isinstance(compare.value, (int, float)) or isinstance(compare.value, bool):
            raise ConditionError("'engagement' compares with a number between 0 and 1")
        return Engagement(compare.op, float(compare.value))
    if key in ("opened", "clicked"):
        if not isinstance(value, str) or not value:
            raise ConditionError(f"'{key}' needs the id of an email step")
        return Engaged(key, value)
    if key == "predicate":
        if not isinstance(value, str) or not value:
            raise ConditionError("'predicate' needs the name of a registered predicate")
        return Predicate(value)
    root = key.split(".", 1)[0]
    if "." not in key or root not in PATH_ROOTS:
        raise ConditionError(
            f"unknown condition {key!r}: paths start with contact., event. or run.; "
            "other keys are all, any, not, history, engagement, opened, clicked, predicate"
        )
    if root == "user":
        key = "contact" + key[4:]
    return _parse_compare(key, value)


def _parse_compare(path: str, value: object) -> Compare:
    if isinstance(value, dict):
        if len(value) != 1:
            raise ConditionError(f"{path}: give exactly one operator, got {sorted(value)}")
        ((op, operand),) = value.items()
        op = normalize_op(str(op))
        if op in ("in", "not_in") and not isinstance(operand, list):
            raise ConditionError(f"{path}: '{op}' needs a list")
        if op == "exists" and not isinstance(operand, bool):
            raise ConditionError(f"{path}: 'exists' takes true or false")
        return Compare(path, op, operand)
    return Compare(path, "eq", value)


def _parse_history(value: object) -> History:
    if not isinstance(value, dict) or not isinstance(value.get("event"), str):
        raise ConditionError("'history' needs at least {event: name}")
    unknown = set(value) - {"event", "within", "min", "max", "where"}
    if unknown:
        raise ConditionError(f"'history' has unknown keys {sorted(unknown)}")
    try:
        within = parse_duration(value["within"]) if "within" in value else None
    except ValueError as exc:
        raise ConditionError(f"history: {exc}") from None
    bounds = {}
    for name in ("min", "max"):
        bound = value.get(name)
        if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
            raise ConditionError(f"history: '{name}' must be a whole number")
        bounds[name] = bound
    low = bounds["min"] if bounds["min"] is not None or bounds["max"] is not None else 1
    where = parse_condition(value["where"]) if value.get("where") is not None else None
    return History(value["event"], within, low, bounds["max"], where)
