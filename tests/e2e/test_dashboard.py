"""The dashboard in a real browser: the system's Chromium driven by Playwright, against
``flowmail serve`` in its own process, on data made by the real pieces (``flowmail
templates apply`` and ``workflows apply``, events over HTTP, ``flowmail worker`` and
``flowmail sender`` delivering into ``flowmail sink``). Screenshots of every page go to
tests/artifacts/. Playwright never downloads a browser here: it launches /usr/bin/chromium
(installed by scripts/ensure-chromium.sh)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from conftest import new_sqlite_database
from flowmail.analytics.health import sample
from flowmail.settings import Settings
from flowmail.store import messages as outbox
from flowmail.store.keys import Role, create_key
from flowmail.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WS = "default"
PEOPLE = {
    "dora": "dora@example.com",  # her welcome email dies: the SMTP server is down for it
    "alice": "alice@example.com",
    "ben": "ben@example.com",
}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (scripts/ensure-chromium.sh)"
)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Installation:
    url: str
    env: dict[str, str]
    folder: Path
    db_url: str
    admin: str
    ingest: str

    def cli(self, *args: str, **extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flowmail", *args],
            env={**self.env, **extra},
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    def events(self, *contacts: str) -> None:
        batch = []
        for contact in contacts:
            traits = {
                "email": PEOPLE[contact],
                "first_name": contact.title(),
                "subscription_source": "newsletter_signup",
            }
            batch += [
                {"type": "identify", "userId": contact, "traits": traits},
                {"type": "track", "userId": contact, "event": "user_registered"},
            ]
        answer = httpx.post(
            f"{self.url}/v1/batch",
            json={"batch": batch},
            headers={"Authorization": f"Bearer {self.ingest}"},
        )
        assert answer.status_code == 200, answer.text

    def store(self) -> SqlStore:
        return SqlStore.from_url(self.db_url)


def _started(process: subprocess.Popen[bytes], log: Path, pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + 30
    while True:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"did not start:\n{log.read_text()}")
        time.sleep(0.1)


@contextmanager
def _process(args: list[str], env: dict[str, str], folder: Path, name: str) -> Iterator[Path]:
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flowmail", *args],
            env=env,
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield log
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            finally:
                if process.poll() is None:
                    process.kill()
    output = log.read_text()
    assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    folder = tmp_path_factory.mktemp("dashboard")
    db_url = new_sqlite_database(folder)
    smtp_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMAIL_")}
    env.update(
        FLOWMAIL_DATABASE_URL=db_url,
        FLOWMAIL_SMTP_PORT=str(smtp_port),
        FLOWMAIL_DEV_MAILBOX=str(folder / "mailbox"),
        FLOWMAIL_POSTAL_ADDRESS="flowmail tests, 1 Test Street, Springfield",
        FLOWMAIL_SECRET_KEY="dashboard-e2e-secret-0123456789abcdef",
        FLOWMAIL_TEMPLATES_DIR=str(ROOT / "templates"),
        FLOWMAIL_RATE_LIMIT_PER_KEY="0",
        FLOWMAIL_API_KEY_CACHE_SECONDS="0",
    )
    store = SqlStore.from_url(db_url)
    now = datetime.now(UTC)
    admin = create_key(store, WS, Role.ADMIN, "e2e", now)[1]
    ingest = create_key(store, WS, Role.INGEST, "e2e", now)[1]
    store.close()
    sink_args = ["sink", "--port", str(smtp_port), "--dir", str(folder / "mailbox")]
    serve_args = ["serve", "--host", "127.0.0.1", "--port", "0"]
    with (
        _process(sink_args, env, folder, "sink") as sink_log,
        _process(serve_args, env, folder, "serve") as serve_log,
    ):
        url = _started_server(serve_log)
        _started_sink(sink_log)
        found = Installation(url, env, folder, db_url, admin, ingest)
        found.cli("templates", "apply", str(ROOT / "templates"))
        found.cli("workflows", "apply", str(ROOT / "examples" / "welcome_series.yaml"))
        found.events("dora")
        found.cli("worker", "--drain")
        # the SMTP server is down (a port nobody listens on) and one attempt is all: dead
        found.cli(
            "sender", "--drain", FLOWMAIL_SMTP_PORT=str(_free_port()), FLOWMAIL_MAX_ATTEMPTS="1"
        )
        found.events("alice", "ben")
        found.cli("worker", "--drain")
        assert "sent 2" in found.cli("sender", "--drain")
        _health_samples(found)
        yield found


def _health_samples(installation: Installation) -> None:
    """What a running worker does each minute: a few samples for the overview's charts."""
    store = installation.store()
    try:
        now = datetime.now(UTC)
        for minutes in range(5, -1, -1):
            sample(store, Settings(), now - timedelta(minutes=minutes))
    finally:
        store.close()


def _started_server(log: Path) -> str:
    deadline = time.monotonic() + 30
    while True:
        found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())
        try:
            if found and httpx.get(f"{found[1]}/health", timeout=1).status_code == 200:
                return found[1]
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.1)


def _started_sink(log: Path) -> None:
    deadline = time.monotonic() + 30
    while "SMTP sink on" not in log.read_text():
        if time.monotonic() > deadline:
            pytest.fail(f"the sink did not start:\n{log.read_text()}")
        time.sleep(0.1)


# --- the browser ---------------------------------------------------------------------------


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def message_of(installation: Installation, contact: str) -> dict[str, Any]:
    store = installation.store()
    try:
        [found] = outbox.list_messages(store, WS, contact_id=contact)
    finally:
        store.close()
    return found


def mode_of(installation: Installation, workflow_id: str) -> str:
    store = installation.store()
    try:
        return next(r.mode for r in store.workflow_rows(WS) if r.id == workflow_id)
    finally:
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


def _unexpected(message: ConsoleMessage) -> bool:
    """Console errors, except the browser's note on a refused login or form (401, 403)."""
    refused = re.search(r"status of 40[13]", message.text)
    return message.type == "error" and refused is None


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    errors: list[str] = []
    opened = context.new_page()
    opened.on("console", lambda m: errors.append(m.text) if _unexpected(m) else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], errors  # no script errors, no CSP violations


def log_in(page: Page, installation: Installation, key: str) -> None:
    page.goto(f"{installation.url}/ui/")
    assert page.url.startswith(f"{installation.url}/ui/login")
    page.fill("#key", key)
    page.click("button[type=submit]")


def test_a_wrong_key_is_refused_and_the_admin_key_logs_in(
    page: Page, installation: Installation
) -> None:
    page.goto(f"{installation.url}/ui/workflows")
    assert page.url == f"{installation.url}/ui/login?next=/ui/workflows"
    shot(page, "login")
    page.fill("#key", "fm_0123456789abcdef_wrong-secret")
    page.click("button[type=submit]")
    expect(page.locator(".problem")).to_have_text("That key is not valid.")
    page.fill("#key", installation.ingest)
    page.click("button[type=submit]")
    expect(page.locator(".problem")).to_contain_text("needs an admin key")
    page.fill("#key", installation.admin)
    page.click("button[type=submit]")
    page.wait_for_url(f"{installation.url}/ui/workflows")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["fm_session"]["httpOnly"] and cookies["fm_session"]["sameSite"] == "Strict"


def test_every_page_shows_the_installations_data(page: Page, installation: Installation) -> None:
    log_in(page, installation, installation.admin)
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator('[data-tile="dead_messages"]')).to_have_text("1")
    expect(page.locator(".u-wrap").first).to_be_visible()  # uPlot drew the charts
    shot(page, "overview")

    page.click("nav >> text=Workflows")
    row = page.locator('tr[data-workflow="welcome_series"]')
    expect(row.locator("td").nth(2)).to_contain_text("active")
    expect(row.locator("td").nth(3)).to_have_text("3")  # dora, alice and ben entered
    shot(page, "workflows")

    row.locator("a").click()
    expect(page.locator('g[data-step="welcome_immediate"] .counts')).to_have_text("3 in")
    expect(page.locator('g[data-step="wait_1_day"] .counts')).to_contain_text("3 waiting")
    edge = page.locator('g.edge[data-source="welcome_immediate"][data-target="wait_1_day"]')
    expect(edge.locator("text")).to_have_text("3")
    expect(page.locator("table.funnel tr[data-step=welcome_immediate] td").nth(7)).to_have_text(
        "2"
    )  # sent: dora's died
    shot(page, "workflow")

    page.goto(f"{installation.url}/ui/contacts?q=ali")
    page.click("text=alice")
    expect(page.locator("#contact-id")).to_have_text("alice")
    expect(page.locator("main")).to_contain_text("Welcome Alice! Let's get started")
    expect(page.locator("main")).to_contain_text("welcome_immediate → wait_1_day")
    expect(page.locator("main")).to_contain_text("user_registered")
    shot(page, "contact")
    with page.expect_download() as download:
        page.click("#export")
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["contact"]["email"] == "alice@example.com"

    page.click("text=Welcome Alice! Let's get started")
    expect(page.locator("#status")).to_contain_text("sent")
    expect(page.locator("#preview-subject")).to_have_text("Welcome Alice! Let's get started")
    expect(page.frame_locator("iframe.mail").locator("body")).to_contain_text("Alice")
    shot(page, "message")

    page.click("nav >> text=Dev mailbox")
    mails = page.locator("table.mailbox tbody tr")
    expect(mails).to_have_count(2)
    shot(page, "mailbox")
    page.locator("tr", has_text="alice@example.com").locator("a").click()
    expect(page.locator("#mail-to")).to_have_text("alice@example.com")
    expect(page.locator("#mail-subject")).to_have_text("Welcome Alice! Let's get started")
    expect(page.frame_locator("iframe.mail").locator("body")).to_contain_text("Alice")
    expect(page.locator("#mail-text")).to_contain_text("Alice")
    shot(page, "mail")

    page.click("nav >> text=Report")
    expect(page.locator('[data-tile="entered"]')).to_have_text("3")
    expect(page.locator('[data-tile="emails_sent"]')).to_have_text("2")
    shot(page, "report")


def test_pause_and_resume_from_the_workflow_page(page: Page, installation: Installation) -> None:
    log_in(page, installation, installation.admin)
    page.goto(f"{installation.url}/ui/workflows/welcome_series")
    page.select_option("select[name=mode]", "freeze")
    page.fill("input[name=reason]", "copy review")
    page.click("#pause")
    expect(page.locator("#mode")).to_have_text("freeze")
    assert mode_of(installation, "welcome_series") == "freeze"
    shot(page, "workflow-paused")
    page.click("#resume")
    expect(page.locator("#mode")).to_have_text("active")
    assert mode_of(installation, "welcome_series") == "active"


def test_a_forged_csrf_token_changes_nothing(page: Page, installation: Installation) -> None:
    log_in(page, installation, installation.admin)
    page.goto(f"{installation.url}/ui/workflows/welcome_series")
    page.locator("form[action$='/pause'] input[name=csrf]").evaluate("e => e.value = 'forged'")
    page.select_option("select[name=mode]", "cancel")
    page.click("#pause")
    expect(page.locator("main")).to_contain_text("security token did not match")
    shot(page, "csrf-refused")
    assert mode_of(installation, "welcome_series") == "active"


def test_retrying_a_dead_letter(page: Page, installation: Installation) -> None:
    dead = message_of(installation, "dora")
    assert dead["status"] == "dead"
    log_in(page, installation, installation.admin)
    page.goto(f"{installation.url}/ui/messages?status=dead")
    row = page.locator(f'tr[data-message="{dead["id"]}"]')
    expect(row.locator(".status")).to_contain_text("dead")
    shot(page, "dead-letters")
    row.locator("button.retry").click()
    expect(page.locator(f'tr[data-message="{dead["id"]}"]')).to_have_count(0)
    assert message_of(installation, "dora")["status"] == "queued"
    page.goto(f"{installation.url}/ui/messages?contact=dora")
    expect(page.locator(f'tr[data-message="{dead["id"]}"] .status')).to_contain_text("queued")
    shot(page, "messages")


def test_logging_out_ends_the_session(page: Page, installation: Installation) -> None:
    log_in(page, installation, installation.admin)
    page.click("text=Log out")
    page.wait_for_url(f"{installation.url}/ui/login")
    page.goto(f"{installation.url}/ui/report")
    assert page.url.startswith(f"{installation.url}/ui/login")
