"""The article's workflow format, translated into the workflow language.

flowmail grew from an article whose ``AutomationWorkflow`` / ``WorkflowStep`` classes
describe workflows as ``{workflow_id, name, description, trigger_config, steps}`` with
steps of ``{step_id, step_type, config, next_steps, conditions}``. Those mappings still
load: :func:`translate_article` turns one into a plain dict that ``Workflow.model_validate``
accepts, keeping the article's intent rather than its bugs.

One bug is fixed on purpose. In the article, a condition step jumps to its
``true_step`` and execution then runs on down the list into the ``false_step`` (the
welcome series sends both the engaged and the re-engagement email). Here the targets of a
condition never fall through into each other: the last step of one branch before another
branch's target gets ``next: end``.

The function is pure: no I/O, and anything that cannot be translated raises
:class:`ValueError` naming the step (or ``trigger_config``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowmail.language.conditions import ConditionError, parse_condition
from flowmail.language.durations import format_duration
from flowmail.language.models import END

STEP_TYPES = ("email", "wait", "condition", "action")
WAIT_TYPES = ("duration", "until_time", "business_hours")
CONDITION_TYPES = ("user_attribute", "event_history", "engagement_score")
CONTENT_TYPES = ("product_recommendation", "abandoned_cart")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::00)?$")


def is_article_format(raw: object) -> bool:
    """True for a mapping in the article's format: it has ``workflow_id`` and no ``id``."""
    return isinstance(raw, Mapping) and "workflow_id" in raw and "id" not in raw


def translate_article(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Translate one article-format workflow into a workflow-language mapping."""
    if not is_article_format(raw):
        raise ValueError("not the article's format: it needs 'workflow_id' and no 'id'")
    trigger_config = _mapping(raw.get("trigger_config"), "trigger_config")
    out: dict[str, Any] = {"id": raw["workflow_id"]}
    for key in ("name", "description"):
        if raw.get(key) is not None:
            out[key] = raw[key]
    out["trigger"] = _trigger(trigger_config)
    if trigger_config.get("allow_re_entry") or raw.get("allow_re_entry"):
        out["re_entry"] = "always"
    out["steps"] = _steps(raw.get("steps"))
    return out


# --- helpers -----------------------------------------------------------------------


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping, got {value!r}")
    return value


def _days(value: object, where: str) -> str:
    """A positive number of days as a duration string, like ``7d``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{where} must be a positive number of days, got {value!r}")
    number = float(value)
    return f"{int(number) if number.is_integer() else number}d"


def _count(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where} must be a whole number of at least 1, got {value!r}")
    return value


def _aware_iso(value: object, where: str) -> str:
    """An ISO date-time string with a time zone (``Z`` is added to a naive one)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not an ISO 8601 date-time") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{where}: {value!r} is not an ISO 8601 date-time")
    return value.isoformat() + ("Z" if value.tzinfo is None else "")


def _equals(value: Any) -> Any:
    """The article compares trigger properties with ``==``, even for mappings."""
    return {"eq": value} if isinstance(value, Mapping) else value


# --- triggers ----------------------------------------------------------------------


def _trigger(config: Mapping[str, Any]) -> dict[str, Any]:
    kind = config.get("type")
    if kind in ("event", "event_based"):
        return _event_trigger(config)
    if kind in ("behavior", "behavior_based"):
        return _behavior_trigger(config)
    if kind in ("attribute", "attribute_based"):
        return _attribute_trigger(config)
    if kind in ("time", "time_based"):
        return _time_trigger(config)
    raise ValueError(
        f"trigger_config: unknown type {kind!r}; known types: event, behavior, attribute, "
        "time (or event_based, behavior_based, attribute_based, time_based)"
    )


def _event_trigger(config: Mapping[str, Any]) -> dict[str, Any]:
    event = config.get("event_type")
    if not isinstance(event, str) or not event:
        raise ValueError("trigger_config: an event trigger needs 'event_type'")
    out: dict[str, Any] = {"event": event}
    conditions = _mapping(config.get("conditions"), "trigger_config.conditions")
    where: dict[str, Any] = {}
    for section, root in (("user_properties", "contact"), ("event_properties", "event")):
        properties = _mapping(conditions.get(section), f"trigger_config.conditions.{section}")
        where.update({f"{root}.{key}": _equals(value) for key, value in properties.items()})
    if where:
        out["where"] = where
    timing = _mapping(conditions.get("timing"), "trigger_config.conditions.timing")
    if "allowed_hours" in timing:
        out["hours"] = _hour_window(timing["allowed_hours"])
    return out


def _hour_window(hours: object) -> dict[str, int]:
    """A list of allowed hours as one ``[start, end)`` window (it may wrap past midnight)."""
    where = "trigger_config: conditions.timing.allowed_hours"
    if (
        not isinstance(hours, (list, tuple))
        or not hours
        or not all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= 23 for h in hours)
    ):
        raise ValueError(f"{where} must be a non-empty list of hours from 0 to 23")
    allowed = set(hours)
    if len(allowed) == 24:
        return {"start": 0, "end": 24}
    starts = [h for h in sorted(allowed) if (h - 1) % 24 not in allowed]
    if len(starts) != 1:
        raise ValueError(
            f"{where} {sorted(allowed)} are not one contiguous range of hours; "
            "an hours window is one range like [9, 10, ..., 17]"
        )
    start = starts[0]
    return {"start": start, "end": (start + len(allowed)) % 24 or 24}


def _behavior_trigger(config: Mapping[str, Any]) -> dict[str, Any]:
    behavior = _mapping(config.get("behavior_config"), "trigger_config.behavior_config")
    if behavior.get("type") != "engagement_threshold":
        raise ValueError(
            f"trigger_config: unknown behavior_config type {behavior.get('type')!r}; "
            "the known type is engagement_threshold"
        )
    spec = {
        "event": "email_opened",
        "count": _count(behavior.get("threshold", 3), "trigger_config: behavior threshold"),
        "within": _days(behavior.get("timeframe_days", 7), "trigger_config: timeframe_days"),
    }
    return {"behavior": spec}


def _attribute_trigger(config: Mapping[str, Any]) -> dict[str, Any]:
    name = config.get("attribute")
    if not isinstance(name, str) or not name or "value" not in config:
        raise ValueError("trigger_config: an attribute trigger needs 'attribute' and 'value'")
    return {"attribute": {"name": name, "becomes": config["value"]}}


def _time_trigger(config: Mapping[str, Any]) -> dict[str, Any]:
    has_cron, has_at = config.get("cron") is not None, config.get("at") is not None
    if has_cron == has_at:
        raise ValueError("trigger_config: a time trigger needs exactly one of 'cron' or 'at'")
    if has_cron:
        return {"schedule": {"cron": str(config["cron"])}}
    return {"schedule": {"at": _aware_iso(config["at"], "trigger_config: at")}}


# --- steps -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    id: str
    type: object
    config: Mapping[str, Any]
    next: str | None
    following: str  # the step after this one in list order, or "end"

    @property
    def where(self) -> str:
        return f"step {self.id!r}"


def _steps(raw_steps: object) -> list[dict[str, Any]]:
    if not isinstance(raw_steps, (list, tuple)) or not raw_steps:
        raise ValueError("'steps' must be a non-empty list of steps")
    ids = [_step_id(index, raw) for index, raw in enumerate(raw_steps)]
    seen: set[str] = set()
    for step_id in ids:
        if step_id in seen:
            raise ValueError(f"step {step_id!r}: the step_id is used more than once")
        seen.add(step_id)
    following = [*ids[1:], END]
    steps = [
        _parse_step(step_id, raw, after)
        for step_id, raw, after in zip(ids, raw_steps, following, strict=True)
    ]
    out = [_translate_step(step) for step in steps]
    for step, translated in zip(steps, out, strict=True):
        _check_targets(step, translated, seen)
    _stop_fall_through(out)
    return out


def _step_id(index: int, raw: object) -> str:
    if not isinstance(raw, Mapping):
        raise ValueError(f"steps[{index}] must be a mapping, got {raw!r}")
    step_id = raw.get("step_id")
    if not isinstance(step_id, str) or not step_id:
        raise ValueError(f"steps[{index}] has no 'step_id'")
    return step_id


def _parse_step(step_id: str, raw: Mapping[str, Any], following: str) -> _Step:
    where = f"step {step_id!r}"
    config = _mapping(raw.get("config"), f"{where}: config")
    next_steps = raw.get("next_steps") or []
    if isinstance(next_steps, str):
        next_steps = [next_steps]
    if not isinstance(next_steps, (list, tuple)):
        raise ValueError(f"{where}: next_steps must be a list of step ids")
    if len(next_steps) > 1:
        raise ValueError(
            f"{where}: next_steps has {len(next_steps)} entries; only one next step can be "
            "translated (use a condition step to choose between steps)"
        )
    next_step = next_steps[0] if next_steps else None
    return _Step(step_id, raw.get("step_type"), config, next_step, following)


def _translate_step(step: _Step) -> dict[str, Any]:
    translate = _STEP_TRANSLATORS.get(step.type) if isinstance(step.type, str) else None
    if translate is None:
        raise ValueError(
            f"{step.where}: unknown step_type {step.type!r}; known: {', '.join(STEP_TYPES)}"
        )
    out: dict[str, Any] = {"id": step.id, **translate(step)}
    if step.next is not None:
        out["next"] = step.next
    return out


def _targets(step: Mapping[str, Any]) -> list[Any]:
    cases = step.get("branch", [])
    found = [case.get("then", case.get("else")) for case in cases]
    return [*found, step["next"]] if "next" in step else found


def _check_targets(step: _Step, translated: Mapping[str, Any], ids: set[str]) -> None:
    for target in _targets(translated):
        if not isinstance(target, str) or (target != END and target not in ids):
            raise ValueError(f"{step.where}: it goes to {target!r}, which is not a step_id")


def _stop_fall_through(steps: list[dict[str, Any]]) -> None:
    """End each branch of a condition before it would run into another branch's target."""
    index = {step["id"]: position for position, step in enumerate(steps)}
    for step in steps:
        if "branch" not in step:
            continue
        targets = list(dict.fromkeys(t for t in _targets(step) if t != END))
        for start in targets:
            others = set(targets) - {start}
            position = index[start]
            while position + 1 < len(steps) and not _stops(steps[position]):
                if steps[position + 1]["id"] in others:
                    steps[position]["next"] = END
                    break
                position += 1


def _stops(step: Mapping[str, Any]) -> bool:
    """A step that never falls through to the next one in list order."""
    return "next" in step or "branch" in step or "exit" in step


# --- emails and waits --------------------------------------------------------------


def _email(step: _Step) -> dict[str, Any]:
    config = step.config
    spec: dict[str, Any] = {}
    if config.get("template_id") is not None:
        spec["template"] = str(config["template_id"])
    if config.get("subject_template") is not None:
        spec["subject"] = str(config["subject_template"])
    if not spec:
        raise ValueError(f"{step.where}: an email step needs template_id or subject_template")
    if config.get("content_type") in CONTENT_TYPES:
        spec["content"] = config["content_type"]
    return {"email": spec}


def _wait(step: _Step) -> dict[str, Any]:
    config = step.config
    kind = config.get("type", "duration")
    if kind == "duration":
        seconds = config.get("duration_seconds", 3600)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 1:
            raise ValueError(
                f"{step.where}: duration_seconds must be at least 1 second, got {seconds!r}"
            )
        return {"wait": format_duration(timedelta(seconds=seconds))}
    if kind == "until_time":
        return {"wait": _wait_until(step)}
    if kind == "business_hours":
        return {"wait": _wait_business_hours(step)}
    raise ValueError(f"{step.where}: unknown wait type {kind!r}; known: {', '.join(WAIT_TYPES)}")


def _wait_until(step: _Step) -> dict[str, Any]:
    target = step.config.get("target_time")
    if target is None:
        raise ValueError(f"{step.where}: an until_time wait needs 'target_time'")
    clock = _CLOCK.match(target) if isinstance(target, str) else None
    if clock is None:
        return {"until": _aware_iso(target, f"{step.where}: target_time")}
    hour, minute = int(clock[1]), int(clock[2])
    if hour > 23 or minute > 59:
        raise ValueError(f"{step.where}: target_time {target!r} is not a time of day")
    return {"until_time": f"{hour:02d}:{minute:02d}"}


def _wait_business_hours(step: _Step) -> dict[str, Any]:
    config = step.config
    hours = _mapping(config.get("business_hours"), f"{step.where}: business_hours")
    window: dict[str, Any] = {"start": hours.get("start", 9), "end": hours.get("end", 17)}
    if "days" in hours:
        window["days"] = hours["days"]
    wait: dict[str, Any] = {"business_hours": window}
    if config.get("timezone") is not None:
        wait["timezone"] = config["timezone"]
    return wait


# --- conditions --------------------------------------------------------------------


def _condition(step: _Step) -> dict[str, Any]:
    if_true = step.config.get("true_step") or step.following
    if_false = step.config.get("false_step") or step.following
    return {"branch": [{"if": _condition_of(step), "then": if_true}, {"else": if_false}]}


def _condition_of(step: _Step) -> dict[str, Any]:
    config = step.config
    kind = config.get("type")
    condition: dict[str, Any]
    if kind == "user_attribute":
        if not all(key in config for key in ("attribute", "operator", "value")):
            raise ValueError(
                f"{step.where}: a user_attribute condition needs attribute, operator and value"
            )
        operator = str(config["operator"])
        condition = {f"contact.{config['attribute']}": {operator: config["value"]}}
    elif kind == "event_history":
        if not isinstance(config.get("event_type"), str):
            raise ValueError(f"{step.where}: an event_history condition needs 'event_type'")
        history = {
            "event": config["event_type"],
            "within": _days(config.get("timeframe_days", 7), f"{step.where}: timeframe_days"),
            "min": config.get("min_count", 1),
        }
        condition = {"history": history}
    elif kind == "engagement_score":
        condition = {"engagement": {"gte": config.get("threshold", 0.5)}}
    else:
        raise ValueError(
            f"{step.where}: unknown condition type {kind!r}; known: {', '.join(CONDITION_TYPES)}"
        )
    try:
        parse_condition(condition)
    except ConditionError as exc:
        raise ValueError(f"{step.where}: {exc}") from None
    return condition


# --- actions -----------------------------------------------------------------------


def _action(step: _Step) -> dict[str, Any]:
    name = step.config.get("action", step.config.get("type"))
    translate = _ACTIONS.get(name) if isinstance(name, str) else None
    if translate is None:
        raise ValueError(
            f"{step.where}: unknown action {name!r}; known: {', '.join(sorted(_ACTIONS))}"
        )
    return translate(step)


def _update(step: _Step) -> dict[str, Any]:
    config = step.config
    attributes = config.get("attributes")
    if isinstance(attributes, Mapping) and attributes:
        return {"update": dict(attributes)}
    if isinstance(config.get("attribute"), str) and "value" in config:
        return {"update": {config["attribute"]: config["value"]}}
    raise ValueError(
        f"{step.where}: an attribute update needs 'attributes' (a mapping) "
        "or 'attribute' and 'value'"
    )


def _tags(step: _Step) -> str | list[str]:
    tags = step.config.get("tag", step.config.get("tags"))
    if isinstance(tags, str) and tags:
        return tags
    if isinstance(tags, (list, tuple)) and tags and all(isinstance(t, str) for t in tags):
        return list(tags)
    raise ValueError(f"{step.where}: a tag action needs 'tag' (a name) or 'tags' (a list)")


def _tag(step: _Step) -> dict[str, Any]:
    return {"tag": _tags(step)}


def _untag(step: _Step) -> dict[str, Any]:
    return {"untag": _tags(step)}


def _webhook(step: _Step) -> dict[str, Any]:
    config = step.config
    if not isinstance(config.get("url"), str):
        raise ValueError(f"{step.where}: a webhook action needs 'url'")
    spec: dict[str, Any] = {"url": config["url"]}
    if config.get("method") is not None:
        spec["method"] = str(config["method"]).upper()
    for key in ("headers", "body"):
        if config.get(key) is not None:
            spec[key] = config[key]
    return {"webhook": spec}


def _enroll(step: _Step) -> dict[str, Any]:
    workflow_id = step.config.get("workflow_id")
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ValueError(f"{step.where}: an enroll action needs 'workflow_id'")
    return {"enroll": workflow_id}


def _exit(step: _Step) -> dict[str, Any]:
    return {"exit": True}


_Translator = Callable[[_Step], dict[str, Any]]

_ACTIONS: dict[str, _Translator] = {
    "update_attribute": _update,
    "update_attributes": _update,
    "set_attribute": _update,
    "set_attributes": _update,
    "add_tag": _tag,
    "tag": _tag,
    "remove_tag": _untag,
    "untag": _untag,
    "webhook": _webhook,
    "enroll": _enroll,
    "start_workflow": _enroll,
    "exit": _exit,
    "end": _exit,
}

_STEP_TRANSLATORS: dict[str, _Translator] = {
    "email": _email,
    "wait": _wait,
    "condition": _condition,
    "action": _action,
}
