"""The API as deployed: ``flowmail serve`` (uvicorn) in its own process, over loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from conftest import new_pg_database, new_sqlite_database
from flowmail.store import schema as t
from flowmail.store.keys import Role, create_key
from flowmail.store.sql import SqlStore
from processes import run_flowmail, wait_until_up


@dataclass
class Server:
    url: str
    env: dict[str, str]
    folder: Path
    db_url: str
    admin: str
    ingest: str

    def cli(self, *args: str) -> str:
        return run_flowmail(self.env, *args, cwd=self.folder)


@contextmanager
def serving(db_url: str, folder: Path) -> Iterator[Server]:
    """``flowmail serve`` on a free loopback port, stopped with SIGTERM at the end."""
    store = SqlStore.from_url(db_url)
    admin = create_key(store, "default", Role.ADMIN, "e2e", datetime.now(UTC))[1]
    ingest = create_key(store, "default", Role.INGEST, "e2e", datetime.now(UTC))[1]
    store.close()
    env = {
        **os.environ,
        "FLOWMAIL_DATABASE_URL": db_url,
        "FLOWMAIL_RATE_LIMIT_PER_KEY": "0",
        "FLOWMAIL_API_KEY_CACHE_SECONDS": "0.2",
    }
    with (folder / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "flowmail", "serve", "--host", "127.0.0.1", "--port", "0"],
            env=env,
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = wait_until_up(process, folder / "server.log")
            yield Server(url, env, folder, db_url, admin, ingest)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=15)
            finally:
                if process.poll() is None:
                    process.kill()
            log.flush()
            output = (folder / "server.log").read_text()
            assert code in (0, -signal.SIGTERM), output  # uvicorn re-raises SIGTERM
            assert "Traceback" not in output, output


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server per back end for this module (starting one takes seconds)."""
    folder = tmp_path_factory.mktemp(f"serve-{request.param}")
    if request.param == "sqlite":
        db_url = new_sqlite_database(folder)
    else:
        db_url = new_pg_database(request.getfixturevalue("pg_server"))
    with serving(db_url, folder) as running:
        yield running


def client(server: Server, key: str | None = None, **kwargs: Any) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30, **kwargs)


def test_segment_style_calls_over_a_real_socket(server: Server) -> None:
    with client(server, auth=(server.ingest, "")) as segment:  # Basic, key as the user
        track = segment.post("/v1/track", json={"userId": "ann", "event": "signed_up"})
        assert track.status_code == 200
        assert track.json() == {"accepted": 1, "duplicates": 0}
        assert segment.get("/v1/contacts").status_code == 403
    with client(server) as anonymous:
        assert anonymous.post("/v1/track", json={}).status_code == 401
        assert anonymous.get("/openapi.json").json()["info"]["title"] == "flowmail"
        assert anonymous.get("/health").json()["database"] is True
        assert "flowmail_api_events_ingested_total" in anonymous.get("/metrics").text


def test_concurrent_repeats_of_a_message_id_store_one_event(server: Server) -> None:
    ids = [f"order-{n}" for n in range(10)]
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    with client(server, server.ingest, limits=limits) as shared:

        def send(message_id: str) -> httpx.Response:
            body = {"userId": "bob", "event": "paid", "messageId": message_id}
            return shared.post("/v1/track", json=body)

        with ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(send, [i for i in ids for _ in range(16)]))
    assert {r.status_code for r in responses} == {200}
    assert sum(r.json()["accepted"] for r in responses) == len(ids)
    assert sum(r.json()["duplicates"] for r in responses) == len(ids) * 15
    store = SqlStore.from_url(server.db_url)
    with store.engine.connect() as conn:
        stored = (
            conn.execute(
                sa.select(t.events.c.id)
                .where(t.events.c.contact_id == "bob")
                .order_by(t.events.c.id)
            )
            .scalars()
            .all()
        )
    store.close()
    assert stored == sorted(ids)


def test_too_large_bodies_are_refused_before_they_are_read(server: Server) -> None:
    with client(server, server.admin) as admin:
        headers = {"Content-Type": "application/json"}
        response = admin.post("/v1/batch", content=b"[" * 600_000, headers=headers)
        assert response.status_code == 413
        assert response.json()["error"] == "too_large"

        def chunks() -> Iterator[bytes]:
            for _ in range(600):
                yield b"[" * 1000

        chunked = admin.post("/v1/batch", content=chunks(), headers=headers)
        assert chunked.status_code == 413
    with client(server, server.admin) as admin:  # and the server is fine afterwards
        assert admin.post("/v1/batch", json={"batch": []}).status_code == 200


def test_keys_made_listed_and_revoked_with_the_cli(server: Server) -> None:
    created = json.loads(
        server.cli(
            "keys", "create", "--role", "admin", "--workspace", "acme", "--name", "ops", "--json"
        )
    )
    assert created["key"].startswith(f"fm_{created['id']}_")
    with client(server, created["key"]) as acme:
        assert acme.get("/v1/workflows").status_code == 200
        assert acme.get("/v1/contacts/ann").status_code == 404  # the default workspace's
        listed = server.cli("keys", "list", "--workspace", "acme")
        assert created["id"] in listed and created["key"] not in listed
        server.cli("keys", "revoke", created["id"])
        time.sleep(0.25)  # the server trusts a checked key for FLOWMAIL_API_KEY_CACHE_SECONDS
        assert acme.get("/v1/workflows").status_code == 401
