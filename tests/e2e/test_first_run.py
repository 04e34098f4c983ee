"""Tried as a new user would: clone the repository into a temporary folder, run
`make run` (which makes its own virtualenv and starts `flowmail up`), send an event
with curl, find the email in the dev mailbox through the API, then Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(text: str, log: Path, process: subprocess.Popen[bytes], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        output = log.read_text(errors="replace")
        if text in output:
            return output
        if process.poll() is not None:
            break
        time.sleep(0.25)
    raise AssertionError(f"{text!r} did not appear; output so far:\n{log.read_text()[-4000:]}")


def test_clone_make_run_send_an_event_and_read_the_email(tmp_path: Path) -> None:
    clone = tmp_path / "flowmail"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    api_port, smtp_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWMAIL_", "VIRTUAL_ENV"))}
    env.update(FLOWMAIL_API_PORT=str(api_port), FLOWMAIL_SMTP_PORT=str(smtp_port))
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["make", "run"],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        banner = _wait_for("Ctrl-C stops everything", log, process, 240)
        key = re.search(r"admin key\s+(fm_\S+)", banner)
        assert key is not None, banner
        curl = re.search(r"^curl -s .*$", banner, re.M)
        assert curl is not None, banner
        command = curl[0]
        base = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/health").status_code != 200:  # the API is up once it answers
            assert time.monotonic() < deadline
            time.sleep(0.2)
        sent = subprocess.run(command, shell=True, capture_output=True, text=True, check=True)
        assert json.loads(sent.stdout) == {"accepted": 2, "duplicates": 0}

        headers = {"Authorization": f"Bearer {key[1]}"}
        deadline = time.monotonic() + 60
        found: list[dict[str, str]] = []
        while not found and time.monotonic() < deadline:
            listed = httpx.get(f"{base}/v1/dev/mailbox", headers=headers)
            assert listed.status_code == 200, listed.text
            found = [m for m in listed.json() if "alice@example.com" in m["to"]]
            time.sleep(0.5)
        assert found, f"no email for alice in the dev mailbox\n{log.read_text()[-4000:]}"
        assert "Welcome Alice" in found[0]["subject"]
        email = httpx.get(f"{base}/v1/dev/mailbox/{found[0]['id']}", headers=headers).json()
        assert "Alice" in (email["html"] or email["text"])
        assert (clone / "flowmail.db").is_file()
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    output = log.read_text()
    assert "stopped" in output.splitlines()[-1] or "stopped" in output[-200:], output[-2000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{api_port}/health")
