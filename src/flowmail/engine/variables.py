"""The variables templates and conditions see."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flowmail.engine.state import Contact, Event, Run
from flowmail.language.models import Workflow


def event_variables(event: Event | None) -> dict[str, Any]:
    if event is None:
        return {}
    return {"name": event.name, "at": event.at.isoformat(), **event.properties}


def template_variables(
    contact: Contact, run: Run | None, workflow: Workflow | None, now: datetime
) -> dict[str, Any]:
    """``contact`` (alias ``user``), ``event`` (the run's trigger), ``run``, ``workflow``,
    ``now``."""
    person = contact.as_variables()
    return {
        "contact": person,
        "user": person,
        "event": event_variables(run.trigger if run else None),
        "run": run.as_variables() if run else {},
        "workflow": {"id": workflow.id, "name": workflow.title} if workflow else {},
        "now": now.isoformat(),
    }
