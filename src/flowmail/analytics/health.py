"""Health: a snapshot of the machinery (queues, lag, throughput, errors, providers), and
one sample of it saved per interval for the dashboard's charts.

- queue depths: pending inbox events, due wakes, queued, due and dead messages;
- lag: the age of the oldest unprocessed event (when it was received);
- throughput: events processed and emails sent per minute over the last sampling interval;
- error rate: failed runs and failed or dead messages over runs ended and messages
  finished, from the hourly counters of the current and the previous hour
  (:data:`ERROR_WINDOW`), with the failures by "workflow/step kind";
- providers: for the hand-offs of the last interval, the mean time from hand-off to the
  recorded answer, and the share of transient or permanent failures (a hard bounce is
  the recipient's problem, not the provider's, and counts as an answer).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from flowmail.analytics.model import HealthFigures
from flowmail.language.loader import parse_workflow
from flowmail.language.models import step_kind
from flowmail.settings import Settings
from flowmail.store import health as db
from flowmail.store.schema import DEFAULT_WORKSPACE, from_micros, to_micros
from flowmail.store.sql import SqlStore

ERROR_WINDOW = timedelta(hours=1)  # from the start of the previous hour's counters
DELIVERY_ROWS = 20_000  # hand-offs and outcomes read for provider figures, at most
RUN_ENDED = ("run:completed", "run:converted", "run:exited", "run:failed")
MSG_FINISHED = ("msg:sent", "msg:failed", "msg:dead")
FAILURES = ("run:failed", "msg:failed", "msg:dead")


def snapshot(store: SqlStore, settings: Settings, now: datetime) -> HealthFigures:
    """The machinery now. Every query is an index range: cheap at any size."""
    interval = timedelta(seconds=settings.health_sample_seconds)
    depths = db.queue_depths(store, now)
    figures = HealthFigures(
        at=now.isoformat(),
        pending_events=depths["pending_events"],
        due_wakes=depths["due_wakes"],
        queued_messages=depths["queued_messages"],
        due_messages=depths["due_messages"],
        dead_messages=depths["dead_messages"],
    )
    oldest = db.oldest_pending(store)
    if oldest is not None:
        figures.lag_seconds = max(0.0, (now - oldest).total_seconds())
    minutes = interval.total_seconds() / 60
    processed = db.processed_between(store, now - interval, now)
    figures.events_per_minute = round(processed / minutes, 2)
    sent = db.deliveries(store, now - interval, now, DELIVERY_ROWS)
    figures.sent_per_minute = round(sent.sent / minutes, 2)
    figures.provider_latency_ms, figures.provider_error_rate = provider_figures(sent.rows)
    figures.error_rate, figures.errors = _errors(store, slot_of(now - ERROR_WINDOW, 3600))
    return figures


def sample(store: SqlStore, settings: Settings, now: datetime) -> HealthFigures | None:
    """Take and save the sample of the current interval, unless one was already taken
    (by this process or another: the first insert wins). Returns the new sample, or None.
    Samples older than ``retention_days`` are pruned when a new one is saved."""
    slot = slot_of(now, settings.health_sample_seconds)
    if db.has_sample(store, slot):
        return None
    figures = snapshot(store, settings, now)
    if not db.save_sample(store, slot, to_json(figures)):
        return None
    db.prune_samples(store, now - timedelta(days=settings.retention_days))
    return figures


def slot_of(now: datetime, seconds: float) -> datetime:
    """``now`` rounded down to the sampling interval (whole microseconds since the epoch)."""
    step = max(1, round(seconds * 1_000_000))
    micros = to_micros(now)
    return from_micros(micros - micros % step)


def to_json(figures: HealthFigures) -> dict[str, Any]:
    return asdict(figures)


def from_json(values: dict[str, Any]) -> HealthFigures:
    known = HealthFigures.__dataclass_fields__
    return HealthFigures(**{k: v for k, v in values.items() if k in known})


# --- providers --------------------------------------------------------------------------


def provider_figures(
    rows: list[tuple[str, str, str, datetime, dict[str, Any]]],
) -> tuple[dict[str, float], dict[str, float]]:
    """Mean milliseconds from hand-off to answer, and the failure share, by provider.

    ``rows`` are ``message_events`` (workspace, message, kind, at, detail), oldest first:
    each ``sending`` is paired with the message's next outcome. Outcomes without a
    provider (a template that could not be rendered) are not the provider's.
    """
    handed: dict[tuple[str, str], tuple[datetime, str | None]] = {}
    waits: dict[str, list[float]] = {}
    answers: dict[str, list[int]] = {}  # provider -> [answers, failures]
    for ws, message_id, kind, at, detail in rows:
        key = (ws, message_id)
        if kind == "sending":
            handed[key] = (at, detail.get("provider"))
            continue
        started, provider = handed.pop(key, (None, None))
        provider = detail.get("provider") or provider
        if provider is None:
            continue
        counts = answers.setdefault(str(provider), [0, 0])
        counts[0] += 1
        if kind in ("retry", "dead") or (kind == "failed" and not detail.get("hard_bounce")):
            counts[1] += 1
        if started is not None:
            waits.setdefault(str(provider), []).append((at - started).total_seconds() * 1000)
    latency = {name: round(sum(ms) / len(ms), 1) for name, ms in sorted(waits.items())}
    errors = {name: round(bad / total, 4) for name, (total, bad) in sorted(answers.items())}
    return latency, errors


# --- errors -----------------------------------------------------------------------------


def _errors(store: SqlStore, since: datetime) -> tuple[float, dict[str, int]]:
    """(failures over runs ended and messages finished, failures by workflow/step kind)."""
    totals = db.stats_totals(store, since, sorted({*RUN_ENDED, *MSG_FINISHED}))
    volume = sum(totals.values())
    failed = {key: n for key, n in totals.items() if key[4] in FAILURES and n}
    kinds = _step_kinds(store, {key[:3] for key in failed})
    errors: dict[str, int] = {}
    for (ws, wf, version, step, _metric), count in failed.items():
        kind = kinds.get((ws, wf, version), {}).get(step, "workflow" if not step else "unknown")
        name = f"{wf}/{kind}" if ws == DEFAULT_WORKSPACE else f"{ws}:{wf}/{kind}"
        errors[name] = errors.get(name, 0) + count
    rate = sum(failed.values()) / volume if volume else 0.0
    return rate, dict(sorted(errors.items(), key=lambda item: (-item[1], item[0])))


def _step_kinds(
    store: SqlStore, keys: set[tuple[str, str, int]]
) -> dict[tuple[str, str, int], dict[str, str]]:
    """Each step's kind (email, wait, branch, ...) in these workflow versions."""
    kinds: dict[tuple[str, str, int], dict[str, str]] = {}
    for key, definition in db.definitions(store, keys).items():
        try:
            workflow = parse_workflow(definition, key[1])
        except Exception:  # a definition the language no longer reads
            continue
        kinds[key] = {step.id: step_kind(step) for step in workflow.steps}
    return kinds
