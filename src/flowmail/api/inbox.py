"""Group commit: events from concurrent ingest calls are written together.

At most one write to the inbox is in flight per event loop; calls that arrive while it
runs wait, and all of them go into the next write. Under load one transaction carries
the events of many calls (the database's commit cost is shared); when idle, a call is
written at once. Each call is still all-or-nothing: its events are in one transaction
with the others', which commits or fails as a whole, and a failure is raised to every
call in it. Repeats of a messageId within a write count as duplicates, like repeats of
one already stored.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from flowmail.clock import Clock
from flowmail.store.records import InboundEvent
from flowmail.store.sql import SqlStore

MAX_EVENTS = 5_000  # per write: bounds a transaction


@dataclass(frozen=True)
class Written:
    accepted: int
    duplicates: int
    kinds: Counter[str]  # accepted events by kind


@dataclass
class _Call:
    workspace_id: str
    events: Sequence[InboundEvent]
    future: asyncio.Future[Written] | None = None


@dataclass
class _Queue:
    """The calls waiting on one event loop, and the task writing them."""

    calls: deque[_Call] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class GroupWriter:
    def __init__(self, store: SqlStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary()
        )

    async def write(self, workspace_id: str, events: Sequence[InboundEvent]) -> Written:
        """Write one call's events (with others waiting now); raises what the store raised."""
        loop = asyncio.get_running_loop()
        queue = self._queues.setdefault(loop, _Queue())
        call = _Call(workspace_id, events, loop.create_future())
        queue.calls.append(call)
        if queue.task is None or queue.task.done():
            queue.task = loop.create_task(self._drain(queue))
        assert call.future is not None
        return await call.future

    def write_now(self, workspace_id: str, events: Sequence[InboundEvent]) -> Written:
        """Write one call's events in this thread, on their own."""
        return self._write([_Call(workspace_id, events)])[0]

    async def _drain(self, queue: _Queue) -> None:
        while queue.calls:
            taken: list[_Call] = []
            size = 0
            while queue.calls and (not taken or size + len(queue.calls[0].events) <= MAX_EVENTS):
                call = queue.calls.popleft()
                taken.append(call)
                size += len(call.events)
            try:
                results = await run_in_threadpool(self._write, taken)
            except Exception as exc:
                for call in taken:
                    if call.future is not None and not call.future.done():
                        call.future.set_exception(exc)
                continue
            for call, result in zip(taken, results, strict=True):
                if call.future is not None and not call.future.done():
                    call.future.set_result(result)

    def _write(self, calls: Sequence[_Call]) -> list[Written]:
        """One transaction per workspace among ``calls`` (usually one)."""
        now = self.clock.now()
        seen: set[tuple[str, str]] = set()
        fresh: list[list[InboundEvent]] = []  # per call: its events that go to the store
        by_workspace: dict[str, list[InboundEvent]] = {}
        for call in calls:
            mine = []
            for event in call.events:
                if event.id is not None:
                    if (call.workspace_id, event.id) in seen:
                        continue  # a repeat within this write
                    seen.add((call.workspace_id, event.id))
                mine.append(event)
                by_workspace.setdefault(call.workspace_id, []).append(event)
            fresh.append(mine)
        stored: set[tuple[str, str | None]] = set()
        for workspace_id, events in by_workspace.items():
            result = self.store.ingest(events, now)
            repeated = set(result.duplicate_ids)
            stored.update(
                (workspace_id, e.id) for e in events if e.id is None or e.id not in repeated
            )
        written = []
        for call, mine in zip(calls, fresh, strict=True):
            kinds = Counter(e.kind for e in mine if (call.workspace_id, e.id) in stored)
            accepted = sum(kinds.values())
            written.append(Written(accepted, len(call.events) - accepted, kinds))
        return written
