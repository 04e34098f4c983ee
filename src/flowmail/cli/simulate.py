"""``flowmail simulate``: run a scenario over virtual time and show what happens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowmail.cli.output import console, errors, fail, print_json
from flowmail.simulate import ScenarioInvalid, SimulationResult, iso, simulate_file

ICONS = {
    "enrolled": "▶",
    "email": "✉",
    "wait": "⏸",
    "wait_for": "⏳",
    "branch": "⑂",
    "split": "⑂",
    "completed": "■",
    "converted": "★",
    "exited": "⏏",
    "failed": "✗",
}


def simulate(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (YAML or JSON).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print emails, runs and contacts as JSON.")
    ] = False,
) -> None:
    """Run workflows over virtual time, with no database or network."""
    try:
        result = simulate_file(scenario)
    except ScenarioInvalid as exc:
        fail(str(exc))
    if as_json:
        print_json(result.to_json())
        for warning in result.warnings:
            errors.print(f"warning: {_warning(warning.message, warning.step_id)}", soft_wrap=True)
        return
    _timeline(result)


def _warning(message: str, step: str | None) -> str:
    return f"step {step}: {message}" if step else message


def _timeline(result: SimulationResult) -> None:
    console.rule("Timeline (UTC)")
    for record in result.timeline:
        details = ", ".join(
            f"{k}={v}" for k, v in record.detail.items() if v is not None and v is not False
        )
        icon = ICONS.get(record.action, "•")
        step = f" {record.step_id}" if record.step_id else ""
        console.print(
            f"{iso(record.at)}  {record.contact_id}  {record.workflow_id}{step}  "
            f"{icon} {record.action}" + (f"  [dim]{details}[/]" if details else ""),
            soft_wrap=True,
        )
    console.rule(f"{len(result.emails)} email(s)")
    for email in result.emails:
        console.print(f"{iso(email.at)}  {email.contact} <{email.to}>  {email.subject!r}")
    console.rule(f"{len(result.runs)} run(s)")
    for run in result.runs:
        path = " → ".join(run.path)
        console.print(f"{run.contact_id}  {run.workflow_id}  {run.status}: {path}", soft_wrap=True)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {_warning(warning.message, warning.step_id)}")
