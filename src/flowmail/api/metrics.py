"""Prometheus metrics, in a registry of the application's own (two apps never mix).

Counters and the latency histogram are updated as requests happen; queue depths and
heartbeat ages are read from the database when ``/metrics`` is scraped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowmail.store import api_queries
from flowmail.store.sql import SqlStore

log = logging.getLogger("flowmail.api")

_QUEUES = ("pending_events", "queued_messages", "due_messages", "due_wakes")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ApiMetrics:
    def __init__(self, store: SqlStore, now: Callable[[], datetime]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "flowmail_api_events_ingested",
            "Events accepted into the inbox through the API",
            ["kind"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "flowmail_api_events_duplicate",
            "Events refused as repeats of a messageId already received",
            registry=self.registry,
        )
        self.requests = Histogram(
            "flowmail_api_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["method", "route", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_QueueCollector(store, now))


class _QueueCollector(Collector):
    def __init__(self, store: SqlStore, now: Callable[[], datetime]) -> None:
        self.store = store
        self.now = now

    def describe(self) -> Iterator[Metric]:
        """What collect() yields, without asking the database (called on registering)."""
        yield GaugeMetricFamily("flowmail_database_up", "")
        for name in _QUEUES:
            yield GaugeMetricFamily(f"flowmail_queue_{name}", "")
        yield GaugeMetricFamily("flowmail_heartbeat_age_seconds", "", labels=["kind", "id"])

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("flowmail_database_up", "1 if the database answered this scrape")
        try:
            depths = api_queries.queue_depths(self.store, self.now())
            beats = api_queries.heartbeats(self.store)
        except Exception:
            log.warning("metrics: the database did not answer", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, value in depths.items():
            gauge = GaugeMetricFamily(f"flowmail_queue_{name}", f"Queue depth: {name}")
            gauge.add_metric([], value)
            yield gauge
        ages = GaugeMetricFamily(
            "flowmail_heartbeat_age_seconds",
            "Seconds since each worker or sender last reported",
            labels=["kind", "id"],
        )
        now = self.now()
        for beat_id, kind, seen in beats:
            ages.add_metric([kind, beat_id], (now - seen).total_seconds())
        yield ages


class RequestTimer:
    """ASGI middleware: observes each request's duration under its route template (so that
    ids in paths do not make new series); unmatched paths share one label."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.requests.labels(method, route, str(status)).observe(
                time.perf_counter() - started
            )
