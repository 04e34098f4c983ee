"""flowmail's own Liquid filters: dates in the contact's zone, and money.

``{{ event.at | local_date: "%d %b %Y" }}`` shows a moment in ``contact.timezone``
(UTC when the contact has none; a second argument names another zone).
``{{ 12.5 | money: "EUR" }}`` is ``€12.50``, with English separators (``$1,234.50``).

A value that is missing stays missing (it renders empty and is reported); a value
that cannot be read as a date or an amount is a render error, which the sender
answers with the template's fallback.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from liquid import Environment, Undefined
from liquid.exceptions import FilterArgumentError, FilterValueError
from liquid.filter import with_context

DEFAULT_DATE_FORMAT = "%d %b %Y"

# code: (symbol, separator between symbol and amount, decimal places)
CURRENCIES: dict[str, tuple[str, str, int]] = {
    "USD": ("$", "", 2),
    "EUR": ("€", "", 2),
    "GBP": ("£", "", 2),
    "JPY": ("¥", "", 0),
    "CNY": ("CN¥", "", 2),
    "INR": ("₹", "", 2),
    "CAD": ("CA$", "", 2),
    "AUD": ("A$", "", 2),
    "NZD": ("NZ$", "", 2),
    "MXN": ("MX$", "", 2),
    "BRL": ("R$", "", 2),
    "CHF": ("CHF", " ", 2),
    "SEK": ("SEK", " ", 2),
    "NOK": ("NOK", " ", 2),
    "DKK": ("DKK", " ", 2),
    "PLN": ("PLN", " ", 2),
}


@lru_cache(maxsize=512)
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _contact_zone(context: Any) -> str | None:
    contact = context.resolve("contact", default=None)
    if isinstance(contact, dict):
        zone = contact.get("timezone")
        return zone if isinstance(zone, str) and zone else None
    return None


def _moment(value: object) -> datetime | date:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:  # a calendar date has no zone: shown as it is
                return date.fromisoformat(text)
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise FilterValueError(f"local_date: {value!r} is not a date", token=None)


@with_context
def local_date(
    value: object, fmt: object = DEFAULT_DATE_FORMAT, zone: object = None, *, context: Any
) -> object:
    """A date or moment, formatted with ``fmt`` (strftime) in the contact's zone."""
    if isinstance(value, Undefined):
        return value
    if value is None or value == "":
        return ""
    moment = _moment(value)
    if isinstance(moment, datetime):
        name = zone if isinstance(zone, str) and zone else _contact_zone(context)
        moment = moment.astimezone(_zone(name or "UTC"))
    return moment.strftime(str(fmt))


def _amount(value: object) -> Decimal:
    if isinstance(value, bool):
        raise FilterValueError(f"money: {value!r} is not an amount", token=None)
    try:
        amount = Decimal(str(value).strip()) if isinstance(value, str) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise FilterValueError(f"money: {value!r} is not an amount", token=None) from None
    if not amount.is_finite():
        raise FilterValueError(f"money: {value!r} is not an amount", token=None)
    return amount


def money(value: object, currency: object = "USD") -> object:
    """``12.5 | money: "EUR"`` -> ``€12.50``; unknown codes are written out: ``XYZ 12.50``."""
    if isinstance(value, Undefined):
        return value
    if value is None or value == "":
        return ""
    code = str(currency).upper()
    if len(code) != 3 or not code.isalpha():
        raise FilterArgumentError(f"money: {currency!r} is not a currency code", token=None)
    symbol, gap, places = CURRENCIES.get(code, (code, " ", 2))
    amount = _amount(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{gap}{abs(amount):,.{places}f}"


def register(env: Environment) -> None:
    env.add_filter("local_date", local_date)
    env.add_filter("money", money)
