"""The engine's view of workflows, read from the store and cached (versions never change)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flowmail.engine.catalog import Mode, Version
from flowmail.language.loader import parse_workflow
from flowmail.language.models import Workflow
from flowmail.store.records import WorkflowRow
from flowmail.store.splits import VersionKey, load_winners
from flowmail.store.sql import SqlStore


class StoreCatalog:
    """Workflows of one workspace; :meth:`refresh` re-reads their modes, versions and the
    decided split winners (which reach the engine on each :class:`Version`)."""

    def __init__(self, store: SqlStore, workspace_id: str) -> None:
        self.store = store
        self.workspace_id = workspace_id
        self._rows: dict[str, WorkflowRow] = {}
        self._parsed: dict[tuple[str, int], Workflow] = {}
        self._winners: Mapping[VersionKey, Mapping[str, str]] = {}
        self._goals: frozenset[str] | None = None

    def refresh(
        self,
        rows: Sequence[WorkflowRow] | None = None,
        winners: Mapping[VersionKey, Mapping[str, str]] | None = None,
    ) -> None:
        if rows is None:
            rows = self.store.workflow_rows(self.workspace_id)
        if winners is None:
            winners = load_winners(self.store, self.workspace_id).get(self.workspace_id, {})
        mine = {row.id: row for row in rows if row.workspace_id == self.workspace_id}
        if mine != self._rows:
            self._goals = None
        self._rows = mine
        self._winners = winners

    def _workflow(self, workflow_id: str, number: int) -> Workflow | None:
        key = (workflow_id, number)
        if key not in self._parsed:
            definition = self.store.workflow_definition(self.workspace_id, workflow_id, number)
            if definition is None:
                return None
            self._parsed[key] = parse_workflow(definition, f"{workflow_id} v{number}")
        return self._parsed[key]

    def version(self, workflow_id: str, number: int) -> Version | None:
        row = self._rows.get(workflow_id)
        workflow = self._workflow(workflow_id, number)
        if row is None or workflow is None:
            return None
        winners = self._winners.get((workflow_id, number), {})
        return Version(workflow, number, Mode(row.mode), winners)

    def current(self, workflow_id: str) -> Version | None:
        row = self._rows.get(workflow_id)
        return None if row is None else self.version(workflow_id, row.version)

    def enrolling(self) -> Sequence[Version]:
        versions = [self.current(row.id) for row in self._rows.values() if row.mode == "active"]
        return [v for v in versions if v is not None]

    def goal_events(self) -> frozenset[str]:
        """The goal event names of the workflows that still have runs to convert (every
        mode but archived and cancel): such events are conversions."""
        if self._goals is None:
            names = set()
            for row in self._rows.values():
                if row.mode in (Mode.ARCHIVED, Mode.CANCEL):
                    continue
                version = self.current(row.id)
                goal = version.workflow.goal if version is not None else None
                if goal is not None and goal.event is not None:
                    names.add(goal.event)
            self._goals = frozenset(names)
        return self._goals
