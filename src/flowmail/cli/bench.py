"""``flowmail bench``: the benchmarks of a source checkout (``bench/run.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from flowmail.cli.output import fail


def bench(
    quick: Annotated[bool, typer.Option(help="Small scales: a smoke run in a minute.")] = False,
    only: Annotated[
        list[str] | None, typer.Option(help="Only this section (repeat): ingest, engine, api, ...")
    ] = None,
    script: Annotated[Path, typer.Option(help="The benchmark script.")] = Path("bench/run.py"),
) -> None:
    """Run the benchmarks and print their table.

    Needs a source checkout (bench/ is not installed with the package) and, for the
    PostgreSQL sections, the server binaries (`make bench` installs them)."""
    if not script.is_file():
        fail(f"{script} not found: run this from a flowmail source checkout", 2)
    args = [sys.executable, str(script), *(["--quick"] if quick else [])]
    for section in only or ():
        args += ["--only", section]
    raise typer.Exit(subprocess.call(args))
