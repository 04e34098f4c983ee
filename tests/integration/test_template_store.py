"""Templates in the database (both back ends) and the ``flowmail templates`` commands."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner, Result

from conftest import T0
from flowmail.cli import app
from flowmail.store import schema as t
from flowmail.store.sql import SqlStore
from flowmail.store.templates import (
    get_template,
    list_templates,
    save_template,
    template_versions,
)
from flowmail.templates.links import resolve_click
from flowmail.templates.model import Template

FOOT = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}</p>'
ADDRESS = "1 Example Street, Springfield"
SECRET = "test-secret"


def hello(**changes: object) -> Template:
    fields: dict[str, object] = {
        "name": "hello",
        "subject": "Hi {{ contact.first_name }}",
        "html": FOOT,
        "defaults": {"contact.first_name": "there"},
        "fallback": "plain",
        "topic": "onboarding",
        **changes,
    }
    return Template(**fields)  # type: ignore[arg-type]


# --- the store, on SQLite and PostgreSQL ------------------------------------------------------


def test_saving_new_content_makes_a_new_version(store: SqlStore) -> None:
    assert save_template(store, "ws", hello(), T0) == 1
    assert save_template(store, "ws", hello(), T0 + timedelta(minutes=1)) == 1
    assert save_template(store, "ws", hello(subject="Hello!"), T0 + timedelta(minutes=2)) == 2
    assert save_template(store, "ws", hello(topic="marketing"), T0 + timedelta(minutes=3)) == 3
    assert save_template(store, "ws", hello(topic="marketing"), T0 + timedelta(minutes=4)) == 3
    assert template_versions(store, "ws", "hello") == [1, 2, 3]


def test_a_version_reads_back_as_it_was_saved(store: SqlStore) -> None:
    save_template(store, "ws", hello(text="Hi {{ unsubscribe_url }}"), T0)
    save_template(store, "ws", hello(subject="Second"), T0)
    first = get_template(store, "ws", "hello", 1)
    assert first == hello(text="Hi {{ unsubscribe_url }}", version=1)
    latest = get_template(store, "ws", "hello")
    assert latest == hello(subject="Second", version=2)
    assert latest is not None and latest.topic == "onboarding"
    assert latest.defaults == {"contact.first_name": "there"}
    assert get_template(store, "ws", "hello", 3) is None
    assert get_template(store, "ws", "nope") is None
    assert get_template(store, "other", "hello") is None


def test_listing_shows_each_templates_latest_version(store: SqlStore) -> None:
    save_template(store, "ws", hello(), T0)
    save_template(store, "ws", hello(subject="v2"), T0 + timedelta(hours=1))
    save_template(store, "ws", hello(name="bye"), T0)
    save_template(store, "other", hello(name="elsewhere"), T0)
    rows = list_templates(store, "ws")
    assert [(r.name, r.version, r.versions) for r in rows] == [("bye", 1, 1), ("hello", 2, 2)]
    assert rows[1].created_at == T0 + timedelta(hours=1)


def test_mjml_source_and_compiled_html_are_both_kept(store: SqlStore) -> None:
    template = hello(mjml="<mjml></mjml>", html="<html>compiled</html>")
    save_template(store, "ws", template, T0)
    assert get_template(store, "ws", "hello") == hello(
        mjml="<mjml></mjml>", html="<html>compiled</html>", version=1
    )


# --- the commands -------------------------------------------------------------------------

Invoke = Callable[..., Result]


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # no flowmail.toml from elsewhere
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def cli(url: str, tmp_path: Path) -> Invoke:
    runner = CliRunner()
    env = {
        "FLOWMAIL_DATABASE_URL": url,
        "FLOWMAIL_POSTAL_ADDRESS": ADDRESS,
        "FLOWMAIL_SECRET_KEY": SECRET,
        "FLOWMAIL_PUBLIC_URL": "https://mail.example.com",
        "FLOWMAIL_TEMPLATES_DIR": str(tmp_path / "templates"),
        "COLUMNS": "200",
    }

    def invoke(*args: str, code: int = 0, **extra: str) -> Result:
        result = runner.invoke(app, list(args), env={**env, **extra})
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"uncaught {result.exception!r}"
        )
        assert "Traceback" not in result.stdout + result.stderr
        return result

    return invoke


def write(folder: Path, name: str, meta: dict[str, object], **bodies: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(meta))
    for suffix, body in bodies.items():
        (folder / f"{name}.{suffix}").write_text(body)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "templates"
    write(
        path,
        "cart",
        {
            "subject": "{{ contact.first_name }}, your cart",
            "defaults": {"contact.first_name": "there"},
        },
        html="<html><head><style>p { color: red }</style></head><body>"
        "<p>{% for item in cart_items %}{{ item.name }} {{ item.line_total | money }}; "
        "{% endfor %}</p>"
        '<a href="https://shop.example/cart">Back to the cart</a>' + FOOT + "</body></html>",
    )
    write(path, "receipt", {"subject": "Receipt", "topic": "transactional"}, txt="Thanks!")
    return path


def add_contact(url: str, contact_id: str, address: bool = True, **attributes: object) -> None:
    store = SqlStore.from_url(url)
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(t.contacts).values(
                workspace_id="default",
                id=contact_id,
                email=f"{contact_id}@example.com" if address else None,
                timezone="Europe/Paris",
                attributes=attributes,
                created_at=T0,
                updated_at=T0,
            )
        )
    store.close()


def test_validate_a_folder(cli: Invoke, folder: Path) -> None:
    result = cli("templates", "validate", str(folder))
    assert "✓ cart (marketing)" in result.stdout and "✓ receipt (transactional)" in result.stdout
    assert "✓ cart" in cli("templates", "validate").stdout  # the templates_dir setting


def test_validate_reports_every_problem_and_fails(cli: Invoke, folder: Path) -> None:
    write(folder, "promo", {"subject": "s"}, html="<p>Buy\n{{ x | nope }}</p>")
    write(folder, "loose", {"subject": "s"}, html="<p>Buy</p>")
    result = cli("templates", "validate", str(folder), code=1)
    assert "promo (html, line 2): unknown filter 'nope'" in result.stderr
    assert "loose (html): a marketing email (topic 'marketing') needs an unsubscribe link" in (
        result.stderr
    )
    no_address = cli("templates", "validate", str(folder), code=1, FLOWMAIL_POSTAL_ADDRESS="")
    assert "none is configured: set FLOWMAIL_POSTAL_ADDRESS" in no_address.stderr


def test_validate_a_folder_with_a_broken_file(cli: Invoke, folder: Path) -> None:
    (folder / "bad.yaml").write_text("subject: [")
    assert "bad.yaml: not valid YAML" in cli("templates", "validate", str(folder), code=1).stderr


def test_apply_stores_versions(cli: Invoke, folder: Path, url: str) -> None:
    first = cli("templates", "apply", str(folder)).stdout
    assert "cart v1 (new version)" in first and "receipt v1 (new version)" in first
    assert "cart v1 (unchanged)" in cli("templates", "apply", str(folder)).stdout
    (folder / "receipt.txt").write_text("Thank you!")
    again = cli("templates", "apply", str(folder)).stdout
    assert "cart v1 (unchanged)" in again and "receipt v2 (new version)" in again
    listed = json.loads(cli("templates", "list", "--json").stdout)
    assert listed == [
        {"name": "cart", "version": 1, "versions": 1},
        {"name": "receipt", "version": 2, "versions": 2},
    ]
    store = SqlStore.from_url(url)
    stored = get_template(store, "default", "receipt")
    store.close()
    assert stored is not None and stored.text == "Thank you!" and stored.topic == "transactional"


def test_apply_refuses_an_invalid_folder(cli: Invoke, folder: Path, url: str) -> None:
    write(folder, "loose", {"subject": "s"}, html="<p>Buy</p>")
    cli("templates", "apply", str(folder), code=1)
    assert json.loads(cli("templates", "list", "--json").stdout) == []


def test_render_previews_and_writes_an_eml(
    cli: Invoke, folder: Path, url: str, tmp_path: Path
) -> None:
    cli("db", "upgrade")
    add_contact(url, "ann", first_name="Ann")
    event = {"name": "cart_abandoned", "properties": {"items": [{"name": "Mug", "price": 12.5}]}}
    out = tmp_path / "cart.eml"
    result = cli(
        "templates", "render", "cart", "--contact", "ann", "--event", json.dumps(event),
        "--content", "abandoned_cart", "--out", str(out),
    )  # fmt: skip
    assert "Ann, your cart" in result.stdout
    assert "cart v1" in result.stdout and "(database)" not in result.stdout  # from the folder
    assert "Mug $12.50;" in result.stdout
    message = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Ann, your cart"
    assert message["To"] == "ann@example.com"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.iter_parts()
    assert "Mug $12.50;" in text_part.get_content()  # type: ignore[attr-defined]
    html = html_part.get_content()  # type: ignore[attr-defined]
    assert '<p style="color: red;">Mug $12.50; </p>' in html
    assert ADDRESS in html
    tracked = html.split('href="https://mail.example.com/c/', 1)[1].split('"', 1)[0]
    assert resolve_click(SECRET, tracked)[0].startswith("https://shop.example/cart?utm_source=")


def test_render_prefers_the_database_and_records_missing_values(
    cli: Invoke, folder: Path, url: str
) -> None:
    cli("templates", "apply", str(folder))
    (folder / "cart.yaml").write_text(yaml.safe_dump({"subject": "changed on disk"}))
    add_contact(url, "bo")
    result = cli("templates", "render", "cart", "--contact", "bo")
    assert "there, your cart" in result.stdout and "(database)" in result.stdout
    write(folder, "note", {"subject": "Plan {{ contact.plan }}", "topic": "transactional"}, txt="x")
    result = cli("templates", "render", "note", "--contact", "bo")
    assert "Missing" in result.stdout and "contact.plan" in result.stdout


def test_render_errors_are_clear(cli: Invoke, folder: Path, url: str) -> None:
    cli("db", "upgrade")
    add_contact(url, "ann")
    add_contact(url, "nomail", address=False)
    cases = [
        (["cart", "--contact", "nomail", "--out", "x.eml"], "error: contact 'nomail' has no email"),
        (["cart", "--contact", "nobody"], "error: no contact 'nobody' in workspace 'default'"),
        (["nothing", "--contact", "ann"], "error: no template 'nothing' in the database or in"),
        (["cart", "--contact", "ann", "--event", "{"], "error: --event is not JSON"),
        (["cart", "--contact", "ann", "--event", "[1]"], "error: --event must be a JSON object"),
    ]
    for args, message in cases:
        assert cli("templates", "render", *args, code=1).stderr.startswith(message)
