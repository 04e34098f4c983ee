"""Loading workflows from YAML or JSON, with errors a user can act on."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from flowmail.language.article import is_article_format, translate_article
from flowmail.language.graph import Problem, check_graph
from flowmail.language.models import EmailStep, UpdateStep, WebhookStep, Workflow
from flowmail.templates.liquid import TemplateError, compile_template, is_template


class WorkflowInvalid(ValueError):
    """A workflow definition has problems; each names the file and step."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def read_document(path: Path) -> Any:
    """Parse a YAML or JSON file (JSON is YAML, but its errors read better from json)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkflowInvalid([Problem(f"cannot read: {exc.strerror}", file=str(path))]) from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise WorkflowInvalid([Problem(f"not valid YAML/JSON: {exc}", file=str(path))]) from None


def parse_workflow(raw: Any, file: str | None = None) -> Workflow:
    """Validate one workflow definition (our language or the article's format)."""
    if not isinstance(raw, dict):
        raise WorkflowInvalid([Problem("a workflow must be a mapping", file=file)])
    if is_article_format(raw):
        try:
            raw = translate_article(raw)
        except ValueError as exc:
            raise WorkflowInvalid([Problem(str(exc), file=file)]) from None
    try:
        workflow = Workflow.model_validate(raw)
    except ValidationError as exc:
        raise WorkflowInvalid(_problems(exc, raw, file)) from None
    problems = check_graph(workflow) + check_templates(workflow)
    if problems:
        raise WorkflowInvalid([Problem(p.message, p.step, file) for p in problems])
    return workflow


def check_templates(workflow: Workflow) -> list[Problem]:
    """Liquid in subjects, update values and webhook bodies must compile."""
    problems = []
    for step in workflow.steps:
        sources: list[Any] = []
        if isinstance(step, EmailStep) and step.email.subject:
            sources.append(step.email.subject)
        elif isinstance(step, UpdateStep):
            sources.extend(step.update.values())
        elif isinstance(step, WebhookStep):
            sources.append(step.webhook.body)
        for source in _strings(sources):
            try:
                compile_template(source)
            except TemplateError as exc:
                problems.append(Problem(f"template error: {exc}", step.id))
    return problems


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if is_template(value) else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def load_workflow(path: str | Path) -> Workflow:
    path = Path(path)
    return parse_workflow(read_document(path), str(path))


def load_workflows(paths: Iterable[str | Path]) -> list[Workflow]:
    """Load several files; collects every file's problems before raising."""
    workflows, problems = [], []
    for path in paths:
        try:
            workflows.append(load_workflow(path))
        except WorkflowInvalid as exc:
            problems.extend(exc.problems)
    ids = [w.id for w in workflows]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(Problem(f"two workflows have the id {dup!r}"))
    if problems:
        raise WorkflowInvalid(problems)
    return workflows


def _problems(exc: ValidationError, raw: dict[str, Any], file: str | None) -> list[Problem]:
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    problems = []
    for error, loc in zip(errors, locs, strict=True):
        if error["type"] == "too_short" and any(o[: len(loc)] == loc and o != loc for o in locs):
            continue  # "no items left" only because its items failed; those errors say why
        parts = list(loc)
        step = None
        if parts[:1] == ["trigger"] and len(parts) > 1:
            del parts[1]  # the union's tag repeats the trigger kind
        if len(parts) >= 2 and parts[0] == "steps" and isinstance(parts[1], int):
            step = _step_id(raw, parts[1])
            parts = parts[3:]  # drop "steps", the index and the union's tag
        field = ".".join(str(p) for p in parts)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "is required"
        problems.append(Problem(f"{field}: {message}" if field else message, step, file))
    return problems


def _step_id(raw: dict[str, Any], index: int) -> str:
    steps = raw.get("steps")
    if isinstance(steps, list) and index < len(steps) and isinstance(steps[index], dict):
        step_id = steps[index].get("id")
        if isinstance(step_id, str):
            return step_id
    return f"#{index + 1}"
