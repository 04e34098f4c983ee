"""Checking a contact's email address when it is saved (email-validator, syntax only).

An invalid address is never stored: the value is dropped, the contact keeps the address
it had (or none), and the caller journals the returned warning. No DNS is asked: whether
a domain accepts mail is the provider's answer, reported back as a bounce.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email


class InvalidAddress(ValueError):
    pass


@lru_cache(maxsize=65_536)
def normalize_address(address: str) -> str:
    """The address in normal form (domain lower-cased, Unicode NFC); InvalidAddress if bad.

    Domains under ``.test`` are accepted (RFC 2606, for tests and examples); other
    special-use names such as ``localhost`` or ``.local`` are not.
    """
    try:
        return validate_email(address, check_deliverability=False, test_environment=True).normalized
    except EmailNotValidError as exc:
        raise InvalidAddress(f"{address!r} is not a valid email address: {exc}") from None


def clean_email(values: dict[str, Any], current: str | None) -> tuple[dict[str, Any], str | None]:
    """``values`` (traits or attributes about to be saved) with ``email`` checked.

    Returns the values to save and a warning when the address was refused. A value of
    None removes the address; an unchanged address is not checked again.
    """
    if "email" not in values:
        return values, None
    address = values["email"]
    if address is None or address == current:
        return values, None
    if not isinstance(address, str):
        rest = {k: v for k, v in values.items() if k != "email"}
        return rest, f"email address {address!r} not saved: it is not text"
    try:
        normal = normalize_address(address.strip())
    except InvalidAddress as exc:
        rest = {k: v for k, v in values.items() if k != "email"}
        return rest, f"email address not saved: {exc}"
    return ({**values, "email": normal} if normal != address else values), None
