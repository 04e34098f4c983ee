"""Which workflow versions exist and which may enrol contacts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from flowmail.language.models import Workflow


class Mode(StrEnum):
    """A workflow's state. ``drain``, ``freeze`` and ``cancel`` are the pause modes."""

    ACTIVE = "active"
    DRAIN = "drain"  # no new runs; runs in flight go on
    FREEZE = "freeze"  # no new runs; runs in flight hold before their next step
    CANCEL = "cancel"  # no new runs; runs in flight end as exited
    ARCHIVED = "archived"


Winners = Mapping[str, Mapping[str, str]]  # workflow id -> split step id -> winning target


@dataclass(frozen=True)
class Version:
    """A workflow version as the engine runs it. ``winners`` are the decided A/B winners of
    its split steps (split step id -> target): new runs at such a split take the winner."""

    workflow: Workflow
    number: int = 1
    mode: Mode = Mode.ACTIVE
    winners: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def id(self) -> str:
        return self.workflow.id


class Catalog(Protocol):
    def enrolling(self) -> Sequence[Version]:
        """The current version of every workflow that may start runs."""
        ...

    def version(self, workflow_id: str, number: int) -> Version | None:
        """A given version, so that runs finish on the version they started on."""
        ...

    def current(self, workflow_id: str) -> Version | None:
        """The latest version of a workflow, whatever its mode."""
        ...


class StaticCatalog:
    """A catalog of fixed workflows, each at version 1 (the simulator's), with the split
    winners a scenario may set."""

    def __init__(self, workflows: Iterable[Workflow], winners: Winners | None = None) -> None:
        winners = winners or {}
        self._versions = {w.id: Version(w, winners=dict(winners.get(w.id, {}))) for w in workflows}

    def enrolling(self) -> Sequence[Version]:
        return [v for v in self._versions.values() if v.mode == Mode.ACTIVE]

    def version(self, workflow_id: str, number: int) -> Version | None:
        return self._versions.get(workflow_id)

    def current(self, workflow_id: str) -> Version | None:
        return self._versions.get(workflow_id)
