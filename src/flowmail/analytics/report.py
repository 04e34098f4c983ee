"""The performance report: each workflow's figures over a window, with recommendations.

The recommendations are the article's, made concrete (the thresholds are the constants
below; a rate is judged only with enough volume behind it):

- ``low_completion``: under 70 % of the runs that ended finished (completed or converted);
- ``high_errors``: over 5 % of the runs that ended failed;
- ``high_unsubscribes``: over 2 % of delivered emails led to an unsubscribe;
- ``high_bounces``: over 5 % of emails bounced;
- ``winner``: an arm of a split wins its test (or the winner rule chose it);
- ``stall``: a step that runs should pass through (not a wait) holds most of the
  workflow's runs in progress, or most runs that left a step did not go on to the next.

Each names the workflow and, where one stands out, the step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from flowmail.analytics.model import (
    Alert,
    EmailFigures,
    HealthFigures,
    Recommendation,
    Report,
    StepFigures,
    VariantFigures,
    WorkflowFigures,
)
from flowmail.language.durations import format_duration
from flowmail.language.models import WAIT_KINDS

LOW_COMPLETION = 0.70  # completed or converted, over runs ended
HIGH_ERRORS = 0.05  # failed, over runs ended
HIGH_UNSUBSCRIBES = 0.02  # unsubscribes over delivered emails
HIGH_BOUNCES = 0.05  # bounces over delivered emails (over sent without delivery reports)
STALL_SHARE = 0.5  # a step holding more than this share of the runs in progress
DROP_SHARE = 0.5  # runs going on from a step, under this share of those that left it
MIN_RUNS = 20  # runs behind a run rate (ended, in progress, or leaving a step)
MIN_EMAILS = 100  # emails sent behind an email rate
HOLDING_KINDS = frozenset(WAIT_KINDS)  # steps that hold runs by design: wait, wait_for
FORKING_KINDS = frozenset({"branch", "split", "wait_for", "exit"})  # no single next step

KINDS = ("low_completion", "high_errors", "high_unsubscribes", "high_bounces", "winner", "stall")


def build(
    figures: list[WorkflowFigures],
    alerts: list[Alert],
    health: HealthFigures | None,
    since: datetime,
    until: datetime,
) -> Report:
    recommendations = [r for workflow in figures for r in recommend(workflow)]
    return Report(since.isoformat(), until.isoformat(), figures, recommendations, alerts, health)


def recommend(workflow: WorkflowFigures) -> list[Recommendation]:
    """What to look at in one workflow, most general first."""
    found: list[Recommendation] = []
    for check in _CHECKS:
        found += check(workflow)
    return found


# --- the checks -------------------------------------------------------------------------


def _name(workflow: WorkflowFigures) -> str:
    version = "" if workflow.version is None else f" v{workflow.version}"
    return f"workflow {workflow.workflow_id!r}{version}"


def _worst(steps: list[StepFigures], count: Callable[[StepFigures], int]) -> StepFigures | None:
    ranked = sorted((s for s in steps if count(s) > 0), key=lambda s: -count(s))
    return ranked[0] if ranked else None


def _completion(workflow: WorkflowFigures) -> list[Recommendation]:
    ended, rate = workflow.ended, workflow.completion_rate
    if ended < MIN_RUNS or rate >= LOW_COMPLETION:
        return []
    done = workflow.completed + workflow.converted
    step = _worst(workflow.steps, lambda s: s.exited + s.failed)
    where = "" if step is None else f"; most ended early at step {step.step_id!r} ({step.kind})"
    message = (
        f"{_name(workflow)}: only {rate:.1%} of the runs that ended finished ({done:,} of "
        f"{ended:,}: {workflow.exited:,} exited, {workflow.failed:,} failed){where}. "
        "Review the workflow's complexity and its friction points."
    )
    return [_rec(workflow, "low_completion", message, step)]


def _errors(workflow: WorkflowFigures) -> list[Recommendation]:
    ended, rate = workflow.ended, workflow.error_rate
    if ended < MIN_RUNS or rate <= HIGH_ERRORS:
        return []
    step = _worst(workflow.steps, lambda s: s.failed)
    where = (
        "" if step is None else f"; most at step {step.step_id!r} ({step.kind}: {step.failed:,})"
    )
    message = (
        f"{_name(workflow)}: {rate:.1%} of the runs that ended failed "
        f"({workflow.failed:,} of {ended:,}){where}. Look at the runs' journals for the cause."
    )
    return [_rec(workflow, "high_errors", message, step)]


def _email_rate(
    workflow: WorkflowFigures,
    kind: str,
    limit: float,
    count: Callable[[EmailFigures], int],
    what: str,
    advice: str,
) -> list[Recommendation]:
    total = workflow.email_totals()
    rate = total.rate(count(total))
    if total.sent < MIN_EMAILS or rate <= limit:
        return []
    emails = [s for s in workflow.steps if s.email is not None and s.email.sent >= MIN_EMAILS]
    step = max(emails, key=lambda s: s.email.rate(count(s.email)) if s.email else 0, default=None)
    where = ""
    if step is not None and step.email is not None:
        where = f"; the most at step {step.step_id!r} ({step.email.rate(count(step.email)):.1%})"
    message = (
        f"{_name(workflow)}: {rate:.1%} of emails {what} ({count(total):,} of "
        f"{total.delivered or total.sent:,}){where}. {advice}"
    )
    return [_rec(workflow, kind, message, step)]


def _unsubscribes(workflow: WorkflowFigures) -> list[Recommendation]:
    return _email_rate(
        workflow,
        "high_unsubscribes",
        HIGH_UNSUBSCRIBES,
        lambda e: e.unsubscribed,
        "led to an unsubscribe",
        "Send less often, or make the content more relevant to who gets it.",
    )


def _bounces(workflow: WorkflowFigures) -> list[Recommendation]:
    return _email_rate(
        workflow,
        "high_bounces",
        HIGH_BOUNCES,
        lambda e: e.bounced,
        "bounced",
        "Clean the list: verify addresses at sign-up, drop old or unconfirmed ones.",
    )


def _winners(workflow: WorkflowFigures) -> list[Recommendation]:
    splits: dict[str, list[VariantFigures]] = {}
    for variant in workflow.variants:
        splits.setdefault(variant.split_step, []).append(variant)
    found: list[Recommendation] = []
    for split_step, arms in splits.items():
        control, others = arms[0], arms[1:]
        better = [v for v in others if v.significant and v.rate > control.rate]
        chosen = [v for v in arms if v.winner] or sorted(better, key=lambda v: -v.rate)[:1]
        if not chosen and others and all(v.significant and v.rate < control.rate for v in others):
            chosen = [control]
        if not chosen:
            continue
        best = chosen[0]
        rivals = [v for v in arms if v is not best]
        against = ", ".join(f"{v.rate:.1%} for {v.target!r}" for v in rivals)
        tested = best if best is not control else rivals[0]
        p = "" if tested.p_value is None else f", p = {tested.p_value:.3g}"
        message = (
            f"{_name(workflow)}: in split {split_step!r}, {best.target!r} wins "
            f"({best.metric} {best.rate:.1%} vs {against}{p}). Send every run there "
            "and test a new idea against it."
        )
        found.append(Recommendation(workflow.workflow_id, "winner", message, step_id=split_step))
    return found


def _stalls(workflow: WorkflowFigures) -> list[Recommendation]:
    steps = workflow.steps
    found: list[Recommendation] = []
    in_progress = sum(s.active + s.waiting for s in steps)
    for step in steps:
        held = step.active + step.waiting
        if (
            step.kind not in HOLDING_KINDS
            and in_progress >= MIN_RUNS
            and held > STALL_SHARE * in_progress
        ):
            message = (
                f"{_name(workflow)}: step {step.step_id!r} ({step.kind}) holds {held:,} of the "
                f"{in_progress:,} runs in progress ({held / in_progress:.0%}). Runs should "
                "pass through it: is the workflow frozen, or are its sends held?"
            )
            found.append(_rec(workflow, "stall", message, step))
    by_id = {s.step_id: s for s in steps}
    for index, step in enumerate(steps[:-1]):
        if step.kind in FORKING_KINDS or len(step.edges) > 1:
            continue
        following = next(iter(step.edges), steps[index + 1].step_id)
        left = step.entered - step.active - step.waiting - step.converted
        if step.edges:
            moved = step.edges[following]
        else:
            moved = by_id[following].entered if following in by_id else 0
        if left < MIN_RUNS or moved >= DROP_SHARE * left:
            continue
        message = (
            f"{_name(workflow)}: only {moved:,} of the {left:,} runs that left step "
            f"{step.step_id!r} ({step.kind}) went on to {following!r} ({moved / left:.0%}); "
            f"the rest ended there ({step.exited:,} exited, {step.failed:,} failed, "
            f"{step.completed:,} completed). Check its exit rules and errors."
        )
        found.append(_rec(workflow, "stall", message, step))
    return found


def _rec(
    workflow: WorkflowFigures, kind: str, message: str, step: StepFigures | None
) -> Recommendation:
    return Recommendation(
        workflow.workflow_id, kind, message, step_id=None if step is None else step.step_id
    )


_CHECKS: tuple[Callable[[WorkflowFigures], list[Recommendation]], ...] = (
    _completion,
    _errors,
    _unsubscribes,
    _bounces,
    _winners,
    _stalls,
)


# --- JSON -------------------------------------------------------------------------------


def summary(report: Report) -> dict[str, Any]:
    """Totals over the report's workflows, like the article's report summary."""
    workflows = report.workflows
    ended = sum(w.ended for w in workflows)
    done = sum(w.completed + w.converted for w in workflows)
    emails = [w.email_totals() for w in workflows]
    sent = sum(e.sent for e in emails)
    delivered = sum(e.delivered for e in emails)
    base = delivered or sent
    return {
        "workflows": len(workflows),
        "entered": sum(w.entered for w in workflows),
        "in_progress": sum(w.active + w.waiting for w in workflows),
        "ended": ended,
        "completion_rate": done / ended if ended else 0.0,
        "failed": sum(w.failed for w in workflows),
        "emails_sent": sent,
        "emails_delivered": delivered,
        "open_rate": sum(e.opened for e in emails) / base if base else 0.0,
        "click_rate": sum(e.clicked for e in emails) / base if base else 0.0,
        "conversions": sum(w.conversions for w in workflows),
        "revenue": sum(w.revenue for w in workflows),
        "recommendations": len(report.recommendations),
        "alerts_firing": sum(1 for a in report.alerts if a.status == "firing"),
    }


def _workflow_json(workflow: WorkflowFigures) -> dict[str, Any]:
    data = asdict(workflow)
    data.update(
        ended=workflow.ended,
        completion_rate=workflow.completion_rate,
        error_rate=workflow.error_rate,
        revenue_per_entered=workflow.revenue_per_entered,
        emails=asdict(workflow.email_totals()),
    )
    return data


def to_json(report: Report) -> dict[str, Any]:
    return {
        "since": report.since,
        "until": report.until,
        "summary": summary(report),
        "workflows": [_workflow_json(w) for w in report.workflows],
        "recommendations": [asdict(r) for r in report.recommendations],
        "alerts": [asdict(a) for a in report.alerts],
        "health": None if report.health is None else asdict(report.health),
    }


# --- the terminal -----------------------------------------------------------------------


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column(columns[0], no_wrap=True)
    for column in columns[1:]:
        table.add_column(column, justify="right", no_wrap=True)
    return table


def _runs_table(workflows: list[WorkflowFigures]) -> Table:
    table = _table(
        "Runs",
        ("workflow", "entered", "in progress", "ended", "finished", "failed", "conv.", "revenue"),
    )
    for w in workflows:
        version = "" if w.version is None else f" v{w.version}"
        table.add_row(
            escape(w.workflow_id) + version,
            f"{w.entered:,}",
            f"{w.active + w.waiting:,}",
            f"{w.ended:,}",
            _pct(w.completed + w.converted, w.ended),
            _pct(w.failed, w.ended),
            f"{w.conversions:,}",
            f"{w.revenue:,.2f}",
        )
    return table


def _emails_table(workflows: list[WorkflowFigures]) -> Table:
    table = _table(
        "Emails",
        ("workflow", "sent", "delivered", "opened", "clicked", "bounced", "unsub.", "compl."),
    )
    for w in workflows:
        e = w.email_totals()
        base = e.delivered or e.sent
        table.add_row(
            escape(w.workflow_id),
            f"{e.sent:,}",
            f"{e.delivered:,}",
            _pct(e.opened, base),
            _pct(e.clicked, base),
            _pct(e.bounced, base),
            _pct(e.unsubscribed, base),
            _pct(e.complained, base),
        )
    return table


def _count(number: int, noun: str) -> str:
    """``1 workflow``, ``2,500 workflows``."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _age(seconds: float) -> str:
    return format_duration(timedelta(seconds=round(seconds)))


def _health_line(health: HealthFigures) -> Text:
    return Text(
        f"Health: {_count(health.pending_events, 'event')} pending "
        f"(oldest {_age(health.lag_seconds)}), "
        f"{_count(health.due_messages, 'message')} due, {health.dead_messages:,} dead; "
        f"{health.events_per_minute:,.4g} events/min, {health.sent_per_minute:,.4g} sent/min; "
        f"error rate {health.error_rate:.1%}"
    )


def render(report: Report) -> RenderableType:
    """The report for a terminal (rich)."""
    totals = summary(report)
    parts: list[RenderableType] = [
        Text(f"flowmail report  {report.since} → {report.until}", style="bold"),
        Text(
            f"{_count(totals['workflows'], 'workflow')}, "
            f"{_count(totals['entered'], 'run')} entered, "
            f"{totals['ended']:,} ended ({totals['completion_rate']:.1%} finished), "
            f"{totals['emails_sent']:,} emails sent, {totals['conversions']:,} conversions, "
            f"revenue {totals['revenue']:,.2f}"
        ),
        Text(""),
    ]
    if report.workflows:
        parts += [_runs_table(report.workflows), Text(""), _emails_table(report.workflows)]
        parts.append(Text(""))
    parts.append(Text("Recommendations", style="bold"))
    if not report.recommendations:
        parts.append(Text("  none: every workflow is within its thresholds", style="green"))
    for rec in report.recommendations:
        line = Text("  • ")
        line.append(rec.kind.replace("_", " "), style="yellow")
        line.append(f"  {rec.message}")
        parts.append(line)
    firing = [a for a in report.alerts if a.status == "firing"]
    parts += [Text(""), Text(f"Alerts firing: {len(firing)}", style="bold")]
    for alert in report.alerts:
        style = "red" if alert.status == "firing" else "dim"
        ended = f" → {alert.resolved_at}" if alert.resolved_at else ""
        parts.append(
            Text(f"  {alert.status}  {alert.started_at}{ended}  {alert.message}", style=style)
        )
    if report.health is not None:
        parts += [Text(""), _health_line(report.health)]
    return Group(*parts)
