"""``flowmail keys``: API keys for the HTTP API (shown once, stored hashed)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from flowmail.cli.common import store_session
from flowmail.cli.output import console, errors, fail, print_json
from flowmail.clock import SystemClock
from flowmail.store.keys import Role, create_key, list_keys, revoke_key
from flowmail.store.schema import DEFAULT_WORKSPACE

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


class RoleChoice(StrEnum):
    ADMIN = "admin"
    INGEST = "ingest"


@app.command()
def create(
    role: Annotated[
        RoleChoice, typer.Option(help="admin: everything; ingest: track, identify, batch only.")
    ],
    workspace: Annotated[str, typer.Option(help="Workspace id.")] = DEFAULT_WORKSPACE,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Make a key. Its full value is printed once, now: store it somewhere safe."""
    if not workspace.strip() or len(workspace) > 64:
        fail("the workspace id must be 1 to 64 characters")
    with store_session() as (_config, store):
        key, token = create_key(
            store, workspace, Role(role), name or f"{role} key", SystemClock().now()
        )
    if as_json:
        print_json({"id": key.id, "workspace": key.workspace_id, "role": key.role, "key": token})
        return
    console.print(token)
    errors.print(
        f"key {key.id} ({key.role}, workspace {key.workspace_id}): shown only this once",
        soft_wrap=True,
    )


@app.command("list")
def list_command(
    workspace: Annotated[str | None, typer.Option(help="Only this workspace's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List keys (ids, roles and names; never the secrets)."""
    with store_session() as (_config, store):
        keys = list_keys(store, workspace)
    if as_json:
        print_json(
            [
                {
                    "id": k.id,
                    "workspace": k.workspace_id,
                    "name": k.name,
                    "role": k.role,
                    "created_at": k.created_at.isoformat(),
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                }
                for k in keys
            ]
        )
        return
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        console.print(f"{k.id}  {k.workspace_id}  {k.role}  {state}  {k.name}")


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`).")]) -> None:
    """Revoke a key: a running API refuses it within FLOWMAIL_API_KEY_CACHE_SECONDS."""
    with store_session() as (_config, store):
        if not revoke_key(store, key_id, SystemClock().now()):
            fail(f"no active key {key_id!r}")
    console.print(f"{key_id}: revoked")
