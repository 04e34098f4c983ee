"""Previewing a template for one contact: what ``flowmail templates render`` does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flowmail.delivery.mime import build_message
from flowmail.delivery.model import OutgoingEmail
from flowmail.engine.state import Contact, Event
from flowmail.engine.variables import event_variables
from flowmail.settings import Settings
from flowmail.store.sql import SqlStore
from flowmail.store.templates import get_template
from flowmail.templates.files import TemplateFileError, load_template_file
from flowmail.templates.links import LinkPolicy, preferences_url, unsubscribe_url
from flowmail.templates.model import Rendered, Template
from flowmail.templates.render import message_variables, render_message
from flowmail.templates.validate import prepare_template

PREVIEW_KEY = "preview"


class PreviewError(LookupError):
    pass


@dataclass(frozen=True)
class Preview:
    template: Template
    source: str  # "database" or the file it came from
    contact: Contact
    rendered: Rendered
    unsubscribe_url: str


def find_template(
    store: SqlStore, workspace: str, name: str, folder: str | Path, version: int | None = None
) -> tuple[Template, str] | None:
    """The template from the database, else from ``folder/NAME.yaml``; and where from."""
    stored = get_template(store, workspace, name, version)
    if stored is not None:
        return stored, "database"
    path = Path(folder) / f"{name}.yaml"
    if version is not None or not path.is_file():
        return None
    try:
        return prepare_template(load_template_file(path)), str(path)
    except (TemplateFileError, ValueError) as exc:
        raise PreviewError(str(exc)) from None


def preview_event(contact_id: str, data: dict[str, Any] | None, now: datetime) -> Event | None:
    """``{"name": ..., "properties": {...}}``, or a bare mapping of properties."""
    if data is None:
        return None
    properties = data.get("properties")
    if isinstance(data.get("name"), str) and isinstance(properties, dict):
        return Event(contact_id, data["name"], now, properties)
    return Event(contact_id, "preview", now, dict(data))


def render_preview(
    store: SqlStore,
    settings: Settings,
    workspace: str,
    name: str,
    contact_id: str,
    now: datetime,
    *,
    event: dict[str, Any] | None = None,
    content: str | None = None,
    version: int | None = None,
) -> Preview:
    found = find_template(store, workspace, name, settings.templates_dir, version)
    if found is None:
        raise PreviewError(f"no template {name!r} in the database or in {settings.templates_dir}/")
    template, source = found
    contact = store.contact(workspace, contact_id)
    if contact is None:
        raise PreviewError(f"no contact {contact_id!r} in workspace {workspace!r}")
    fallback = None
    if template.fallback:
        fb = find_template(store, workspace, template.fallback, settings.templates_dir)
        fallback = fb[0] if fb else None
    secret, public = settings.secret_key, settings.public_url
    unsubscribe = unsubscribe_url(
        public, secret, workspace, contact.id, template.topic, PREVIEW_KEY
    )
    variables = message_variables(
        contact,
        None,
        None,
        now,
        unsubscribe_url=unsubscribe,
        preferences_url=preferences_url(public, secret, workspace, contact.id, PREVIEW_KEY),
        postal_address=settings.postal_address,
    )
    variables["event"] = event_variables(preview_event(contact.id, event, now))
    links = LinkPolicy(
        secret,
        public,
        PREVIEW_KEY,
        click_tracking=settings.click_tracking,
        open_tracking=settings.open_tracking,
    )
    rendered = render_message(template, variables, links=links, fallback=fallback, content=content)
    return Preview(template, source, contact, rendered, unsubscribe)


def eml_bytes(preview: Preview, settings: Settings, now: datetime) -> bytes:
    """The preview as an .eml file, built as the sender builds a real message."""
    headers = {"X-Flowmail-Preview": preview.template.name}
    if preview.template.marketing:
        mailto = f"mailto:{settings.from_address}?subject=unsubscribe"
        headers["List-Unsubscribe"] = f"<{preview.unsubscribe_url}>, <{mailto}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    email = OutgoingEmail(
        message_id=f"{PREVIEW_KEY}.{preview.template.name}@flowmail.invalid",
        idempotency_key=PREVIEW_KEY,
        from_address=settings.from_address,
        from_name=settings.from_name or None,
        to=preview.contact.email or "",
        subject=preview.rendered.subject,
        text=preview.rendered.text,
        html=preview.rendered.html,
        headers=headers,
    )
    return build_message(email, date=now)
