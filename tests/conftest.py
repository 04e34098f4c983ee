"""Shared fixtures: real SQLite files and a real, throw-away PostgreSQL cluster."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from flowmail.cli import app
from flowmail.store.migrate import upgrade
from flowmail.store.sql import SqlStore, create_db_engine
from pg import cluster

T0 = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
_names = itertools.count()


def _port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return 25432 + int(worker.removeprefix("gw") or 0) + (os.getpid() % 500) * 4


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL cluster for this test process, with a migrated template database."""
    with cluster(_port()) as url:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE flowmail_template")
        engine.dispose()
        template = create_db_engine(url.replace("/postgres?", "/flowmail_template?"))
        upgrade(template, T0)
        template.dispose()
        yield url


def new_pg_database(server_url: str) -> str:
    name = f"flowmail_{os.getpid()}_{next(_names)}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE flowmail_template")
    engine.dispose()
    return server_url.replace("/postgres?", f"/{name}?")


def new_sqlite_database(folder: Path) -> str:
    url = f"sqlite:///{folder / f'flowmail-{next(_names)}.db'}"
    engine = create_db_engine(url)
    upgrade(engine, T0)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database URL on each back end."""
    if request.param == "sqlite":
        return new_sqlite_database(tmp_path)
    return new_pg_database(request.getfixturevalue("pg_server"))


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    store = SqlStore.from_url(db_url)
    yield store
    store.close()


# --- running flowmail commands (tests/integration/test_cli_*.py) ---------------------


Invoke = Callable[..., Result]


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # no flowmail.toml from elsewhere
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def cli(url: str) -> Invoke:
    """``cli(*args, code=0, given=None)``: run a command (``given`` is its stdin) and
    check its exit code."""
    runner = CliRunner()

    def invoke(*args: str, code: int = 0, given: str | None = None) -> Result:
        result = runner.invoke(app, list(args), env={"FLOWMAIL_DATABASE_URL": url}, input=given)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"uncaught {result.exception!r}"
        )
        assert "Traceback" not in result.stdout + result.stderr
        return result

    return invoke
