"""``flowmail up``: everything on one machine for trying flowmail out.

One process tree: a local SMTP sink, the API with the dashboard, a worker and the
sender, on SQLite in the working folder. Before starting them it brings the schema up
to date and applies the example templates and workflows. Ctrl-C (or SIGTERM) stops
every process cleanly; if one of them dies, the others are stopped too.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from flowmail.cli.common import store_session
from flowmail.cli.output import console, fail
from flowmail.clock import SystemClock
from flowmail.store.keys import Role, create_key, verify_token
from flowmail.store.schema import DEFAULT_WORKSPACE

STATE_FILE = ".flowmail-up.json"  # this folder's secrets and admin key, kept between starts
DEMO_POSTAL_ADDRESS = "flowmail demo, 1 Example Street, 12345 Springfield"
STOP_SECONDS = 15.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "flowmail", *args]


def _state(folder: Path) -> dict[str, str]:
    """Secrets made on the first start and kept (links in sent emails stay valid)."""
    path = folder / STATE_FILE
    try:
        state: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError):
        state = {}
    fresh = {
        "secret_key": secrets.token_urlsafe(32),
        "webhook_secret": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    }
    if not fresh.keys() <= state.keys():
        _save_state(path, {**fresh, **state})
    return {**fresh, **state}


def _save_state(path: Path, state: dict[str, str]) -> None:
    path.write_text(json.dumps(state, indent=2) + "\n")
    path.chmod(0o600)


def child_env(folder: Path, api_port: int, smtp_port: int, mailbox: Path) -> dict[str, str]:
    """The environment of every process: the user's settings, with the local pieces
    filled in where the user set nothing."""
    state = _state(folder)
    env = dict(os.environ)
    defaults = {
        "FLOWMAIL_PROVIDER": "smtp",
        "FLOWMAIL_SMTP_HOST": "127.0.0.1",
        "FLOWMAIL_SMTP_PORT": str(smtp_port),
        "FLOWMAIL_DEV_MAILBOX": str(mailbox),
        "FLOWMAIL_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "FLOWMAIL_API_PORT": str(api_port),
        "FLOWMAIL_POSTAL_ADDRESS": DEMO_POSTAL_ADDRESS,
        "FLOWMAIL_SECRET_KEY": state["secret_key"],
        "FLOWMAIL_GENERIC_WEBHOOK_SECRET": state["webhook_secret"],
        # a demo's history (events stamped days ago) plays out as it would have
        "FLOWMAIL_REPLAY_EVENT_TIME": "true",
    }
    for name, value in defaults.items():
        env.setdefault(name, value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _setup(env: dict[str, str], examples: Path, templates: Path) -> None:
    """Schema, templates, workflows: the same commands a user would run."""
    steps: list[Sequence[str]] = [("db", "upgrade")]
    if templates.is_dir():
        steps.append(("templates", "apply", str(templates)))
    workflows = sorted(p for p in examples.glob("*.yaml") if not p.name.endswith(".scenario.yaml"))
    if workflows:
        steps.append(("workflows", "apply", *map(str, workflows)))
    for step in steps:
        done = subprocess.run(_command(*step), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            fail(f"`flowmail {' '.join(step)}` failed:\n{done.stderr or done.stdout}")


def admin_key(folder: Path) -> str:
    """The admin key kept in the working folder from an earlier start, or a new one."""
    state = _state(folder)
    with store_session() as (_config, store):
        kept = state.get("admin_key", "")
        if kept and verify_token(store, kept) is not None:
            return kept
        _key, token = create_key(
            store, DEFAULT_WORKSPACE, Role.ADMIN, "flowmail up", SystemClock().now()
        )
    _save_state(folder / STATE_FILE, {**state, "admin_key": token})
    return token


def _start(env: dict[str, str], smtp_port: int, mailbox: Path) -> list[Child]:
    plan = [
        ("sink", ("sink", "--port", str(smtp_port), "--dir", str(mailbox))),
        ("api", ("serve",)),
        ("worker", ("worker",)),
        ("sender", ("sender",)),
    ]
    return [
        Child(name, subprocess.Popen(_command(*args), env=env, start_new_session=True))
        for name, args in plan
    ]


def _wait_ready(children: list[Child], ports: Sequence[int], seconds: float = 60.0) -> None:
    """Until every port answers: the banner's curl line must work when it is shown."""
    deadline = time.monotonic() + seconds
    waiting = list(ports)
    while waiting:
        dead = next((c for c in children if c.process.poll() is not None), None)
        if dead is not None or time.monotonic() > deadline:
            _stop(children)
            what = f"the {dead.name} process stopped" if dead else "the services did not start"
            fail(f"{what}; see the output above")
        try:
            socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5).close()
            waiting.pop(0)
        except OSError:
            time.sleep(0.1)


def _stop(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for child in children:
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def _banner(api_port: int, token: str, mailbox: Path) -> None:
    """What to do next. Plain lines (no box): the curl command must copy and paste whole."""
    url = f"http://127.0.0.1:{api_port}"
    body = (
        '{"batch": [{"type": "identify", "userId": "alice", "traits": '
        '{"email": "alice@example.com", "first_name": "Alice", '
        '"subscription_source": "newsletter_signup"}}, '
        '{"type": "track", "userId": "alice", "event": "user_registered"}]}'
    )
    typer.echo(
        f"\nflowmail is up\n"
        f"  dashboard  {url}/ui/  (log in with the admin key)\n"
        f"  API docs   {url}/docs\n"
        f"  admin key  {token}\n"
        f"  mailbox    {mailbox}  (and {url}/ui/mailbox)\n\n"
        f"Send an event (Alice signs up; the welcome email lands in the mailbox):\n"
        f"curl -s {url}/v1/batch -H 'Authorization: Bearer {token}' "
        f"-H 'Content-Type: application/json' -d '{body}'\n\n"
        f"Ctrl-C stops everything.\n"
    )


def up(
    api_port: Annotated[
        int, typer.Option(help="Port of the API and dashboard.", envvar="FLOWMAIL_API_PORT")
    ] = 8025,
    smtp_port: Annotated[
        int, typer.Option(help="Port of the local SMTP sink.", envvar="FLOWMAIL_SMTP_PORT")
    ] = 1025,
    examples: Annotated[Path, typer.Option(help="Folder of workflows to apply (*.yaml).")] = Path(
        "examples"
    ),
    templates: Annotated[Path, typer.Option(help="Folder of templates to apply.")] = Path(
        "templates"
    ),
    mailbox: Annotated[Path, typer.Option(help="Where the sink keeps caught emails.")] = Path(
        "mailbox"
    ),
) -> None:
    """Start everything locally: SMTP sink, API + dashboard, worker, sender (Ctrl-C stops)."""
    folder = Path.cwd()
    mailbox = mailbox.resolve()
    mailbox.mkdir(parents=True, exist_ok=True)
    env = child_env(folder, api_port, smtp_port, mailbox)
    os.environ.update({k: v for k, v in env.items() if k.startswith("FLOWMAIL_")})
    _setup(env, examples, templates)
    token = admin_key(folder)
    children = _start(env, smtp_port, mailbox)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    _wait_ready(children, (smtp_port, api_port))
    _banner(api_port, token, mailbox)
    failed: Child | None = None
    try:
        while not stopping and failed is None:
            failed = next((c for c in children if c.process.poll() is not None), None)
            time.sleep(0.2)
    finally:
        console.print("stopping ...")
        _stop(children)
    if failed is not None:
        fail(f"the {failed.name} process stopped (exit {failed.process.returncode}); all stopped")
    console.print("stopped")
