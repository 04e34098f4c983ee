"""``/ui/contacts``: find a contact; its timeline (events, runs with the path taken,
messages and delivery events, consent), its data export and its erasure (the same
store functions as ``/v1/contacts/{id}/export`` and ``DELETE /v1/contacts/{id}``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from flowmail.api.context import Ctx
from flowmail.dashboard import queries
from flowmail.dashboard.render import page, with_headers
from flowmail.dashboard.session import Form, Viewer
from flowmail.store import feedback

router = APIRouter(prefix="/ui/contacts", include_in_schema=False)


@router.get("")
def contacts(request: Request, ctx: Ctx, viewer: Viewer, q: str = "") -> Response:
    q = q.strip()[:320]
    found = queries.find_contacts(ctx.store, viewer.workspace_id, q) if q else []
    return page(request, "contacts.html", viewer, section="contacts", q=q, found=found)


def _before(value: str | None) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


@router.get("/{contact_id}")
def contact(
    request: Request, ctx: Ctx, viewer: Viewer, contact_id: str, before: str | None = None
) -> Response:
    found = queries.timeline(ctx.store, viewer.workspace_id, contact_id, _before(before))
    if found is None:
        return page(
            request, "missing.html", viewer, section="contacts",
            what=f"contact {contact_id!r}", http_status=404,
        )  # fmt: skip
    email = found.contact.get("email")
    suppressed = feedback.is_suppressed(ctx.store, viewer.workspace_id, email) if email else None
    return page(
        request,
        "contact.html",
        viewer,
        section="contacts",
        timeline=found,
        suppressed=suppressed,
        now=ctx.clock.now(),
    )


@router.get("/{contact_id}/export")
def export(request: Request, ctx: Ctx, viewer: Viewer, contact_id: str) -> Response:
    found = feedback.export_contact(ctx.store, viewer.workspace_id, contact_id)
    if found is None:
        return page(
            request, "missing.html", viewer, section="contacts",
            what=f"contact {contact_id!r}", http_status=404,
        )  # fmt: skip
    body = {"exported_at": ctx.clock.now(), "workspace_id": viewer.workspace_id, **found}
    response = JSONResponse(
        jsonable_encoder(body),
        headers={"Content-Disposition": 'attachment; filename="contact-export.json"'},
    )
    return with_headers(response)


@router.post("/{contact_id}/erase")
def erase(request: Request, ctx: Ctx, viewer: Viewer, form: Form, contact_id: str) -> Response:
    if form.get("confirm", "").strip() != contact_id:
        found = queries.timeline(ctx.store, viewer.workspace_id, contact_id)
        if found is None:
            return page(
                request, "missing.html", viewer, section="contacts",
                what=f"contact {contact_id!r}", http_status=404,
            )  # fmt: skip
        return page(
            request, "contact.html", viewer, section="contacts", timeline=found,
            suppressed=None, now=ctx.clock.now(), http_status=422,
            problem="Type the contact's id to confirm the erasure.",
        )  # fmt: skip
    counts = feedback.erase_contact(ctx.store, viewer.workspace_id, contact_id, ctx.clock.now())
    if counts is None:
        return page(
            request, "missing.html", viewer, section="contacts",
            what=f"contact {contact_id!r}", http_status=404,
        )  # fmt: skip
    hashed = counts.pop("suppressions_hashed")
    return page(
        request, "erased.html", viewer, section="contacts", contact_id=contact_id,
        counts=counts, hashed=hashed,
    )  # fmt: skip
