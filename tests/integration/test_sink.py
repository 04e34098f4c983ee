"""The dev mailbox: ``flowmail sink`` (aiosmtpd on loopback) keeping what real SMTP
clients send as files, reading them back, and ``/v1/dev/mailbox`` serving them."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from api_support import running_api
from mailsink import free_port

from flowmail.delivery import sink
from flowmail.delivery.sink import Sink, list_mail, read_mail
from flowmail.store.sql import SqlStore


def _email(to: str, subject: str, html: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "flowmail <hello@example.com>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(f"Plain {subject}\n")
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def _send(port: int, message: EmailMessage, rcpts: list[str] | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message, to_addrs=rcpts)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Sink]:
    with Sink(tmp_path / "mailbox", port=free_port()) as server:
        yield server


def test_each_message_becomes_one_file_read_back_whole(running: Sink) -> None:
    folder = running.handler.folder
    _send(running.port, _email("ana@example.com", "Welcome Ana", "<p>Hi <b>Ana</b> ✓</p>"))
    _send(running.port, _email("ben@example.com", "Second"), ["ben@example.com", "bcc@x.org"])
    files = sorted(folder.iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no temporary file left behind
    listed = list_mail(folder)
    assert [m.subject for m in listed] == ["Second", "Welcome Ana"]  # newest first
    assert listed[1].to == "ana@example.com"
    assert listed[1].from_ == "flowmail <hello@example.com>"
    assert abs((datetime.now(UTC) - listed[0].received_at).total_seconds()) < 60
    first = read_mail(folder, listed[1].id)
    assert first is not None
    assert first.html is not None and "Hi <b>Ana</b> ✓" in first.html
    assert first.text == "Plain Welcome Ana\n"
    names = [name for name, _ in first.headers]
    assert names[:2] == ["Return-Path", "X-Envelope-To"]
    second = read_mail(folder, listed[0].id)
    assert second is not None and second.html is None
    assert ("X-Envelope-To", "ben@example.com, bcc@x.org") in second.headers
    assert running.handler.received == 2


def test_paging_back_and_pruning_the_oldest(tmp_path: Path) -> None:
    folder = tmp_path / "box"
    ids = [sink.write_mail(folder, _email("a@x.org", f"n{i}").as_bytes(), datetime.now(UTC))
           for i in range(5)]  # fmt: skip
    assert [m.id for m in list_mail(folder, limit=2)] == ids[::-1][:2]
    assert [m.id for m in list_mail(folder, limit=10, before=ids[2])] == [ids[1], ids[0]]
    assert sink.prune(folder, keep=3) == 2
    assert sink.mail_ids(folder) == ids[::-1][:3]


def test_only_mail_ids_are_ever_opened(tmp_path: Path) -> None:
    folder = tmp_path / "box"
    folder.mkdir()
    (tmp_path / "secret.eml").write_text("Subject: secret\n\nno")
    (folder / "notes.eml").write_text("Subject: not a mail id\n\nno")
    assert read_mail(folder, "../secret") is None
    assert read_mail(folder, "notes") is None
    assert list_mail(folder) == []
    assert list_mail(tmp_path / "missing") == []


def test_the_dev_mailbox_api(store: SqlStore, running: Sink) -> None:
    _send(running.port, _email("ana@example.com", "Welcome Ana", "<p>Hello Ana</p>"))
    with running_api(store, dev_mailbox=str(running.handler.folder)) as api:
        listed = api.get("/v1/dev/mailbox")
        assert listed.status_code == 200, listed.text
        [item] = listed.json()
        assert set(item) == {"id", "from", "to", "subject", "received_at"}
        assert (item["to"], item["subject"]) == ("ana@example.com", "Welcome Ana")
        detail = api.get(f"/v1/dev/mailbox/{item['id']}").json()
        assert detail["html"].strip() == "<p>Hello Ana</p>"
        assert detail["text"] == "Plain Welcome Ana\n"
        assert {"name": "Subject", "value": "Welcome Ana"} in detail["headers"]
        assert api.get("/v1/dev/mailbox/20250101T000000000000Z-00000000").status_code == 404
        assert api.get("/v1/dev/mailbox/..%2F..%2Fetc").status_code == 404
        assert api.get("/v1/dev/mailbox", headers=api.ingest).status_code == 403
        assert api.get("/v1/dev/mailbox", headers={}).status_code == 401
        assert api.get("/v1/dev/mailbox", params={"before": "nonsense"}).status_code == 422


def test_no_dev_mailbox_is_a_404(store: SqlStore) -> None:
    with running_api(store) as api:
        answer = api.get("/v1/dev/mailbox")
        assert answer.status_code == 404
        assert "FLOWMAIL_DEV_MAILBOX" in answer.json()["message"]


def test_the_flowmail_sink_command(tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "caught"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMAIL_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "flowmail", "sink", "--port", str(port), "--dir", str(folder)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _send(port, _email("cli@example.com", "Through the CLI"))
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert b"stopped after 1 email(s)" in output
    [mail] = list_mail(folder)
    assert mail.subject == "Through the CLI"


def test_the_sink_command_says_why_it_cannot_listen(tmp_path: Path, running: Sink) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowmail", "sink", "--port", str(running.port), "--dir",
         str(tmp_path / "x")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{running.port}" in done.stderr
    assert "Traceback" not in done.stderr
