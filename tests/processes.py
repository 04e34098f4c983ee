"""Running flowmail as real processes in tests: one command, or a server to wait for."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def run_flowmail(env: dict[str, str], *args: str, cwd: Path) -> str:
    """Run ``flowmail ARGS`` to the end; its output, once it exited 0."""
    done = subprocess.run(
        [sys.executable, "-m", "flowmail", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def wait_until_up(process: subprocess.Popen[bytes], log: Path) -> str:
    """The server's URL, once it answers /health (it picked a free port and logged it)."""
    deadline = time.monotonic() + 30
    while True:
        found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())
        try:
            if found and httpx.get(f"{found[1]}/health", timeout=1).status_code == 200:
                return found[1]
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.1)
