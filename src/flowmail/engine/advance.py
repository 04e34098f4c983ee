"""Moving one run through its steps until it waits or ends. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from flowmail.engine.catalog import Mode, Version
from flowmail.engine.conditions import Scope, evaluate
from flowmail.engine.decisions import (
    CallWebhook,
    Decision,
    EnrollContact,
    Record,
    SaveRun,
    SendEmail,
    UpdateContact,
    Warn,
)
from flowmail.engine.state import Contact, Event, Run, RunStatus, bucket, stable_hash
from flowmail.engine.timing import next_time_of_day, window_open_at, zone
from flowmail.engine.variables import template_variables
from flowmail.language.models import (
    END,
    BranchStep,
    EmailStep,
    EnrollStep,
    ExitStep,
    Goal,
    SplitStep,
    StepBase,
    TagStep,
    UntagStep,
    UpdateStep,
    WaitForStep,
    WaitStep,
    WebhookStep,
    Workflow,
)
from flowmail.templates.liquid import TemplateError, is_template, render

MAX_STEPS_PER_ADVANCE = 100


class Pass:
    """One unit of work for one contact: the working contact and the decisions so far."""

    def __init__(self, contact: Contact, now: datetime, scope: Scope, default_tz: str) -> None:
        self.contact = contact
        self.now = now
        self.base = scope
        self.default_tz = default_tz
        self.decisions: list[Decision] = []
        self.saved: dict[str, SaveRun] = {}

    def scope(self, run: Run | None, event: Event | None) -> Scope:
        return Scope(self.contact, self.now, self.base.history, event, run, self.base.predicates)

    def emit(self, decision: Decision) -> None:
        self.decisions.append(decision)

    def record(self, run: Run, step: str | None, action: str, **detail: Any) -> None:
        self.emit(Record(self.now, run.contact_id, run.workflow_id, run.id, step, action, detail))

    def warn(self, message: str, run: Run | None = None, step: str | None = None) -> None:
        self.emit(Warn(self.now, message, run.id if run else None, step))

    def save(self, run: Run, new: bool = False) -> None:
        previous = self.saved.get(run.id)
        self.saved[run.id] = SaveRun(run, new or (previous is not None and previous.new))

    def runs_now(self, runs: Sequence[Run]) -> list[Run]:
        """``runs`` with the states this pass gave them, plus the runs it started."""
        latest = {run.id: run for run in runs}
        latest.update((run_id, saved.run) for run_id, saved in self.saved.items())
        return list(latest.values())

    def update_contact(self, values: dict[str, Any]) -> None:
        self.contact = self.contact.with_attributes(values)
        self.emit(UpdateContact(self.contact.id, values))

    def result(self) -> list[Decision]:
        """Decisions in order, each touched run's final state last."""
        return [*self.decisions, *self.saved.values()]


def end_run(work: Pass, run: Run, status: RunStatus, reason: str) -> None:
    run.status, run.reason, run.ended_at = status, reason, work.now
    run.wake_at = run.waiting_for = None
    work.record(run, run.step, str(status), reason=reason)
    work.save(run)


def goal_reached(goal: Goal | None, scope: Scope) -> bool:
    """A goal or exit rule: an event (with optional where) or a bare condition."""
    if goal is None:
        return False
    if goal.event is not None:
        event = scope.event
        if event is None or event.name != goal.event:
            return False
        if not same_as_trigger(event, scope.run, goal.match):
            return False
    return goal.where is None or evaluate(goal.where, scope)


def same_as_trigger(event: Event, run: Run | None, keys: Sequence[str]) -> bool:
    """``match: [cart_id]``: the event's properties equal the run's trigger event's."""
    if not keys:
        return True
    if run is None:
        return False
    return all(event.properties.get(k) == run.trigger.properties.get(k) for k in keys)


def proceed(work: Pass, version: Version, run: Run, step_id: str) -> None:
    """Execute steps from ``step_id`` until the run waits, holds or ends."""
    workflow = version.workflow
    run.status, run.wake_at, run.waiting_for = RunStatus.ACTIVE, None, None
    for _ in range(MAX_STEPS_PER_ADVANCE):
        if step_id == END:
            return end_run(work, run, RunStatus.COMPLETED, "reached the end")
        if version.mode == Mode.CANCEL:
            return end_run(work, run, RunStatus.EXITED, "workflow cancelled")
        if version.mode == Mode.FREEZE:
            run.step, run.reason = step_id, "frozen"
            work.record(run, step_id, "held", reason="workflow is frozen")
            return work.save(run)
        goal = workflow.goal
        try:
            reached = (
                goal is not None
                and goal.event is None
                and goal_reached(goal, work.scope(run, run.trigger))
            )
        except LookupError as exc:  # an unknown predicate
            return end_run(work, run, RunStatus.FAILED, f"goal: {exc}")
        if reached:
            return end_run(work, run, RunStatus.CONVERTED, "goal reached")
        if not workflow.has_step(step_id):
            return end_run(work, run, RunStatus.FAILED, f"step {step_id!r} is not in this version")
        step = workflow.step(step_id)
        run.step = step_id
        run.path.append(step_id)
        try:
            following = _execute(work, version, run, step)
        except (TemplateError, LookupError, ValueError) as exc:
            return end_run(work, run, RunStatus.FAILED, f"step {step_id}: {exc}")
        if following is None:
            return work.save(run)
        step_id = following
    end_run(work, run, RunStatus.FAILED, f"more than {MAX_STEPS_PER_ADVANCE} steps at once")


def _next(workflow: Workflow, step: StepBase) -> str:
    return step.next or workflow.successor(step.id)


def _execute(work: Pass, version: Version, run: Run, step: StepBase) -> str | None:
    """Run one step: returns the next step id, or None when the run waits or ended."""
    workflow = version.workflow
    match step:
        case EmailStep():
            _email(work, workflow, run, step)
        case WaitStep():
            wake = _wake_time(work, run, step)
            if wake > work.now:
                run.status, run.wake_at = RunStatus.WAITING, wake
                work.record(run, step.id, "wait", until=wake.isoformat())
                return None
            work.record(run, step.id, "wait", until=work.now.isoformat(), skipped=True)
        case WaitForStep():
            run.status = RunStatus.WAITING
            run.waiting_for = step.wait_for.event
            run.wake_at = work.now + step.wait_for.timeout
            work.record(
                run, step.id, "wait_for", event=run.waiting_for, until=run.wake_at.isoformat()
            )
            return None
        case BranchStep():
            scope = work.scope(run, run.trigger)
            for index, case in enumerate(step.branch):
                if case.if_ is None or evaluate(case.if_, scope):
                    work.record(run, step.id, "branch", case=index, then=case.target)
                    return case.target
            work.record(run, step.id, "branch", case=None, then=_next(workflow, step))
        case SplitStep():
            target, by_winner = _split(workflow, version.winners, run, step)
            run.variants[step.id] = target
            if by_winner:
                work.record(run, step.id, "split", then=target, winner=True)
            else:
                work.record(run, step.id, "split", then=target)
            return target
        case UpdateStep():
            values = {k: _render_value(work, workflow, run, v) for k, v in step.update.items()}
            work.update_contact(values)
            work.record(run, step.id, "update", values=values)
        case TagStep() | UntagStep():
            _tags(work, run, step)
        case WebhookStep():
            spec = step.webhook
            work.emit(
                CallWebhook(
                    _visit_key(run, step.id),
                    run.id,
                    step.id,
                    spec.url,
                    spec.method,
                    dict(spec.headers),
                    _render_value(work, workflow, run, spec.body),
                    work.now,
                )
            )
            work.record(run, step.id, "webhook", url=spec.url)
        case EnrollStep():
            key = _visit_key(run, step.id)
            work.emit(
                EnrollContact(key, run.contact_id, step.enroll, run.trigger, run.id, work.now)
            )
            work.record(run, step.id, "enroll", workflow=step.enroll)
        case ExitStep():
            end_run(work, run, RunStatus.EXITED, "exit step")
            return None
    return _next(workflow, step)


def _visit_key(run: Run, step_id: str) -> str:
    """Unique per run, step and visit (a loop may pass a step more than once)."""
    return stable_hash(run.id, step_id, run.path.count(step_id))


def _email(work: Pass, workflow: Workflow, run: Run, step: EmailStep) -> None:
    spec = step.email
    subject = spec.subject or ""
    if is_template(subject):
        variables = template_variables(work.contact, run, workflow, work.now)
        subject, missing = render(subject, variables)
        for name in missing:
            work.warn(f"subject variable {name} has no value", run, step.id)
    if run.holdout:
        work.record(run, step.id, "email", held_out=True)
        return
    if not work.contact.email:
        work.warn("contact has no email address; email skipped", run, step.id)
        work.record(run, step.id, "email", skipped="no email address")
        return
    key = _visit_key(run, step.id)
    run.emails[step.id] = key
    work.emit(
        SendEmail(
            key,
            run.id,
            run.contact_id,
            workflow.id,
            run.version,
            step.id,
            work.contact.email,
            spec.template,
            subject,
            workflow.topic,
            workflow.priority,
            spec.on_capped,
            spec.content,
            work.now,
        )
    )
    work.record(run, step.id, "email", message=key, subject=subject, template=spec.template)


def _wake_time(work: Pass, run: Run, step: WaitStep) -> datetime:
    spec = step.wait
    tz = zone(spec.timezone or work.contact.timezone, work.default_tz)
    if spec.duration is not None:
        return work.now + spec.duration
    if spec.until is not None:
        return spec.until
    if spec.until_time is not None:
        return next_time_of_day(work.now, spec.until_time, spec.days, tz)
    hours = spec.business_hours
    assert hours is not None
    return window_open_at(work.now, hours.start, hours.end, hours.days, tz)


def _split(
    workflow: Workflow, winners: Mapping[str, str], run: Run, step: SplitStep
) -> tuple[str, bool]:
    """The arm a run takes, and whether the split's decided winner chose it. A run keeps
    the arm it took before (a loop back to the split); otherwise a decided winner takes
    every run; otherwise the arm comes from a stable hash of the contact, by weight."""
    arms = [case.then for case in step.split]
    taken = run.variants.get(step.id)
    if taken in arms:
        return taken, False
    winner = winners.get(step.id)
    if winner in arms:
        return winner, True
    total = sum(case.weight for case in step.split)
    point = bucket(workflow.id, step.id, run.contact_id) / 100 * total
    for case in step.split:
        point -= case.weight
        if point < 0:
            return case.then, False
    return step.split[-1].then, False


def _render_value(work: Pass, workflow: Workflow, run: Run, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _render_value(work, workflow, run, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(work, workflow, run, v) for v in value]
    if not is_template(value):
        return value
    text, missing = render(value, template_variables(work.contact, run, workflow, work.now))
    for name in missing:
        work.warn(f"variable {name} has no value", run, run.step)
    return text


def _tags(work: Pass, run: Run, step: TagStep | UntagStep) -> None:
    names = step.tag if isinstance(step, TagStep) else step.untag
    change = {names} if isinstance(names, str) else set(names)
    current = set(work.contact.attributes.get("tags") or [])
    tags = current | change if isinstance(step, TagStep) else current - change
    work.update_contact({"tags": sorted(tags)})
    action = "tag" if isinstance(step, TagStep) else "untag"
    work.record(run, step.id, action, tags=sorted(change))
