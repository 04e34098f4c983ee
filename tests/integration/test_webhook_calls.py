"""Webhook steps are outboxed and called later, with retries and a dead end, against a
real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from conftest import T0
from flowmail.clock import VirtualClock
from flowmail.runtime.actions import ActionDispatcher, RetryPolicy
from flowmail.runtime.service import apply_workflow
from flowmail.runtime.worker import Worker
from flowmail.store.records import InboundEvent
from flowmail.store.sql import SqlStore


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a slow answer (the timeout test) is expected


class Endpoint:
    """Answers with the queued status codes (then 200), records every request."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                endpoint.requests.append(
                    {
                        "path": self.path,
                        "body": json.loads(self.rfile.read(length) or b"null"),
                        "headers": dict(self.headers),
                    }
                )
                time.sleep(endpoint.delay)
                status = endpoint.statuses.pop(0) if endpoint.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    yield server
    server.close()


def _setup(store: SqlStore, url: str) -> VirtualClock:
    workflow = {
        "id": "notify_crm",
        "trigger": {"event": "signup"},
        "steps": [
            {
                "id": "tell",
                "webhook": {
                    "url": url,
                    "headers": {"x-token": "s3cret"},
                    "body": {"who": "{{ contact.id }}", "plan": "{{ event.plan }}"},
                },
            },
        ],
    }
    apply_workflow(store, "default", workflow, T0)
    store.ingest([InboundEvent("ana", "signup", T0, {"plan": "pro"}, id="e1")], T0)
    clock = VirtualClock(T0)
    Worker(store, clock).drain()
    return clock


def _dispatcher(store: SqlStore, clock: VirtualClock, timeout: float = 5.0) -> ActionDispatcher:
    policy = RetryPolicy(max_attempts=3, base=timedelta(seconds=10))
    client = httpx.Client(timeout=timeout)
    return ActionDispatcher(store, clock, "test", client=client, policy=policy, timeout=timeout)


def test_a_webhook_step_is_called_once_with_its_rendered_body(
    store: SqlStore, endpoint: Endpoint
) -> None:
    clock = _setup(store, endpoint.url)
    assert [a["status"] for a in store.actions()] == ["queued"]
    assert endpoint.requests == []  # the engine only wrote the call down
    dispatcher = _dispatcher(store, clock)
    assert dispatcher.step() == 1
    assert dispatcher.step() == 0
    assert endpoint.requests[0]["body"] == {"who": "ana", "plan": "pro"}
    assert endpoint.requests[0]["headers"]["x-token"] == "s3cret"
    (action,) = store.actions()
    assert action["status"] == "done" and action["attempts"] == 1


def test_failures_are_retried_with_backoff_then_succeed(
    store: SqlStore, endpoint: Endpoint
) -> None:
    clock = _setup(store, endpoint.url)
    endpoint.statuses = [500, 503]
    dispatcher = _dispatcher(store, clock)
    assert dispatcher.step() == 1
    (action,) = store.actions()
    assert action["status"] == "queued" and action["last_error"] == "HTTP 500"
    wait = action["next_attempt_at"] - T0
    assert timedelta(seconds=5) <= wait <= timedelta(seconds=10)
    assert dispatcher.step() == 0  # not due yet
    clock.set(action["next_attempt_at"])
    assert dispatcher.step() == 1
    (action,) = store.actions()
    second_wait = action["next_attempt_at"] - clock.now()
    assert timedelta(seconds=10) <= second_wait <= timedelta(seconds=20)
    clock.set(action["next_attempt_at"])
    dispatcher.step()
    (action,) = store.actions()
    assert action["status"] == "done" and action["attempts"] == 3
    assert len(endpoint.requests) == 3


def test_a_call_that_keeps_failing_ends_dead(store: SqlStore, endpoint: Endpoint) -> None:
    clock = _setup(store, endpoint.url)
    endpoint.statuses = [500] * 10
    dispatcher = _dispatcher(store, clock)
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        dispatcher.step()
    (action,) = store.actions()
    assert action["status"] == "dead" and action["attempts"] == 3
    clock.advance(timedelta(days=1))
    assert dispatcher.step() == 0


def test_a_slow_endpoint_times_out_and_is_retried(store: SqlStore, endpoint: Endpoint) -> None:
    clock = _setup(store, endpoint.url)
    endpoint.delay = 0.6
    dispatcher = _dispatcher(store, clock, timeout=0.2)
    started = time.perf_counter()
    dispatcher.step()
    assert time.perf_counter() - started < 0.6
    (action,) = store.actions()
    assert action["status"] == "queued" and "Timeout" in action["last_error"]


def test_a_refused_connection_is_a_transient_failure(store: SqlStore) -> None:
    clock = _setup(store, "http://127.0.0.1:9/nothing-listens-here")
    _dispatcher(store, clock).step()
    (action,) = store.actions()
    assert action["status"] == "queued" and action["attempts"] == 1
    assert "ConnectError" in action["last_error"]
