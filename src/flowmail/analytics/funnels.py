"""Funnels: what runs did at each step of a workflow, and what became of its emails.

Read from the hourly counters (:mod:`flowmail.store.analytics`) and the live runs index,
never from the journal or the delivery events, so a page costs the same with ten
contacts or ten million. What the figures mean:

* workflow ``entered``: runs started (``run:enrolled``); ``completed`` / ``converted`` /
  ``exited`` / ``failed``: runs that ended so, wherever they ended; ``active`` /
  ``waiting``: runs in the workflow now.
* step ``entered``: visits (a run that passes a step twice counts twice): the step's own
  action (``email``, ``wait``, ``branch`` ...), or ending on arrival (an exit step, a step
  that failed). A run held at a step by a frozen workflow enters it when it resumes.
* step ``completed`` ... ``failed``: runs that ended while at the step; ``active`` /
  ``waiting``: runs at the step now.
* ``dwell_seconds``: the mean time from arriving at a step to leaving it (moving on, or
  ending there), over the visits that left; None before any did.
* ``edges``: how often runs moved from the step to each next step, most taken first.
* ``email``: the step's messages (:class:`~flowmail.analytics.model.EmailFigures`);
  ``skipped`` holds the send-time policy's codes plus ``held_out`` (a holdout run) and
  ``no_address`` (the contact had none, so nothing was queued).

With ``version=None`` every version is summed and the steps are those of the latest
version, followed by steps only older versions had. ``since`` / ``until`` select whole
hours (see :mod:`flowmail.store.analytics`): counts are of what happened in them; the
live counts are always of now. Conversions, revenue and variants are left to
:mod:`flowmail.analytics.attribution` and :mod:`flowmail.analytics.splits`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from flowmail.analytics.model import EmailFigures, LinkFigures, StepFigures, WorkflowFigures
from flowmail.language.loader import WorkflowInvalid, parse_workflow
from flowmail.language.models import step_kind
from flowmail.store import analytics as sql
from flowmail.store.records import WorkflowRow
from flowmail.store.sql import SqlStore

EXECUTING = (
    "email", "wait", "wait_for", "branch", "split", "update", "tag", "untag", "webhook",
    "enroll",
)  # fmt: skip
ENDED = ("completed", "converted", "exited", "failed")
ARRIVED = "arrived"  # the label of an ending on arrival at a step
NOT_QUEUED = ("held_out", "no_address")  # run:email labels of an email step that sent nothing
UNCODED = "other"  # a skip recorded without a code


class Tally:
    """One workflow's counters, summed over versions: (step, metric) -> label -> value."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], dict[str, int]] = {}

    def add(self, step_id: str, metric: str, label: str, value: int) -> None:
        labels = self.values.setdefault((step_id, metric), {})
        labels[label] = labels.get(label, 0) + value

    def labels(self, step_id: str, metric: str) -> dict[str, int]:
        return self.values.get((step_id, metric), {})

    def total(self, step_id: str, metric: str) -> int:
        return sum(self.labels(step_id, metric).values())

    def everywhere(self, metric: str) -> int:
        """``metric`` summed over every step (and the workflow level)."""
        return sum(sum(v.values()) for (_, m), v in self.values.items() if m == metric)

    def steps(self) -> list[str]:
        return list(dict.fromkeys(step for step, _ in self.values if step))


def workflow_figures(
    store: SqlStore,
    workspace_id: str,
    *,
    workflow_id: str | None = None,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[WorkflowFigures]:
    """One :class:`WorkflowFigures` per workflow of the workspace (or the one asked for),
    in id order; ``version`` None sums every version."""
    rows = [r for r in store.workflow_rows(workspace_id) if workflow_id in (None, r.id)]
    if not rows:
        return []
    tallies: dict[str, Tally] = {}
    for count in sql.counts(
        store, workspace_id, workflow_id=workflow_id, version=version, since=since, until=until
    ):
        tally = tallies.setdefault(count.workflow_id, Tally())
        tally.add(count.step_id, count.metric, count.label, count.value)
    now: dict[str, dict[tuple[str, str], int]] = {}
    for live in sql.live(store, workspace_id, [r.id for r in rows], version=version):
        at = now.setdefault(live.workflow_id, {})
        key = (live.step_id, live.status)
        at[key] = at.get(key, 0) + live.runs
    return [
        _workflow(store, row, version, tallies.get(row.id, Tally()), now.get(row.id, {}))
        for row in rows
    ]


def _workflow(
    store: SqlStore,
    row: WorkflowRow,
    version: int | None,
    tally: Tally,
    now: dict[tuple[str, str], int],
) -> WorkflowFigures:
    figures = WorkflowFigures(row.id, version, mode=row.mode)
    figures.entered = tally.total("", "run:enrolled")
    for end in ENDED:
        setattr(figures, end, tally.everywhere(f"run:{end}"))
    figures.active = sum(n for (_, status), n in now.items() if status == "active")
    figures.waiting = sum(n for (_, status), n in now.items() if status == "waiting")
    kinds = step_kinds(store, row.workspace_id, row.id, row.version if version is None else version)
    others = [s for s in [*tally.steps(), *(step for step, _ in now)] if s and s not in kinds]
    if others and version is None:
        older = range(row.version - 1, 0, -1)
        kinds.update(_older_kinds(store, row.workspace_id, row.id, older, set(others)))
    for step_id in dict.fromkeys([*kinds, *others]):
        figures.steps.append(step_figures(step_id, kinds.get(step_id, ""), tally, now))
    return figures


def step_kinds(
    store: SqlStore, workspace_id: str, workflow_id: str, version: int
) -> dict[str, str]:
    """Step id -> kind, in definition order ({} for a version that is missing or that
    the language no longer reads)."""
    definition = store.workflow_definition(workspace_id, workflow_id, version)
    if definition is None:
        return {}
    try:
        workflow = parse_workflow(definition, workflow_id)
    except WorkflowInvalid:
        return {}
    return {step.id: step_kind(step) for step in workflow.steps}


def _older_kinds(
    store: SqlStore, workspace_id: str, workflow_id: str, versions: Iterable[int], wanted: set[str]
) -> dict[str, str]:
    found: dict[str, str] = {}
    for number in versions:
        kinds = step_kinds(store, workspace_id, workflow_id, number)
        found.update((s, kinds[s]) for s in wanted - set(found) if s in kinds)
        if set(found) == wanted:
            break
    return found


def step_figures(
    step_id: str, kind: str, tally: Tally, now: dict[tuple[str, str], int]
) -> StepFigures:
    step = StepFigures(step_id, kind)
    step.entered = sum(tally.total(step_id, f"run:{a}") for a in EXECUTING) + sum(
        tally.labels(step_id, f"run:{end}").get(ARRIVED, 0) for end in ENDED
    )
    step.active = now.get((step_id, "active"), 0)
    step.waiting = now.get((step_id, "waiting"), 0)
    for end in ENDED:
        setattr(step, end, tally.total(step_id, f"run:{end}"))
    edges = tally.labels(step_id, "run:edge")
    step.edges = dict(sorted(edges.items(), key=lambda item: (-item[1], item[0])))
    left = sum(edges.values()) + sum(tally.total(step_id, f"run:{end}") for end in ENDED)
    if left:
        step.dwell_seconds = tally.total(step_id, "run:dwell_us") / left / 1_000_000
    if kind == "email":
        step.email = email_figures(step_id, tally)
    return step


def email_figures(step_id: str, tally: Tally) -> EmailFigures:
    def count(metric: str) -> int:
        return tally.total(step_id, f"msg:{metric}")

    email = EmailFigures(
        queued=count("queued"),
        sent=count("sent"),
        delivered=count("delivered"),
        opened=count("opened_unique"),
        opened_total=count("opened"),
        opened_automated=count("opened_auto"),
        clicked=count("clicked_unique"),
        clicked_total=count("clicked"),
        bounced=count("bounced"),
        complained=count("complained"),
        unsubscribed=count("unsubscribed"),
        failed=count("failed") + count("dead"),
    )
    for code, n in tally.labels(step_id, "msg:skipped").items():
        email.skipped[code or UNCODED] = email.skipped.get(code or UNCODED, 0) + n
    for reason, n in tally.labels(step_id, "run:email").items():
        if reason in NOT_QUEUED:
            email.skipped[reason] = email.skipped.get(reason, 0) + n
    unique = tally.labels(step_id, "msg:link_unique")
    email.links = sorted(
        (
            LinkFigures(url, unique.get(url, 0), total)
            for url, total in tally.labels(step_id, "msg:link").items()
        ),
        key=lambda link: (-link.total, -link.unique, link.url),
    )
    return email
