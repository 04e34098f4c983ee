"""The workflow language: pydantic models for exactly the shape users write."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from flowmail.language.durations import DURATION_PATTERN
from flowmail.language.types import (
    CONDITION_MARK,
    AwareDatetime,
    ClockTime,
    ConditionField,
    Duration,
    Percent,
    SignedDuration,
    Slug,
    StepRef,
    TimeZone,
    Weekday,
)

END = "end"
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _or_shorthand(shorthand: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` that lets the published schema accept a shorthand form too."""

    def extend(schema: dict[str, Any]) -> None:
        full = dict(schema)
        schema.clear()
        schema.update(title=full.get("title"), anyOf=[full, shorthand])

    return extend


# --- time windows ------------------------------------------------------------------


class HourWindow(Model):
    """Local hours ``[start, end)``; ``start > end`` wraps past midnight."""

    start: int = Field(ge=0, le=23)
    end: int = Field(ge=1, le=24)

    @model_validator(mode="after")
    def _not_empty(self) -> HourWindow:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self

    def contains(self, hour: int) -> bool:
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


class BusinessHours(HourWindow):
    start: int = Field(default=9, ge=0, le=23)
    end: int = Field(default=17, ge=1, le=24)
    days: tuple[Weekday, ...] = Field(default=("mon", "tue", "wed", "thu", "fri"), min_length=1)


# --- triggers --------------------------------------------------------------------


class EventTrigger(Model):
    event: str = Field(min_length=1)
    where: ConditionField | None = None
    hours: HourWindow | None = None


class BehaviorSpec(Model):
    event: str = Field(min_length=1)
    count: int = Field(ge=1)
    within: Duration
    where: ConditionField | None = None


class BehaviorTrigger(Model):
    behavior: BehaviorSpec


class AttributeSpec(Model):
    name: str = Field(min_length=1)
    becomes: Any


class AttributeTrigger(Model):
    attribute: AttributeSpec


class DateSpec(Model):
    attribute: str = Field(min_length=1)
    offset: SignedDuration = timedelta(0)
    at: ClockTime | None = None


class DateTrigger(Model):
    date: DateSpec


class ScheduleSpec(Model):
    cron: str | None = None
    at: AwareDatetime | None = None
    where: ConditionField | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ScheduleSpec:
        if (self.cron is None) == (self.at is None):
            raise ValueError("a schedule needs exactly one of 'cron' or 'at'")
        if self.cron is not None:
            from flowmail.engine.timing import check_cron

            check_cron(self.cron)
        return self


class ScheduleTrigger(Model):
    schedule: ScheduleSpec


TRIGGER_KINDS = ("event", "behavior", "attribute", "date", "schedule")


def _kind_of(value: Any, kinds: tuple[str, ...]) -> str | None:
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True)
    if not isinstance(value, dict):
        return None
    found = [kind for kind in kinds if kind in value]
    return found[0] if len(found) == 1 else None


Trigger = Annotated[
    Annotated[EventTrigger, Tag("event")]
    | Annotated[BehaviorTrigger, Tag("behavior")]
    | Annotated[AttributeTrigger, Tag("attribute")]
    | Annotated[DateTrigger, Tag("date")]
    | Annotated[ScheduleTrigger, Tag("schedule")],
    Discriminator(
        lambda v: _kind_of(v, TRIGGER_KINDS),
        custom_error_type="trigger_kind",
        custom_error_message="a trigger needs exactly one of: " + ", ".join(TRIGGER_KINDS),
    ),
]


# --- steps -----------------------------------------------------------------------


class StepBase(Model):
    id: Slug
    next: StepRef | None = None
    name: str | None = None

    def targets(self) -> list[str]:
        """Explicit step ids this step may go to (not counting list order)."""
        return [self.next] if self.next else []


class EmailSpec(Model):
    template: str | None = None
    subject: str | None = None
    content: Literal["product_recommendation", "abandoned_cart"] | None = None
    on_capped: Literal["defer", "skip"] = "defer"

    @model_validator(mode="after")
    def _something_to_send(self) -> EmailSpec:
        if self.template is None and self.subject is None:
            raise ValueError("an email needs a template or a subject")
        return self


class EmailStep(StepBase):
    email: EmailSpec


class WaitSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=_or_shorthand({"type": "string", "pattern": DURATION_PATTERN})
    )

    duration: Duration | None = None
    until: AwareDatetime | None = None
    until_time: ClockTime | None = None
    days: tuple[Weekday, ...] | None = None
    business_hours: BusinessHours | None = None
    timezone: TimeZone | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"duration": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self) -> WaitSpec:
        kinds = [
            k for k in ("duration", "until", "until_time", "business_hours") if getattr(self, k)
        ]
        if len(kinds) != 1:
            raise ValueError(
                "a wait needs exactly one of: a duration (like 2d), until, until_time, "
                "business_hours"
            )
        if self.days is not None and self.until_time is None:
            raise ValueError("'days' goes with 'until_time'")
        return self


class WaitStep(StepBase):
    wait: WaitSpec


class WaitForSpec(Model):
    event: str = Field(min_length=1)
    timeout: Duration
    match: tuple[str, ...] = ()
    where: ConditionField | None = None


class WaitForStep(StepBase):
    wait_for: WaitForSpec
    on_event: StepRef | None = None
    on_timeout: StepRef | None = None

    def targets(self) -> list[str]:
        return [t for t in (self.on_event, self.on_timeout, self.next) if t]


class BranchCase(Model):
    if_: ConditionField | None = Field(default=None, alias="if")
    then: StepRef | None = None
    else_: StepRef | None = Field(default=None, alias="else")

    @model_validator(mode="after")
    def _shape(self) -> BranchCase:
        if self.else_ is not None:
            if self.if_ is not None or self.then is not None:
                raise ValueError("an 'else' case stands alone: {else: step_id}")
        elif self.if_ is None or self.then is None:
            raise ValueError("a branch case is {if: condition, then: step_id} or {else: step_id}")
        return self

    @property
    def target(self) -> str:
        target = self.else_ if self.else_ is not None else self.then
        assert target is not None
        return target


class BranchStep(StepBase):
    branch: tuple[BranchCase, ...] = Field(min_length=1)

    def targets(self) -> list[str]:
        return [case.target for case in self.branch] + super().targets()


class SplitCase(Model):
    weight: float = Field(gt=0)
    then: StepRef
    name: str | None = None


class WinnerRule(Model):
    """Send every new run down the best arm once it is significantly better than each of the
    others (a pooled two-proportion z-test on ``metric``), with ``min_runs`` runs in every arm."""

    metric: Literal["converted", "clicked"] = "converted"
    confidence: float = Field(default=0.95, ge=0.5, lt=1)
    min_runs: int = Field(default=100, ge=1)


class SplitStep(StepBase):
    split: tuple[SplitCase, ...] = Field(min_length=1)
    winner: WinnerRule | None = None

    def targets(self) -> list[str]:
        return [case.then for case in self.split] + super().targets()


class UpdateStep(StepBase):
    update: dict[str, Any] = Field(min_length=1)


class TagStep(StepBase):
    tag: str | tuple[str, ...]


class UntagStep(StepBase):
    untag: str | tuple[str, ...]


class WebhookSpec(Model):
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None


class WebhookStep(StepBase):
    webhook: WebhookSpec


class EnrollStep(StepBase):
    enroll: Slug


class ExitStep(StepBase):
    exit: Literal[True]


STEP_KINDS = (
    "email", "wait", "wait_for", "branch", "split", "update", "tag", "untag", "webhook",
    "enroll", "exit",
)  # fmt: skip
WAIT_KINDS = ("wait", "wait_for")

Step = Annotated[
    Annotated[EmailStep, Tag("email")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[WaitForStep, Tag("wait_for")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[SplitStep, Tag("split")]
    | Annotated[UpdateStep, Tag("update")]
    | Annotated[TagStep, Tag("tag")]
    | Annotated[UntagStep, Tag("untag")]
    | Annotated[WebhookStep, Tag("webhook")]
    | Annotated[EnrollStep, Tag("enroll")]
    | Annotated[ExitStep, Tag("exit")],
    Discriminator(
        lambda v: _kind_of(v, STEP_KINDS),
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one of: " + ", ".join(STEP_KINDS),
    ),
]


def step_kind(step: StepBase) -> str:
    for kind in STEP_KINDS:
        if kind in type(step).model_fields:
            return kind
    raise AssertionError(type(step))


# --- the workflow ----------------------------------------------------------------


class ReEntryAfter(Model):
    after: Duration


class Goal(Model):
    """``{event: name, where: ...}``, or a bare condition on the contact."""

    model_config = ConfigDict(
        json_schema_extra=_or_shorthand({"type": "object", CONDITION_MARK: True})
    )

    event: str | None = None
    match: tuple[str, ...] = ()
    where: ConditionField | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_condition(cls, value: Any) -> Any:
        if isinstance(value, dict) and "event" not in value:
            return {"where": value}
        return value


class Workflow(Model):
    id: Slug
    name: str = ""
    description: str = ""
    topic: Slug = "marketing"
    priority: int = 0
    trigger: Trigger
    re_entry: Literal["never", "always"] | ReEntryAfter = "never"
    goal: Goal | None = None
    exit_when: Goal | None = None
    holdout: Percent = Field(default=0, ge=0, le=100)
    steps: tuple[Step, ...] = Field(min_length=1)

    @property
    def title(self) -> str:
        return self.name or self.id

    @cached_property
    def _by_id(self) -> dict[str, StepBase]:
        return {step.id: step for step in self.steps}

    @cached_property
    def _after(self) -> dict[str, str]:
        ids = [step.id for step in self.steps]
        return dict(zip(ids, [*ids[1:], END], strict=True))

    def step(self, step_id: str) -> StepBase:
        return self._by_id[step_id]

    def has_step(self, step_id: str) -> bool:
        return step_id in self._by_id

    def successor(self, step_id: str) -> str:
        """The step after ``step_id`` in list order, or ``end``."""
        return self._after[step_id]
