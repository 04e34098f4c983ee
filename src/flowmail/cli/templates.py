"""``flowmail templates``: validate a templates folder, store it as versions, preview."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from flowmail.bootstrap import load_plugins
from flowmail.cli.common import settings, store_session
from flowmail.cli.output import console, errors, fail, print_json
from flowmail.clock import SystemClock
from flowmail.store.schema import DEFAULT_WORKSPACE
from flowmail.store.templates import list_templates, save_template
from flowmail.templates.files import TemplateFileError, load_template_dir
from flowmail.templates.model import Template
from flowmail.templates.preview import PreviewError, eml_bytes, render_preview
from flowmail.templates.validate import check_templates, prepare_template

app = typer.Typer(help="Validate, store and preview email templates.", no_args_is_help=True)

DirArg = Annotated[
    Path | None,
    typer.Argument(help="Templates folder (default: the templates_dir setting)."),
]
Workspace = Annotated[str, typer.Option(help="Workspace id.")]


def _checked(folder: Path | None, known: set[str] | None = None) -> dict[str, Template]:
    """The folder's templates, prepared; every problem printed and exit 1 if any."""
    config = settings()
    path = folder or Path(config.templates_dir)
    try:
        templates = load_template_dir(path)
    except TemplateFileError as exc:
        for message in exc.problems:
            errors.print(f"[red]✗[/] {message}", soft_wrap=True)
        raise typer.Exit(1) from None
    problems = check_templates(templates, postal_address=config.postal_address, known=known)
    for problem in problems:
        errors.print(f"[red]✗[/] {problem}", soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    return {name: prepare_template(t) for name, t in templates.items()}


@app.command()
def validate(folder: DirArg = None) -> None:
    """Check every template in a folder; exit 1 if any has a problem."""
    templates = _checked(folder)
    for name, template in templates.items():
        console.print(f"[green]✓[/] {name} ({template.topic})")


@app.command()
def apply(folder: DirArg = None, workspace: Workspace = DEFAULT_WORKSPACE) -> None:
    """Store a folder's templates; changed content becomes a new version."""
    with store_session() as (_config, store):
        before = {info.name: info.version for info in list_templates(store, workspace)}
        templates = _checked(folder, set(before))
        now = SystemClock().now()
        for name, template in templates.items():
            version = save_template(store, workspace, template, now)
            state = "unchanged" if before.get(name) == version else "new version"
            console.print(f"{name} v{version} ({state})")


@app.command("list")
def list_command(
    workspace: Workspace = DEFAULT_WORKSPACE,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List stored templates with their latest version."""
    with store_session() as (_config, store):
        rows = list_templates(store, workspace)
    if as_json:
        print_json([{"name": r.name, "version": r.version, "versions": r.versions} for r in rows])
        return
    for row in rows:
        console.print(f"{row.name}  v{row.version}  ({row.versions} version(s))")


def _event(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        fail(f"--event is not JSON: {exc}")
    if not isinstance(data, dict):
        fail("--event must be a JSON object")
    return data


@app.command()
def render(
    name: Annotated[str, typer.Argument(help="Template name.")],
    contact: Annotated[str, typer.Option("--contact", help="Contact id.")],
    event: Annotated[
        str | None,
        typer.Option(help='Trigger event as JSON: {"name": ..., "properties": {...}}.'),
    ] = None,
    content: Annotated[
        str | None, typer.Option(help="Content block: abandoned_cart, product_recommendation.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the email as .eml.")] = None,
    version: Annotated[int | None, typer.Option(help="A stored version.")] = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
) -> None:
    """Render a template for one contact: preview here, and optionally write the .eml."""
    data = _event(event)
    with store_session() as (config, store):
        try:
            load_plugins(config)  # a custom content provider renders here too
        except ImportError as exc:
            fail(f"cannot import a plugin from FLOWMAIL_PLUGINS: {exc}")
        now = SystemClock().now()
        try:
            preview = render_preview(
                store, config, workspace, name, contact, now,
                event=data, content=content, version=version,
            )  # fmt: skip
        except PreviewError as exc:
            fail(str(exc))
    rendered = preview.rendered
    summary = Table.grid(padding=(0, 2))
    summary.add_row("[bold]Template[/]", f"{name} v{preview.template.version} ({preview.source})")
    summary.add_row("[bold]To[/]", preview.contact.email or "(no address)")
    summary.add_row("[bold]Subject[/]", rendered.subject)
    if rendered.missing:
        summary.add_row("[yellow]Missing[/]", ", ".join(rendered.missing))
    if rendered.fallback:
        summary.add_row("[yellow]Fallback[/]", rendered.fallback)
    console.print(summary)
    text = Panel(Text(rendered.text.strip(), overflow="fold"), title="text", expand=False)
    console.print(text, soft_wrap=False)  # a panel's lines wrap inside it
    if out is None:
        return
    if not preview.contact.email:
        fail(f"contact {contact!r} has no email address: no .eml written")
    try:
        out.write_bytes(eml_bytes(preview, config, now))
    except (ValueError, OSError) as exc:  # an address no header can carry; an unwritable file
        fail(f"cannot write {out}: {exc}")
    console.print(f"wrote {out}")
