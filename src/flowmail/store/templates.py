"""Versioned templates in the database (table ``templates``).

Saving content that differs from the latest version makes version N+1; saving the
same content again changes nothing (the digest decides). Versions are never
changed or deleted, so a message can always be traced to what it was rendered from.

The table has no ``topic`` column: a template's topic is kept in its ``defaults``
JSON under the reserved key ``"flowmail:topic"``, which is removed when it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from flowmail.store import schema as t
from flowmail.store.sql import SqlStore
from flowmail.templates.model import Template

TOPIC_KEY = "flowmail:topic"
_ATTEMPTS = 3  # two writers racing for the same next version: the loser tries again


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    version: int  # the latest
    versions: int
    created_at: datetime  # of the latest version


def _latest(conn: sa.Connection, workspace_id: str, name: str) -> Any:
    c = t.templates.c
    return conn.execute(
        sa.select(c.version, c.digest)
        .where(c.workspace_id == workspace_id, c.name == name)
        .order_by(c.version.desc())
        .limit(1)
    ).first()


def save_template(store: SqlStore, workspace_id: str, template: Template, now: datetime) -> int:
    """Store ``template`` (already validated); returns its version, new only if changed."""
    digest = template.digest
    for attempt in range(_ATTEMPTS):
        try:
            with store.engine.begin() as conn:
                latest = _latest(conn, workspace_id, template.name)
                if latest is not None and latest.digest == digest:
                    return int(latest.version)
                version = 1 if latest is None else int(latest.version) + 1
                conn.execute(
                    sa.insert(t.templates).values(
                        workspace_id=workspace_id,
                        name=template.name,
                        version=version,
                        subject=template.subject,
                        html=template.html,
                        text=template.text,
                        mjml=template.mjml,
                        defaults={**template.defaults, TOPIC_KEY: template.topic},
                        fallback=template.fallback,
                        digest=digest,
                        created_at=now,
                    )
                )
                return version
        except IntegrityError:
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _template(row: Any) -> Template:
    defaults = dict(row.defaults or {})
    topic = defaults.pop(TOPIC_KEY, "marketing")
    return Template(
        name=row.name,
        subject=row.subject,
        html=row.html,
        text=row.text,
        mjml=row.mjml,
        version=row.version,
        defaults=defaults,
        fallback=row.fallback,
        topic=str(topic),
    )


def get_template(
    store: SqlStore, workspace_id: str, name: str, version: int | None = None
) -> Template | None:
    """One version of a template (the latest by default), or ``None``."""
    c = t.templates.c
    query = sa.select(t.templates).where(c.workspace_id == workspace_id, c.name == name)
    if version is None:
        query = query.order_by(c.version.desc()).limit(1)
    else:
        query = query.where(c.version == version)
    with store.reader.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else _template(row)


def list_templates(store: SqlStore, workspace_id: str) -> list[TemplateInfo]:
    """Each template's latest version, by name."""
    c = t.templates.c
    latest = (
        sa.select(c.name, sa.func.max(c.version).label("version"), sa.func.count().label("n"))
        .where(c.workspace_id == workspace_id)
        .group_by(c.name)
        .subquery()
    )
    query = (
        sa.select(latest.c.name, latest.c.version, latest.c.n, c.created_at)
        .join(
            t.templates,
            sa.and_(
                c.workspace_id == workspace_id,
                c.name == latest.c.name,
                c.version == latest.c.version,
            ),
        )
        .order_by(latest.c.name)
    )
    with store.reader.connect() as conn:
        return [TemplateInfo(r.name, r.version, r.n, r.created_at) for r in conn.execute(query)]


def template_versions(store: SqlStore, workspace_id: str, name: str) -> list[int]:
    c = t.templates.c
    with store.reader.connect() as conn:
        return [
            int(v)
            for v in conn.execute(
                sa.select(c.version)
                .where(c.workspace_id == workspace_id, c.name == name)
                .order_by(c.version)
            ).scalars()
        ]
