"""The sender: claims due messages, checks them, renders them and hands them to a provider.

One batch:

1. ``sending`` messages whose lease ran out become ``unknown`` (their sender died, maybe
   after the provider took them); with ``unknown_policy = resend`` they are claimed
   again like queued ones and go out with the same Message-ID and idempotency key.
2. Claim due messages, most important workflow first (a lease; SKIP LOCKED on PostgreSQL).
3. The send-time policy (:mod:`flowmail.delivery.policy`) skips or defers some; every
   verdict is recorded with its reason.
4. The rest are rendered, then handed over in chunks: each chunk is paced by the
   provider's token bucket, recorded as ``sending`` *before* the provider is called,
   sent, and its outcomes recorded (``sent``; ``queued`` again with exponential backoff
   and jitter for a transient failure, ``dead`` once the attempts are used up; ``failed``
   at once for a permanent one, and a hard bounce suppresses the address).
5. A circuit breaker per provider stops calls to a provider that keeps failing; while it
   is open the secondary provider (if configured) takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flowmail.clock import Clock
from flowmail.delivery import policy as rules
from flowmail.delivery.addresses import InvalidAddress, normalize_address
from flowmail.delivery.breaker import Breakers, Circuit
from flowmail.delivery.compose import Composed, ComposeError, Composer
from flowmail.delivery.model import OutgoingEmail, Provider, SendError, SendResult
from flowmail.delivery.ratelimit import RateLimits
from flowmail.engine.state import Contact
from flowmail.language.loader import parse_workflow
from flowmail.language.models import Workflow
from flowmail.runtime.actions import RetryPolicy
from flowmail.store import messages as queue
from flowmail.store.messages import Audience, Handoff, MessageKey, Outcome, QueuedMessage
from flowmail.store.sql import SqlStore

log = logging.getLogger("flowmail.sender")

DEFAULT_RETRY = RetryPolicy(max_attempts=8, base=timedelta(minutes=1), cap=timedelta(hours=1))


@dataclass(frozen=True)
class SenderOptions:
    batch: int = 500  # messages claimed at once
    chunk: int = 100  # messages marked ``sending`` together, then handed over concurrently
    flush: int = 16  # outcomes written together
    lease: timedelta = timedelta(seconds=30)
    poll: float = 0.2
    resend_unknown: bool = True  # unknown_policy: resend (True) or hold (False)
    retry: RetryPolicy = DEFAULT_RETRY
    policy: rules.PolicyConfig = field(default_factory=rules.PolicyConfig)


@dataclass
class Prepared:
    message: QueuedMessage
    composed: Composed

    @property
    def email(self) -> OutgoingEmail:
        return self.composed.email


@dataclass
class Counts:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    deferred: int = 0
    unknown: int = 0


class Sender:
    def __init__(
        self,
        store: SqlStore,
        clock: Clock,
        providers: Mapping[str, Provider],
        composer: Composer,
        *,
        primary: str,
        secondary: str | None = None,
        options: SenderOptions | None = None,
        limits: RateLimits | None = None,
        breakers: Breakers | None = None,
        sender_id: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.providers = dict(providers)
        self.composer = composer
        self.primary = primary
        self.secondary = secondary or None
        self.options = options or SenderOptions()
        self.limits = limits or RateLimits(0)
        self.breakers = breakers or Breakers()
        self.id = sender_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.counts = Counts()
        self._workflows: dict[tuple[str, str, int], Workflow | None] = {}

    # --- one batch -------------------------------------------------------------------

    async def step(self) -> int:
        """Handle one batch of due messages; returns how many were claimed."""
        now = self.clock.now()
        self.counts.unknown += len(queue.recover_expired(self.store, now))
        if self.route(now) is None:
            return 0  # every provider's circuit is open: leave the queue alone
        claimed = queue.claim_messages(
            self.store,
            self.id,
            now,
            self.options.batch,
            self.options.lease,
            resend_unknown=self.options.resend_unknown,
        )
        if not claimed:
            return 0
        audience = queue.load_audience(self.store, claimed, now, self.options.policy.window)
        verdicts, ready = self.check(claimed, audience, now)
        prepared = self.prepare(ready, audience, now, verdicts)
        queue.record_outcomes(self.store, self.id, verdicts, now, states=("queued", "unknown"))
        await self.deliver(prepared)
        return len(claimed)

    async def drain(self, max_batches: int = 100_000) -> int:
        """Send everything due now (tests, cron); returns messages claimed."""
        total = 0
        for _ in range(max_batches):
            handled = await self.step()
            if not handled:
                break
            total += handled
        return total

    # --- checking --------------------------------------------------------------------

    def check(
        self, claimed: Sequence[QueuedMessage], audience: Audience, now: datetime
    ) -> tuple[list[Outcome], list[QueuedMessage]]:
        """Apply the send-time policy, contact by contact; returns (verdicts, to send)."""
        config = self.options.policy
        by_contact: dict[tuple[str, str], list[QueuedMessage]] = {}
        for message in claimed:
            by_contact.setdefault((message.workspace_id, message.contact_id), []).append(message)
        outcomes: list[Outcome] = []
        ready: list[QueuedMessage] = []
        for key, group in by_contact.items():
            person = audience.contacts.get(key, {})
            recipient = rules.Recipient(
                timezone=person.get("timezone"),
                suppression=next(
                    (
                        audience.suppressions[(key[0], m.to_address.lower())]
                        for m in group
                        if m.to_address and (key[0], m.to_address.lower()) in audience.suppressions
                    ),
                    None,
                ),
                consents=audience.consents.get(key, {}),
                recent=tuple(audience.recent.get(key, ())),
            )
            by_key = {m.id: m for m in group}
            candidates = [_candidate(m) for m in group]
            for candidate, verdict in rules.decide_all(candidates, recipient, config, now):
                message = by_key[candidate.key]
                if isinstance(verdict, rules.Send):
                    ready.append(message)
                else:
                    outcomes.append(self._verdict(message, verdict))
        return outcomes, ready

    def _verdict(self, message: QueuedMessage, verdict: rules.Skip | rules.Defer) -> Outcome:
        if isinstance(verdict, rules.Skip):
            self.counts.skipped += 1
            return Outcome(
                message.key,
                message.contact_id,
                "skipped",
                "skipped",
                verdict.reason,
                detail={"code": verdict.code},
            )
        self.counts.deferred += 1
        return Outcome(
            message.key,
            message.contact_id,
            "queued",
            "deferred",
            verdict.reason,
            send_after=verdict.until,
            detail={"code": verdict.code},
        )

    # --- rendering -------------------------------------------------------------------

    def prepare(
        self,
        ready: Sequence[QueuedMessage],
        audience: Audience,
        now: datetime,
        failures: list[Outcome],
    ) -> list[Prepared]:
        """Render each message; one that cannot be made fails (added to ``failures``)."""
        prepared: list[Prepared] = []
        for message in ready:
            person = audience.contacts.get((message.workspace_id, message.contact_id), {})
            contact = Contact(
                message.contact_id,
                person.get("email"),
                person.get("timezone"),
                person.get("attributes", {}),
            )
            run = audience.runs.get((message.workspace_id, message.run_id))
            workflow = self._workflow(message)
            try:
                composed = self.composer.compose(message, contact, run, workflow, now)
            except ComposeError as exc:
                failures.append(self._failed(message, str(exc), "compose"))
                continue
            except Exception as exc:  # a bug in rendering must not stop the queue
                log.exception("message %s could not be rendered", message.id)
                failures.append(self._failed(message, f"{type(exc).__name__}: {exc}", "compose"))
                continue
            prepared.append(Prepared(message, composed))
        return prepared

    def _workflow(self, message: QueuedMessage) -> Workflow | None:
        key = (message.workspace_id, message.workflow_id, message.version)
        if key not in self._workflows:
            definition = self.store.workflow_definition(*key)
            try:
                self._workflows[key] = (
                    None if definition is None else parse_workflow(definition, message.workflow_id)
                )
            except Exception:  # an old definition the language no longer reads
                self._workflows[key] = None
        return self._workflows[key]

    def _failed(self, message: QueuedMessage, reason: str, code: str) -> Outcome:
        self.counts.failed += 1
        return Outcome(
            message.key, message.contact_id, "failed", "failed", reason, detail={"code": code}
        )

    # --- handing over ----------------------------------------------------------------

    def route(self, now: datetime) -> str | None:
        """The provider to use now: the primary unless its circuit is open."""
        for name in (self.primary, self.secondary):
            if name is not None and self.breakers[name].allows(now):
                return name
        return None

    async def deliver(self, prepared: Sequence[Prepared]) -> None:
        pending = list(prepared)
        while pending:
            now = self.clock.now()
            name = self.route(now)
            if name is None:
                log.warning("no provider available: %d message(s) wait", len(pending))
                queue.release(self.store, self.id, [p.message.key for p in pending])
                return
            bucket = self.limits[name]
            size = bucket.chunk(self.options.chunk)
            if self.breakers[name].state(now) == Circuit.HALF_OPEN:
                size = 1  # one probe
            chunk, pending = pending[:size], pending[size:]
            await self._hand_over(name, chunk)

    async def _hand_over(self, name: str, chunk: Sequence[Prepared]) -> None:
        now = self.clock.now()
        handoffs = [
            Handoff(
                p.message.key,
                p.message.contact_id,
                p.email.message_id,
                name,
                p.message.attempts + 1,
                p.composed.template_version,
                p.composed.fallback,
            )
            for p in chunk
        ]
        mine = set(queue.mark_sending(self.store, self.id, handoffs, now, self.options.lease))
        going = [p for p in chunk if p.message.key in mine]
        provider, bucket = self.providers[name], self.limits[name]

        async def one(item: Prepared) -> tuple[Prepared, SendResult | SendError]:
            await bucket.take(1)
            return item, await _send(provider, name, item.email)

        # Outcomes are written as they come in, a few at a time: a sender killed now
        # leaves few messages that reached the provider without a record (``unknown``).
        # The writes run in a thread, so the sends in flight keep going meanwhile.
        done: list[Outcome] = []
        writes: list[asyncio.Task[list[MessageKey]]] = []
        for next_done in asyncio.as_completed([one(p) for p in going]):
            item, result = await next_done
            done.append(self._outcome(item, result, name, self.clock.now()))
            if len(done) >= self.options.flush:
                writes.append(self._record(done))
                done = []
        writes.append(self._record(done))
        await asyncio.gather(*writes)

    def _record(self, outcomes: list[Outcome]) -> asyncio.Task[list[MessageKey]]:
        return asyncio.create_task(
            asyncio.to_thread(
                queue.record_outcomes, self.store, self.id, outcomes, self.clock.now()
            )
        )

    def _outcome(
        self, item: Prepared, result: SendResult | SendError, name: str, now: datetime
    ) -> Outcome:
        message, breaker = item.message, self.breakers[name]
        attempt = message.attempts + 1
        if isinstance(result, SendResult):
            breaker.success()
            self.counts.sent += 1
            return Outcome(
                message.key,
                message.contact_id,
                "sent",
                "sent",
                provider=result.provider or name,
                provider_id=result.provider_id,
                detail={"attempt": attempt, "message_id": item.email.message_id},
            )
        reason = _describe(result, name)
        detail = {"attempt": attempt, "code": result.code, "provider": name}
        if result.permanent:
            self.counts.failed += 1
            bounce = None
            if result.hard_bounce and message.to_address:
                bounce = (message.to_address, rules.HARD_BOUNCE, f"{name}: {reason}")
            detail["hard_bounce"] = result.hard_bounce
            return Outcome(
                message.key, message.contact_id, "failed", "failed", reason,
                provider=name, detail=detail, suppress=bounce,
            )  # fmt: skip
        if breaker.failure(now, reason):
            log.warning("circuit of provider %s opened: %s", name, reason)
        if attempt >= self.options.retry.max_attempts:
            self.counts.dead += 1
            return Outcome(
                message.key, message.contact_id, "dead", "dead", reason, provider=name,
                detail=detail,
            )  # fmt: skip
        self.counts.retried += 1
        return Outcome(
            message.key,
            message.contact_id,
            "queued",
            "retry",
            reason,
            send_after=now + self.options.retry.delay(message.id, attempt),
            provider=name,
            detail=detail,
        )

    # --- the loop --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set; the chunk in hand is finished first."""
        log.info("sender %s started", self.id)
        while not stop.is_set():
            try:
                counts = {"sent": self.counts.sent, "failed": self.counts.failed}
                self.store.heartbeat(self.id, "sender", self.clock.now(), counts)
                busy = await self.step()
            except Exception:  # the database may be briefly unreachable: try again
                log.exception("sender batch failed")
                busy = 0
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._idle())
        log.info("sender %s stopped: %s", self.id, self.counts)

    def _idle(self) -> float:
        """Seconds to sleep: until the next message is due, at most ``poll``."""
        now = self.clock.now()
        timeout = self.options.poll
        due = queue.next_due(self.store, resend_unknown=self.options.resend_unknown)
        if due is not None:
            timeout = min(timeout, max(0.0, (due - now).total_seconds()))
        if self.route(now) is None:
            waits = [
                self.breakers[n].retry_at() for n in (self.primary, self.secondary) if n is not None
            ]
            timeout = max(timeout, (min(waits) - now).total_seconds())
        return max(0.01, timeout)

    async def close(self) -> None:
        for provider in self.providers.values():
            await provider.close()


def _candidate(message: QueuedMessage) -> rules.Candidate:
    to = message.to_address
    if to:
        try:
            normalize_address(to)
        except InvalidAddress:
            to = None
    return rules.Candidate(
        message.id,
        to,
        message.topic,
        message.priority,
        message.on_capped,
        message.send_after,
    )


async def _send(provider: Provider, name: str, email: OutgoingEmail) -> SendResult | SendError:
    try:
        return await provider.send(email)
    except SendError as exc:
        return exc
    except Exception as exc:  # a provider bug: treat as transient, keep going
        log.exception("provider %s failed", name)
        return SendError(f"{type(exc).__name__}: {exc}", provider=name)


def _describe(error: SendError, provider: str) -> str:
    code = f" {error.code}" if error.code else ""
    return f"{error.provider or provider}{code}: {error}"


__all__ = ["Counts", "MessageKey", "Sender", "SenderOptions"]
