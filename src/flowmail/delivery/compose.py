"""From a queued message to an :class:`OutgoingEmail`: render it and put its headers on.

- The Message-ID is derived from the message key and the sender's domain, and kept in
  the message row: a resend (after a retry or an ``unknown``) carries the same one.
- Every capped (marketing) email has ``List-Unsubscribe`` (the signed HTTPS one-click
  URL and a mailto) and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058).
- Every email has a ``Feedback-ID`` (step:workflow:topic:flowmail) and ``X-Flowmail-*``
  headers naming its workspace, workflow, step and message.
- A step with only a subject becomes a plain text email; with a template, the template
  (from the database, else the templates folder) is rendered with links tracked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from flowmail.delivery.model import OutgoingEmail
from flowmail.delivery.policy import capped
from flowmail.engine.state import Contact, Run, stable_hash
from flowmail.language.models import Workflow
from flowmail.settings import Settings
from flowmail.store.messages import QueuedMessage
from flowmail.store.schema import DEFAULT_WORKSPACE
from flowmail.templates.links import LinkPolicy, preferences_url, unsubscribe_url
from flowmail.templates.model import Rendered, Template
from flowmail.templates.render import message_variables, render_message
from flowmail.webhooks.model import TAG_MESSAGE

ONE_CLICK = "List-Unsubscribe=One-Click"


class ComposeError(Exception):
    """The message cannot be made (its template does not exist): a permanent failure."""


class TemplateSource(Protocol):
    def get(self, workspace_id: str, name: str) -> Template | None: ...


class CachedTemplates:
    """Templates looked up through ``load`` and kept for ``ttl`` seconds."""

    def __init__(self, load: Callable[[str, str], Template | None], ttl: float = 5.0) -> None:
        self._load = load
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Template | None]] = {}

    def get(self, workspace_id: str, name: str) -> Template | None:
        key = (workspace_id, name)
        found = self._cache.get(key)
        now = time.monotonic()
        if found is None or now - found[0] > self._ttl:
            found = (now, self._load(workspace_id, name))
            self._cache[key] = found
        return found[1]


@dataclass(frozen=True)
class Identity:
    """Who sends, and how links back to this installation are made."""

    from_address: str
    from_name: str
    public_url: str
    secret_key: str
    postal_address: str = ""
    click_tracking: bool = True
    open_tracking: bool = False

    @property
    def domain(self) -> str:
        return self.from_address.rpartition("@")[2].strip().lower() or "localhost"

    @classmethod
    def from_settings(cls, settings: Settings) -> Identity:
        return cls(
            settings.from_address,
            settings.from_name,
            settings.public_url,
            settings.secret_key,
            settings.postal_address,
            settings.click_tracking,
            settings.open_tracking,
        )


@dataclass(frozen=True)
class Composed:
    email: OutgoingEmail
    template_version: int | None
    fallback: str | None


def rfc_message_id(message: QueuedMessage, domain: str) -> str:
    """The Message-ID (without angle brackets): the stored one, else a new stable one."""
    if message.rfc_message_id:
        return message.rfc_message_id
    if message.workspace_id == DEFAULT_WORKSPACE:
        return f"{message.id}@{domain}"
    return f"{message.id}.{stable_hash(message.workspace_id)[:8]}@{domain}"


class Composer:
    def __init__(self, identity: Identity, templates: TemplateSource) -> None:
        self.identity = identity
        self.templates = templates

    def compose(
        self,
        message: QueuedMessage,
        contact: Contact,
        run: Run | None,
        workflow: Workflow | None,
        now: datetime,
    ) -> Composed:
        me = self.identity
        unsubscribe = unsubscribe_url(
            me.public_url,
            me.secret_key,
            message.workspace_id,
            message.contact_id,
            message.topic,
            message.id,
        )
        rendered = self._render(message, contact, run, workflow, now, unsubscribe)
        email = OutgoingEmail(
            message_id=rfc_message_id(message, me.domain),
            idempotency_key=message.id,
            from_address=me.from_address,
            from_name=me.from_name or None,
            to=message.to_address or "",
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            headers=self.headers(message, unsubscribe),
            tags={  # the names the webhook parsers look for when events come back
                "flowmail_workspace": message.workspace_id,
                "flowmail_workflow": message.workflow_id,
                "flowmail_step": message.step_id,
                TAG_MESSAGE: message.id,
                "flowmail_topic": message.topic,
            },
        )
        return Composed(email, rendered.template_version, rendered.fallback)

    def headers(self, message: QueuedMessage, unsubscribe: str) -> dict[str, str]:
        headers = {
            "Feedback-ID": f"{message.step_id}:{message.workflow_id}:{message.topic}:flowmail",
            "X-Flowmail-Workspace": message.workspace_id,
            "X-Flowmail-Workflow": message.workflow_id,
            "X-Flowmail-Step": message.step_id,
            "X-Flowmail-Message": message.id,
        }
        if capped(message.topic):
            mailto = f"mailto:{self.identity.from_address}?subject=unsubscribe"
            headers["List-Unsubscribe"] = f"<{unsubscribe}>, <{mailto}>"
            headers["List-Unsubscribe-Post"] = ONE_CLICK
        return headers

    def _render(
        self,
        message: QueuedMessage,
        contact: Contact,
        run: Run | None,
        workflow: Workflow | None,
        now: datetime,
        unsubscribe: str,
    ) -> Rendered:
        me = self.identity
        if message.template is None:
            return self._plain(message, unsubscribe)
        template = self.templates.get(message.workspace_id, message.template)
        if template is None:
            raise ComposeError(f"template {message.template!r} does not exist")
        fallback = (
            self.templates.get(message.workspace_id, template.fallback)
            if template.fallback
            else None
        )
        variables = message_variables(
            contact,
            run,
            workflow,
            now,
            unsubscribe_url=unsubscribe,
            preferences_url=preferences_url(
                me.public_url, me.secret_key, message.workspace_id, contact.id, message.id
            ),
            postal_address=me.postal_address,
        )
        links = LinkPolicy(
            me.secret_key,
            me.public_url,
            message.id,
            click_tracking=me.click_tracking,
            open_tracking=me.open_tracking,
            campaign=message.workflow_id,
            content=message.step_id,
        )
        return render_message(
            template,
            variables,
            links=links,
            fallback=fallback,
            subject=message.subject or None,
            content=message.content,
        )

    def _plain(self, message: QueuedMessage, unsubscribe: str) -> Rendered:
        """A step with only a subject: a short plain text email, with the unsubscribe
        link and postal address a marketing email must carry."""
        lines = [message.subject]
        if capped(message.topic):
            lines += ["", "--", f"Unsubscribe: {unsubscribe}"]
            if self.identity.postal_address:
                lines.append(self.identity.postal_address)
        return Rendered(
            subject=" ".join(message.subject.split()), text="\n".join(lines) + "\n", html=None
        )
