"""Annotated field types shared by the workflow and scenario models."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, PlainValidator
from pydantic.json_schema import WithJsonSchema

from flowmail.language.conditions import Condition, ConditionError, parse_condition
from flowmail.language.durations import DURATION_PATTERN, format_duration, parse_duration

CONDITION_MARK = "x-flowmail-condition"  # replaced by a $ref in the published schema
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_\-]*$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _slug(value: str) -> str:
    if not re.match(SLUG_PATTERN, value):
        raise ValueError(
            f"{value!r} is not a valid id: use lower-case letters, digits, '_' and '-'"
        )
    return value


def _condition(value: object) -> Condition:
    try:
        return parse_condition(value)
    except ConditionError as exc:
        raise ValueError(str(exc)) from None


def _aware(value: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date-time") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{value!r} is not an ISO 8601 date-time")
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no time zone: add Z or an offset like +02:00")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name like Europe/Paris"
        ) from None
    return value


def _clock_time(value: object) -> time:
    if isinstance(value, time):
        return value
    match = re.match(r"^(\d{1,2}):(\d{2})$", str(value))
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"bad time of day {value!r}: use HH:MM, like 09:30")
    return time(int(match[1]), int(match[2]))


_DURATION_SCHEMA = {"type": "string", "pattern": DURATION_PATTERN, "examples": ["90m", "2d"]}

Slug = Annotated[
    str, AfterValidator(_slug), WithJsonSchema({"type": "string", "pattern": SLUG_PATTERN})
]
StepRef = Slug  # a step id or "end"
Duration = Annotated[
    timedelta,
    PlainValidator(parse_duration),
    PlainSerializer(format_duration),
    WithJsonSchema(_DURATION_SCHEMA),
]
SignedDuration = Annotated[
    timedelta,
    PlainValidator(lambda v: parse_duration(v, signed=True)),
    PlainSerializer(format_duration),
    WithJsonSchema({**_DURATION_SCHEMA, "examples": ["-3d", "1d"]}),
]
AwareDatetime = Annotated[
    datetime,
    PlainValidator(_aware),
    PlainSerializer(lambda d: d.isoformat()),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
TimeZone = Annotated[str, AfterValidator(_timezone)]
ClockTime = Annotated[
    time,
    PlainValidator(_clock_time),
    PlainSerializer(lambda t: t.strftime("%H:%M")),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,2}:\d{2}$"}),
]
ConditionField = Annotated[
    Condition,
    PlainValidator(_condition),
    WithJsonSchema({"type": "object", CONDITION_MARK: True}),
]
Percent = Annotated[
    float,
    BeforeValidator(lambda v: float(v.rstrip("%")) if isinstance(v, str) else v),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 100},
                {"type": "string", "pattern": r"^\d+(\.\d+)?%$", "examples": ["10%"]},
            ]
        }
    ),
]


def condition_schema() -> dict[str, Any]:
    """JSON Schema of the condition mapping (shared by every condition field)."""
    compare = {
        "oneOf": [
            {"not": {"type": "object"}},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "description": "one operator: eq, ne, gt, gte, lt, lte, contains, "
                "starts_with, in, not_in, exists (or the article's aliases)",
            },
        ]
    }
    return {
        "type": "object",
        "minProperties": 1,
        "description": "Keys are paths (contact.x, event.x, run.x) or all, any, not, "
        "history, engagement, opened, clicked, predicate.",
        "properties": {
            "all": {"type": "array", "items": {"$ref": "#/$defs/Condition"}},
            "any": {"type": "array", "items": {"$ref": "#/$defs/Condition"}},
            "not": {"$ref": "#/$defs/Condition"},
            "history": {
                "type": "object",
                "required": ["event"],
                "properties": {
                    "event": {"type": "string"},
                    "within": _DURATION_SCHEMA,
                    "min": {"type": "integer"},
                    "max": {"type": "integer"},
                    "where": {"$ref": "#/$defs/Condition"},
                },
                "additionalProperties": False,
            },
            "engagement": {"type": "object", "minProperties": 1, "maxProperties": 1},
            "opened": {"type": "string"},
            "clicked": {"type": "string"},
            "predicate": {"type": "string"},
        },
        "patternProperties": {r"^(contact|user|event|run)\..+$": compare},
        "additionalProperties": False,
    }
