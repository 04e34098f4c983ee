"""Field types shared by the API's request models.

Text must be storable in both databases: no NUL characters, no lone surrogates. Free
JSON (properties, traits, attributes) must also be finite numbers and not nested
without end.
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Path, Query
from pydantic import AfterValidator, StringConstraints

from flowmail.delivery.addresses import normalize_address

MAX_DEPTH = 32
MAX_ID = 200


def check_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def check_timezone(value: str) -> str:
    """An IANA zone name (``Europe/Paris``); ValueError otherwise."""
    try:
        ZoneInfo(check_text(value))
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe", long names
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name like Europe/Paris"
        ) from None
    return value


def check_email(value: str) -> str:
    """The address in normal form (email-validator, syntax only); ValueError if invalid."""
    return normalize_address(check_text(value).strip())  # InvalidAddress is a ValueError


def check_json(value: Any, depth: int = 0) -> Any:
    """``value`` if it is plain, finite JSON that can be stored; ValueError otherwise."""
    if depth > MAX_DEPTH:
        raise ValueError(f"is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key)
            check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json(item, depth + 1)
    return value


def _check_object(value: dict[str, Any]) -> dict[str, Any]:
    return check_json(value)  # type: ignore[no-any-return]


Text = Annotated[str, AfterValidator(check_text)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID), AfterValidator(check_text)]
Zone = Annotated[str, StringConstraints(max_length=64), AfterValidator(check_timezone)]
Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(check_email)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_check_object)]

# path and query parameters (URL-decoded text cannot hold surrogates; NUL is refused)
_NO_NUL = r"^[^\x00]+$"
PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID, pattern=_NO_NUL)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Most items in the page")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=400,
        pattern=_NO_NUL,
        description="The `next` value of the previous page",
    ),
]
