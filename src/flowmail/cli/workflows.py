"""``flowmail workflows``: validate definitions and print the language's JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowmail.cli.output import console, errors, print_json
from flowmail.language.loader import WorkflowInvalid, load_workflow
from flowmail.language.schema import workflow_schema

app = typer.Typer(help="Validate and inspect workflow definitions.", no_args_is_help=True)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Workflow files (YAML or JSON).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Check workflow files; exit 1 if any has a problem."""
    results = []
    for path in files:
        try:
            workflow = load_workflow(path)
        except WorkflowInvalid as exc:
            results.append({"file": str(path), "ok": False, "problems": [
                {"step": p.step, "message": p.message} for p in exc.problems
            ]})  # fmt: skip
            if not as_json:
                for problem in exc.problems:
                    errors.print(f"[red]✗[/] {problem}", soft_wrap=True)
            continue
        results.append({"file": str(path), "ok": True, "workflow": workflow.id})
        if not as_json:
            console.print(f"[green]✓[/] {path}: {workflow.id} ({len(workflow.steps)} steps)")
    if as_json:
        print_json(results)
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the workflow language."""
    print_json(workflow_schema())
