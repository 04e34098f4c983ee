"""The engine's view of workflows, read from the store and cached (versions never change)."""

from __future__ import annotations

from collections.abc import Sequence

from flowmail.engine.catalog import Mode, Version
from flowmail.language.loader import parse_workflow
from flowmail.language.models import Workflow
from flowmail.store.records import WorkflowRow
from flowmail.store.sql import SqlStore


class StoreCatalog:
    """Workflows of one workspace; :meth:`refresh` re-reads their modes and versions."""

    def __init__(self, store: SqlStore, workspace_id: str) -> None:
        self.store = store
        self.workspace_id = workspace_id
        self._rows: dict[str, WorkflowRow] = {}
        self._parsed: dict[tuple[str, int], Workflow] = {}

    def refresh(self, rows: Sequence[WorkflowRow] | None = None) -> None:
        if rows is None:
            rows = self.store.workflow_rows(self.workspace_id)
        self._rows = {row.id: row for row in rows if row.workspace_id == self.workspace_id}

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
        return Version(workflow, number, Mode(row.mode))

    def current(self, workflow_id: str) -> Version | None:
        row = self._rows.get(workflow_id)
        return None if row is None else self.version(workflow_id, row.version)

    def enrolling(self) -> Sequence[Version]:
        versions = [self.current(row.id) for row in self._rows.values() if row.mode == "active"]
        return [v for v in versions if v is not None]
