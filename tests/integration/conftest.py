"""Fixtures of the integration tests.

``url`` and ``cli``: running ``flowmail`` commands: on a SQLite file in the test's own folder,
with errors as exit codes and never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from flowmail.cli import app

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
