"""Schema migrations (Alembic), run programmatically: ``flowmail db upgrade``."""

from __future__ import annotations

from datetime import datetime

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from flowmail.store import schema as t

SCRIPT_LOCATION = "flowmail.store:migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def upgrade(engine: Engine, now: datetime, revision: str = "head") -> str | None:
    """Bring the schema up to ``revision`` and make sure the default workspace exists."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    with engine.begin() as conn:
        exists = conn.execute(
            t.workspaces.select().where(t.workspaces.c.id == t.DEFAULT_WORKSPACE)
        ).first()
        if exists is None:
            conn.execute(
                t.workspaces.insert().values(
                    id=t.DEFAULT_WORKSPACE, name="Default workspace", created_at=now
                )
            )
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
