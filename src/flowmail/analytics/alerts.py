"""Alerts: thresholds over the health figures and each workflow's last 24 hours.

Installation-wide alerts (queue depth, lag, error rate) are kept under the workspace
``*``; a workflow's (bounce rate, complaint rate) under its own. Each (kind, subject)
has at most one ``firing`` row in ``alerts`` at a time: it is opened when its value
reaches the threshold, kept current while it stays there, and resolved when it falls
back under (or when too little volume is left to judge a rate). Evaluations take a lock
(PostgreSQL: an advisory lock; SQLite: its single writer), so two processes evaluating
at once do not open the same alert twice.

Every change is logged (WARNING when firing, INFO when resolved) and, with
``alert_webhook_url`` set, POSTed there as JSON: the call is a row in ``actions``
written in the same transaction as the change, so the webhook dispatcher retries it
with backoff and it survives a crash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from flowmail.analytics.model import Alert, EmailFigures, HealthFigures, WorkflowFigures
from flowmail.language.durations import format_duration
from flowmail.settings import Settings
from flowmail.store import health as db
from flowmail.store.health import GLOBAL, AlertRow
from flowmail.store.schema import DEFAULT_WORKSPACE
from flowmail.store.sql import SqlStore

log = logging.getLogger("flowmail.alerts")

SYSTEM_KINDS = ("queue_depth", "lag", "error_rate")
WORKFLOW_KINDS = ("bounce_rate", "complaint_rate")
RATE_WINDOW = timedelta(hours=24)  # the window of the figures the workflow checks read


@dataclass(frozen=True)
class Check:
    """One measurement against its threshold."""

    kind: str
    subject: str
    value: float
    threshold: float
    over: bool
    message: str


def evaluate(
    store: SqlStore,
    settings: Settings,
    now: datetime,
    health: HealthFigures,
    figures: list[WorkflowFigures],
    *,
    workspace_id: str = DEFAULT_WORKSPACE,
) -> list[Alert]:
    """Fire and resolve alerts; returns the ones that changed (fired or resolved now).

    ``figures`` are ``workspace_id``'s workflows over the last 24 hours (several versions
    of a workflow are added up); a firing workflow alert of that workspace whose workflow
    is not among them is resolved.
    """
    url = settings.alert_webhook_url
    with store.engine.begin() as conn:
        db.lock_alerts(store, conn)
        changes = _apply(
            store, conn, GLOBAL, SYSTEM_KINDS, system_checks(settings, health), now, url
        )
        checks = workflow_checks(settings, figures)
        changes += _apply(store, conn, workspace_id, WORKFLOW_KINDS, checks, now, url)
    for ws, alert in changes:
        where = "" if ws == GLOBAL else f" [{ws}]"
        if alert.status == "firing":
            log.warning("alert firing%s: %s", where, alert.message)
        else:
            log.info("alert resolved%s: %s", where, alert.message)
    return [alert for _ws, alert in changes]


def active(store: SqlStore, workspace_id: str) -> list[Alert]:
    """Firing alerts of the workspace and of the whole installation, newest first."""
    return [_alert(r) for r in db.list_alerts(store, workspace_id, status="firing", limit=1000)]


def recent(store: SqlStore, workspace_id: str, limit: int = 50) -> list[Alert]:
    """The latest alerts, firing or resolved, of the workspace and the installation."""
    return [_alert(r) for r in db.list_alerts(store, workspace_id, limit=limit)]


def webhook_body(workspace_id: str, alert: Alert) -> dict[str, Any]:
    """The JSON POSTed to ``alert_webhook_url``; ``text`` suits Slack-style webhooks."""
    about = f" {alert.subject}" if alert.subject else ""
    return {
        "type": f"alert.{alert.status}",
        "workspace_id": workspace_id,
        "kind": alert.kind,
        "subject": alert.subject,
        "status": alert.status,
        "value": alert.value,
        "threshold": alert.threshold,
        "message": alert.message,
        "started_at": alert.started_at,
        "resolved_at": alert.resolved_at,
        "text": f"[flowmail] {alert.status.upper()} {alert.kind}{about}: {alert.message}",
    }


# --- the checks -------------------------------------------------------------------------


def system_checks(settings: Settings, health: HealthFigures) -> list[Check]:
    depth = max(health.pending_events, health.due_messages)
    limit = settings.alert_queue_depth
    lag, lag_limit = health.lag_seconds, settings.alert_lag_seconds
    failures = sum(health.errors.values())
    volume = error_volume(health)
    rate, rate_limit = health.error_rate, settings.alert_error_rate
    top = ", ".join(f"{name} ({n:,})" for name, n in list(health.errors.items())[:3])
    judged = volume >= settings.alert_min_volume
    return [
        Check(
            "queue_depth",
            "",
            depth,
            limit,
            depth >= limit,
            f"queue depth {depth:,}: {health.pending_events:,} events pending, "
            f"{health.due_messages:,} messages due (alert at {limit:,}); add workers or "
            "senders, or look for what holds them up",
        ),
        Check(
            "lag",
            "",
            lag,
            lag_limit,
            lag >= lag_limit,
            f"the oldest unprocessed event is {_age(lag)} old (alert at {_age(lag_limit)}); "
            "are the workers running and keeping up?",
        ),
        Check(
            "error_rate",
            "",
            rate,
            rate_limit,
            judged and rate >= rate_limit,
            f"error rate {rate:.1%}: {failures:,} failures in {volume:,} runs ended and "
            f"messages finished since the previous hour (alert at {rate_limit:.1%})"
            + (f"; most: {top}" if top else "")
            + ("" if judged else f"; under {settings.alert_min_volume:,}, too few to judge"),
        ),
    ]


def error_volume(health: HealthFigures) -> int:
    """Runs ended and messages finished behind ``health.error_rate``: the failures
    (``errors`` holds them all) over the rate."""
    failures = sum(health.errors.values())
    return round(failures / health.error_rate) if health.error_rate > 0 else 0


def workflow_checks(settings: Settings, figures: list[WorkflowFigures]) -> list[Check]:
    totals: dict[str, EmailFigures] = {}
    for workflow in figures:
        total = totals.setdefault(workflow.workflow_id, EmailFigures())
        email = workflow.email_totals()
        for name in ("sent", "delivered", "bounced", "complained"):
            setattr(total, name, getattr(total, name) + getattr(email, name))
    checks: list[Check] = []
    for workflow_id, email in sorted(totals.items()):
        for kind, count, limit, what in (
            ("bounce_rate", email.bounced, settings.alert_bounce_rate, "bounces"),
            ("complaint_rate", email.complained, settings.complaint_alert_rate, "complaints"),
        ):
            rate = email.rate(count)
            judged = email.sent >= settings.alert_min_volume
            message = (
                f"workflow {workflow_id!r}: {kind.replace('_', ' ')} {rate:.2%} over the last "
                f"24 h ({count:,} {what}, {email.delivered or email.sent:,} emails; "
                f"alert at {limit:.2%})"
                + ("" if judged else f"; {email.sent:,} sent, too few to judge")
            )
            checks.append(Check(kind, workflow_id, rate, limit, judged and rate >= limit, message))
    return checks


# --- applying them ----------------------------------------------------------------------


def _apply(
    store: SqlStore,
    conn: Connection,
    workspace_id: str,
    kinds: tuple[str, ...],
    checks: list[Check],
    now: datetime,
    url: str,
) -> list[tuple[str, Alert]]:
    """Open, update and resolve ``workspace_id``'s alerts of ``kinds`` to match ``checks``."""
    firing = _firing(conn, workspace_id, kinds, now)
    changed: list[AlertRow] = []
    for check in checks:
        current = firing.pop((check.kind, check.subject), None)
        if current is None:
            if check.over:
                changed.append(
                    db.open_alert(
                        conn,
                        workspace_id,
                        check.kind,
                        check.subject,
                        check.value,
                        check.threshold,
                        check.message,
                        now,
                    )
                )
            continue
        resolved = None if check.over else now
        db.update_alert(conn, current.seq, check.value, check.message, resolved_at=resolved)
        if resolved is not None:
            changed.append(_resolved(current, check.value, check.message, now))
    for stale in firing.values():  # nothing measured any more (no emails in the window)
        message = f"{stale.message}; no longer measured"
        db.update_alert(conn, stale.seq, stale.value, message, resolved_at=now)
        changed.append(_resolved(stale, stale.value, message, now))
    if url:
        for change in changed:
            body = webhook_body(workspace_id, _alert(change))
            call_id = f"alert:{change.seq}:{change.status}"
            db.queue_call(store, conn, workspace_id, call_id, url, body, now)
    return [(workspace_id, _alert(change)) for change in changed]


def _firing(
    conn: Connection, workspace_id: str, kinds: tuple[str, ...], now: datetime
) -> dict[tuple[str, str], AlertRow]:
    """The firing rows by (kind, subject); a duplicate (impossible under the lock) is
    resolved."""
    firing: dict[tuple[str, str], AlertRow] = {}
    for row in db.firing(conn, workspace_id, kinds):
        if (row.kind, row.subject) in firing:
            db.update_alert(conn, row.seq, row.value, row.message, resolved_at=now)
        else:
            firing[(row.kind, row.subject)] = row
    return firing


def _resolved(row: AlertRow, value: float, message: str, now: datetime) -> AlertRow:
    return AlertRow(
        row.seq,
        row.workspace_id,
        row.kind,
        row.subject,
        "resolved",
        value,
        row.threshold,
        message,
        row.started_at,
        now,
    )


def _alert(row: AlertRow) -> Alert:
    return Alert(
        kind=row.kind,
        subject=row.subject,
        value=row.value,
        threshold=row.threshold,
        message=row.message,
        started_at=row.started_at.isoformat(),
        status=row.status,
        resolved_at=None if row.resolved_at is None else row.resolved_at.isoformat(),
    )


def _age(seconds: float) -> str:
    return format_duration(timedelta(seconds=round(seconds)))
