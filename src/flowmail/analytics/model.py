"""The figures the report, the dashboard and the API show: plain data, no queries."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class LinkFigures:
    url: str
    unique: int = 0  # messages with at least one click on this link
    total: int = 0


@dataclass
class EmailFigures:
    """What happened to the messages one email step queued."""

    queued: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0  # unique: messages opened at least once by a person
    opened_total: int = 0
    opened_automated: int = 0  # opens that look machine-made (proxy prefetch, scanners)
    clicked: int = 0  # unique: messages clicked at least once
    clicked_total: int = 0
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    failed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason code -> count
    links: list[LinkFigures] = field(default_factory=list)

    def rate(self, count: int) -> float:
        """``count`` over delivered (over sent while no delivery reports came back)."""
        base = self.delivered or self.sent
        return count / base if base else 0.0


_COUNTS = [f.name for f in fields(EmailFigures) if f.type == "int"]


@dataclass
class StepFigures:
    step_id: str
    kind: str  # email wait wait_for branch split update webhook enroll tag ...
    entered: int = 0  # visits: a run that passes a step twice counts twice
    active: int = 0  # runs at this step now
    waiting: int = 0  # runs waiting at this step now
    completed: int = 0  # runs that ended here, by how they ended
    converted: int = 0
    exited: int = 0
    failed: int = 0
    dwell_seconds: float | None = None  # mean time a visit spent here before moving on
    email: EmailFigures | None = None  # email steps only
    conversions: int = 0  # goal events credited to this step's emails
    revenue: float = 0.0
    edges: dict[str, int] = field(default_factory=dict)  # next step id -> transitions


@dataclass
class VariantFigures:
    """One arm of a split step, with its test against the control (the first arm)."""

    split_step: str
    target: str
    entered: int = 0
    converted: int = 0
    clicked: int = 0  # runs that clicked an email after taking this arm
    metric: str = "converted"  # what rate is compared: converted or clicked
    rate: float = 0.0
    z: float | None = None
    p_value: float | None = None
    significant: bool = False
    winner: bool = False  # the rule sent new runs here (or would, once enabled)


@dataclass
class WorkflowFigures:
    workflow_id: str
    version: int | None  # None: all versions together
    mode: str = "active"
    entered: int = 0
    active: int = 0
    waiting: int = 0
    completed: int = 0
    converted: int = 0
    exited: int = 0
    failed: int = 0
    conversions: int = 0  # goal events credited to this workflow's emails
    revenue: float = 0.0
    steps: list[StepFigures] = field(default_factory=list)
    variants: list[VariantFigures] = field(default_factory=list)

    @property
    def ended(self) -> int:
        return self.completed + self.converted + self.exited + self.failed

    @property
    def completion_rate(self) -> float:
        """Runs that finished (completed or converted) over runs that ended."""
        return (self.completed + self.converted) / self.ended if self.ended else 0.0

    @property
    def error_rate(self) -> float:
        return self.failed / self.ended if self.ended else 0.0

    @property
    def revenue_per_entered(self) -> float:
        return self.revenue / self.entered if self.entered else 0.0

    def email_totals(self) -> EmailFigures:
        total = EmailFigures()
        for step in self.steps:
            if step.email is None:
                continue
            for name in _COUNTS:
                setattr(total, name, getattr(total, name) + getattr(step.email, name))
            for reason, count in step.email.skipped.items():
                total.skipped[reason] = total.skipped.get(reason, 0) + count
        return total


@dataclass
class HealthFigures:
    """A snapshot of the machinery."""

    at: str  # ISO time
    pending_events: int = 0  # inbox
    due_wakes: int = 0
    queued_messages: int = 0  # outbox, due or not
    due_messages: int = 0
    dead_messages: int = 0
    lag_seconds: float = 0.0  # age of the oldest unprocessed event
    events_per_minute: float = 0.0  # processed, over the last sampling interval
    sent_per_minute: float = 0.0
    error_rate: float = 0.0  # failed runs and messages over those ended or sent
    errors: dict[str, int] = field(default_factory=dict)  # "workflow/step kind" -> failures
    provider_latency_ms: dict[str, float] = field(default_factory=dict)
    provider_error_rate: dict[str, float] = field(default_factory=dict)


@dataclass
class Alert:
    kind: str  # queue_depth lag error_rate bounce_rate complaint_rate
    subject: str  # "" or the workflow concerned
    value: float
    threshold: float
    message: str
    started_at: str
    status: str = "firing"
    resolved_at: str | None = None


@dataclass
class Recommendation:
    workflow_id: str
    kind: str  # low_completion high_errors high_unsubscribes high_bounces winner stall
    message: str
    step_id: str | None = None


@dataclass
class Report:
    since: str
    until: str
    workflows: list[WorkflowFigures]
    recommendations: list[Recommendation]
    alerts: list[Alert]
    health: HealthFigures | None = None
