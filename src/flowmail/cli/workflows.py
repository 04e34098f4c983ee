"""``flowmail workflows``: validate definitions and print the language's JSON Schema."""

from __future__ import annotations

import difflib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from flowmail.cli.common import store_session
from flowmail.cli.output import console, errors, fail, print_json
from flowmail.clock import SystemClock
from flowmail.engine.catalog import Mode
from flowmail.language.loader import WorkflowInvalid, load_workflow, read_document
from flowmail.language.schema import workflow_schema
from flowmail.runtime.service import apply_workflow, migrate_runs
from flowmail.runtime.service import pause as pause_workflow
from flowmail.runtime.service import resume as resume_workflow
from flowmail.store.schema import DEFAULT_WORKSPACE


class PauseMode(StrEnum):
    DRAIN = "drain"
    FREEZE = "freeze"
    CANCEL = "cancel"


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
            results.append(
                {
                    "file": str(path),
                    "ok": False,
                    "problems": [{"step": p.step, "message": p.message} for p in exc.problems],
                }
            )
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


@app.command()
def apply(
    files: Annotated[list[Path], typer.Argument(help="Workflow files (YAML or JSON).")],
    workspace: Annotated[str, typer.Option(help="Workspace id.")] = DEFAULT_WORKSPACE,
) -> None:
    """Store workflows; a changed definition of an existing workflow becomes a new version."""
    definitions = []
    for path in files:
        try:
            load_workflow(path)
        except WorkflowInvalid as exc:
            fail(str(exc))
        definitions.append(read_document(path))
    with store_session() as (config, store):
        now = SystemClock().now()
        for path, definition in zip(files, definitions, strict=True):
            workflow, applied = apply_workflow(
                store, workspace, definition, now, config.default_timezone
            )
            state = "new version" if applied.changed else "unchanged"
            console.print(f"{path}: {workflow.id} v{applied.version} ({state})")


@app.command("list")
def list_workflows(
    workspace: Annotated[str, typer.Option(help="Workspace id.")] = DEFAULT_WORKSPACE,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List workflows with their current version and mode."""
    with store_session() as (_config, store):
        rows = store.workflow_rows(workspace)
    if as_json:
        print_json(
            [{"id": r.id, "version": r.version, "mode": r.mode, "reason": r.reason} for r in rows]
        )
        return
    for row in rows:
        reason = f"  ({row.reason})" if row.reason else ""
        console.print(f"{row.id}  v{row.version}  {row.mode}{reason}")


@app.command()
def pause(
    workflow_id: Annotated[str, typer.Argument(help="Workflow id.")],
    mode: Annotated[
        PauseMode,
        typer.Option(help="drain: no new runs; freeze: runs hold too; cancel: runs end."),
    ] = PauseMode.DRAIN,
    reason: Annotated[str | None, typer.Option(help="Recorded with the pause.")] = None,
    workspace: Annotated[str, typer.Option(help="Workspace id.")] = DEFAULT_WORKSPACE,
) -> None:
    """Pause a workflow in one explicit mode."""
    with store_session() as (_config, store):
        if not pause_workflow(
            store, workspace, workflow_id, Mode(mode), SystemClock().now(), reason
        ):
            fail(f"no workflow {workflow_id!r}")
    console.print(f"{workflow_id}: {mode}")


@app.command()
def resume(
    workflow_id: Annotated[str, typer.Argument(help="Workflow id.")],
    workspace: Annotated[str, typer.Option(help="Workspace id.")] = DEFAULT_WORKSPACE,
) -> None:
    """Make a paused workflow active again; frozen runs continue where they held."""
    with store_session() as (_config, store):
        if not resume_workflow(store, workspace, workflow_id, SystemClock().now()):
            fail(f"no workflow {workflow_id!r}")
    console.print(f"{workflow_id}: active")


@app.command()
def migrate(
    workflow_id: Annotated[str, typer.Argument(help="Workflow id.")],
    to: Annotated[int, typer.Option("--to", help="Target version.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print who would move.")] = False,
    workspace: Annotated[str, typer.Option(help="Workspace id.")] = DEFAULT_WORKSPACE,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Move runs in flight to another version (steps matched by id)."""
    with store_session() as (_config, store):
        try:
            moves = migrate_runs(store, workspace, workflow_id, to, SystemClock().now(), dry_run)
        except LookupError as exc:
            fail(str(exc))
    if as_json:
        print_json([m.__dict__ for m in moves])
    for move in moves:
        if as_json:
            break
        verb = ("would move" if dry_run else "moved") if move.moved else "cannot move"
        why = f": {move.problem}" if move.problem else ""
        console.print(
            f"run {move.run_id} ({move.contact_id}) v{move.from_version} at "
            f"{move.step or '-'}: {verb} to v{to}{why}"
        )
    stuck = [m for m in moves if not m.moved]
    if not as_json:
        console.print(
            f"{len(moves) - len(stuck)} run(s) {'to move' if dry_run else 'moved'}, "
            f"{len(stuck)} left on their version"
        )
    if stuck:
        raise typer.Exit(3)


def _lines(definition: dict[str, Any]) -> list[str]:
    return yaml.safe_dump(definition, sort_keys=False, allow_unicode=True).splitlines(True)


def _step_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before = {s.get("id"): s for s in old.get("steps", []) if isinstance(s, dict)}
    after = {s.get("id"): s for s in new.get("steps", []) if isinstance(s, dict)}
    return [
        *(f"+ step {i}" for i in after if i not in before),
        *(f"- step {i}" for i in before if i not in after),
        *(f"~ step {i}" for i in after if i in before and after[i] != before[i]),
    ]


@app.command()
def diff(
    target: Annotated[str, typer.Argument(help="A workflow file, or a stored workflow's id.")],
    from_version: Annotated[
        int | None, typer.Option("--from", help="Stored version to compare from.")
    ] = None,
    to_version: Annotated[
        int | None, typer.Option("--to", help="Stored version to compare to (with an id).")
    ] = None,
    workspace: Annotated[str, typer.Option(help="Workspace id.")] = DEFAULT_WORKSPACE,
) -> None:
    """Show what changed between a file and the stored workflow, or two versions.

    A file is compared with the stored current version (what `apply` would change); an
    id compares two stored versions (default: the current one and the one before).
    Exit 0 when equal, 1 when they differ."""
    path = Path(target)
    from_file: dict[str, Any] | None = None
    workflow_id = target
    if path.exists():
        try:
            workflow_id = load_workflow(path).id
        except WorkflowInvalid as exc:
            fail(str(exc), 2)
        from_file = read_document(path)
    with store_session() as (_config, store):
        row = next((r for r in store.workflow_rows(workspace) if r.id == workflow_id), None)
        if row is None and from_file is None:
            fail(f"no workflow {workflow_id!r} and no file of that name", 2)
        current = row.version if row else 0

        def stored(version: int) -> dict[str, Any]:
            if version == 0:
                return {}
            found = store.workflow_definition(workspace, workflow_id, version)
            if found is None:
                fail(f"{workflow_id} has no version {version}", 2)
            return found

        if from_file is not None:
            old_version = from_version or current
            old, new, new_name = stored(old_version), from_file, str(path)
        else:
            new_version = to_version or current
            old_version = new_version - 1 if from_version is None else from_version
            old, new = stored(old_version), stored(new_version)
            new_name = f"{workflow_id} v{new_version}"
    old_name = f"{workflow_id} v{old_version}" if old_version else "(nothing stored)"
    if old == new:
        console.print(f"{old_name} and {new_name} are the same")
        return
    for line in _step_changes(old, new):
        console.print(line, markup=False)
    changes = difflib.unified_diff(_lines(old), _lines(new), old_name, new_name)
    typer.echo("".join(changes), nl=False)
    raise typer.Exit(1)
