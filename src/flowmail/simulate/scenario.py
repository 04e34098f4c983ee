"""Scenario files: contacts, events and workflows to run over virtual time."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from flowmail.delivery.policy import QuietHours
from flowmail.language.graph import Problem
from flowmail.language.loader import WorkflowInvalid, load_workflow, parse_workflow, read_document
from flowmail.language.models import SplitStep, Workflow
from flowmail.language.types import AwareDatetime, TimeZone


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioContact(_Model):
    id: str = Field(min_length=1)
    email: str | None = None
    timezone: TimeZone | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class ScenarioEvent(_Model):
    at: AwareDatetime
    contact: str = Field(min_length=1)
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    identify: dict[str, Any] | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ScenarioEvent:
        if (self.name is None) == (self.identify is None):
            raise ValueError("an event needs exactly one of 'name' or 'identify'")
        return self


class ScenarioSuppression(_Model):
    """An address on the suppression list (from ``at``, else from the start)."""

    email: str = Field(min_length=3)
    reason: Literal["unsubscribed", "hard_bounce", "complaint", "manual"] = "manual"
    at: AwareDatetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_address(cls, value: Any) -> Any:
        return {"email": value} if isinstance(value, str) else value


class ScenarioConsent(_Model):
    """A contact's consent for one topic (from ``at``, else from the start)."""

    contact: str = Field(min_length=1)
    topic: str = Field(min_length=1)
    status: Literal["subscribed", "unsubscribed", "pending"]
    at: AwareDatetime | None = None


class ScenarioSettings(_Model):
    """The send-time policy settings, as in flowmail.toml (same names, same defaults)."""

    max_daily_sends: int = Field(default=5, ge=0)
    quiet_hours: str = ""

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        QuietHours.parse(value)
        return value


class Scenario(_Model):
    start: AwareDatetime | None = None
    until: AwareDatetime | None = None
    timezone: TimeZone = "UTC"
    workflows: list[str | dict[str, Any]] = Field(min_length=1)
    contacts: list[ScenarioContact] = Field(default_factory=list)
    events: list[ScenarioEvent] = Field(default_factory=list)
    suppressions: list[ScenarioSuppression] = Field(default_factory=list)
    consents: list[ScenarioConsent] = Field(default_factory=list)
    settings: ScenarioSettings = Field(default_factory=ScenarioSettings)
    # decided A/B winners: workflow id -> split step id -> the arm's target step
    winners: dict[str, dict[str, str]] = Field(default_factory=dict)


class ScenarioInvalid(ValueError):
    pass


def load_scenario(path: str | Path) -> tuple[Scenario, list[Workflow]]:
    """Read a scenario file and the workflows it names (paths relative to it)."""
    path = Path(path)
    try:
        raw = read_document(path)
    except WorkflowInvalid as exc:
        raise ScenarioInvalid(str(exc)) from None
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            lines.append(f"{path}: {where}: {error['msg'].removeprefix('Value error, ')}")
        raise ScenarioInvalid("\n".join(lines)) from None
    workflows, problems = [], []
    for index, item in enumerate(scenario.workflows):
        try:
            if isinstance(item, str):
                workflows.append(load_workflow(path.parent / item))
            else:
                workflows.append(parse_workflow(item, f"{path} (workflow #{index + 1})"))
        except WorkflowInvalid as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioInvalid("\n".join(str(p) for p in problems))
    ids = [w.id for w in workflows]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ScenarioInvalid(
            str(Problem(f"two workflows have the id {duplicates[0]!r}", None, str(path)))
        )
    problems = _winner_problems(scenario, workflows, str(path))
    if problems:
        raise ScenarioInvalid("\n".join(str(p) for p in problems))
    return scenario, workflows


def _winner_problems(scenario: Scenario, workflows: list[Workflow], file: str) -> list[Problem]:
    """Each decided winner names a split step of a workflow and one of its arms."""
    by_id = {w.id: w for w in workflows}
    problems = []
    for workflow_id, steps in scenario.winners.items():
        workflow = by_id.get(workflow_id)
        for step_id, target in steps.items():
            where = f"winners: {workflow_id}.{step_id}"
            if workflow is None or not workflow.has_step(step_id):
                problems.append(Problem(f"{where}: no such workflow or step", None, file))
                continue
            step = workflow.step(step_id)
            if not isinstance(step, SplitStep):
                problems.append(Problem(f"{where}: not a split step", None, file))
            elif target not in [case.then for case in step.split]:
                problems.append(Problem(f"{where}: {target!r} is not one of its arms", None, file))
    return problems
