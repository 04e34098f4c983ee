"""API keys: ``fm_<id>_<secret>``, shown once; only a SHA-256 of the secret is stored.

The id is public (it names the key in lists, logs and metrics); the secret is 32
random bytes. Checking a key hashes the presented secret and compares digests in
constant time, also when the id is unknown, so timing tells nothing about which ids
exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa

from flowmail.store import schema as t
from flowmail.store.sql import SqlStore

PREFIX = "fm"
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


class Role(StrEnum):
    ADMIN = "admin"  # everything in its workspace
    INGEST = "ingest"  # track, identify and batch only


@dataclass(frozen=True)
class ApiKey:
    id: str
    workspace_id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed key, else ``None``."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def _key(row: sa.Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        m["id"], m["workspace_id"], m["name"], Role(m["role"]), m["created_at"], m["revoked_at"]
    )


def create_key(
    store: SqlStore, workspace_id: str, role: Role, name: str, now: datetime
) -> tuple[ApiKey, str]:
    """Make a key in ``workspace_id`` (created if new); returns it and its one-time token."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    store.ensure_workspace(workspace_id, now)
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(t.api_keys).values(
                id=key_id,
                workspace_id=workspace_id,
                name=name,
                role=str(role),
                secret_hash=_hash(secret),
                created_at=now,
            )
        )
    key = ApiKey(key_id, workspace_id, name, role, now, None)
    return key, f"{PREFIX}_{key_id}_{secret}"


def verify_token(store: SqlStore, token: str) -> ApiKey | None:
    """The active key a token stands for, or ``None`` (malformed, unknown, wrong, revoked)."""
    parts = split_token(token)
    key_id, secret = parts if parts is not None else ("", token)
    k = t.api_keys
    row = None
    if parts is not None and len(key_id) <= 32:
        with store.reader.connect() as conn:
            row = conn.execute(sa.select(k).where(k.c.id == key_id)).first()
    stored = row.secret_hash if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(_hash(secret), stored)
    if row is None or not matches or row.revoked_at is not None:
        return None
    return _key(row)


def list_keys(store: SqlStore, workspace_id: str | None = None) -> list[ApiKey]:
    k = t.api_keys
    query = sa.select(k).order_by(k.c.workspace_id, k.c.created_at, k.c.id)
    if workspace_id is not None:
        query = query.where(k.c.workspace_id == workspace_id)
    with store.reader.connect() as conn:
        return [_key(row) for row in conn.execute(query)]


def revoke_key(store: SqlStore, key_id: str, now: datetime) -> bool:
    """Revoke a key at once; ``False`` if there is no such active key."""
    k = t.api_keys
    with store.engine.begin() as conn:
        updated = conn.execute(
            sa.update(k).where(k.c.id == key_id, k.c.revoked_at.is_(None)).values(revoked_at=now)
        ).rowcount
    return bool(updated)
