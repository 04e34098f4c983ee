"""``/v1/suppressions``: addresses that get no email (bounces, complaints, by hand)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from flowmail.api.auth import AdminKey
from flowmail.api.context import Ctx
from flowmail.api.errors import ApiError
from flowmail.api.fields import Email, Limit, Text, check_email
from flowmail.store import api_queries
from flowmail.store.messages import add_suppression

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"])
_Address = Annotated[str, Path(min_length=1, max_length=320, pattern=r"^[^\x00]+$")]


class Suppression(BaseModel):
    email: str
    reason: str
    source: str | None
    created_at: datetime


class SuppressionPage(BaseModel):
    items: list[Suppression]
    next: str | None = Field(description="Pass as `after` for the next page; null at the end")


class NewSuppression(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    reason: Literal["manual"] = "manual"
    source: Text | None = Field(None, max_length=500, description="Who or why; default: the key")


def _address(raw: str) -> str:
    """How the store keeps an address: normal form, lower case (as given if not valid,
    so that an odd address a provider reported can still be lifted)."""
    try:
        return check_email(raw).lower()
    except ValueError:
        return raw.strip().lower()


@router.get("", response_model=SuppressionPage)
def list_suppressions(
    key: AdminKey,
    ctx: Ctx,
    limit: Limit = 100,
    after: Annotated[str | None, Query(max_length=320, pattern=r"^[^\x00]+$")] = None,
    reason: Annotated[str | None, Query(max_length=32, pattern=r"^[^\x00]+$")] = None,
) -> SuppressionPage:
    """Suppressed addresses in alphabetical order, a page at a time."""
    rows = api_queries.list_suppressions(
        ctx.store, key.workspace_id, limit=limit, after=after, reason=reason
    )
    following = rows[-1]["email"] if len(rows) == limit else None
    return SuppressionPage(items=[Suppression(**r) for r in rows], next=following)


@router.post("", response_model=Suppression, status_code=status.HTTP_201_CREATED)
def add(body: NewSuppression, key: AdminKey, ctx: Ctx, response: Response) -> Suppression:
    """Suppress an address; if it already is, the existing suppression stays (200)."""
    email = body.email.lower()
    existing = api_queries.get_suppression(ctx.store, key.workspace_id, email)
    if existing is not None:
        response.status_code = status.HTTP_200_OK
        return Suppression(**existing)
    source = body.source or f"api:{key.key_id}"
    add_suppression(ctx.store, key.workspace_id, email, body.reason, source, ctx.clock.now())
    row = api_queries.get_suppression(ctx.store, key.workspace_id, email)
    assert row is not None
    return Suppression(**row)


@router.delete(
    "/{email}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "The address is not suppressed"}},
)
def remove(email: _Address, key: AdminKey, ctx: Ctx) -> Response:
    """Lift a suppression: the address may get email again."""
    address = _address(email)
    if not api_queries.remove_suppression(ctx.store, key.workspace_id, address):
        raise ApiError(404, f"{address!r} is not suppressed")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
