"""A/B split statistics and the auto-winner rule.

Each arm of a split step (told apart by the step it goes to) has runs that took it,
runs that converted (ended at the workflow's goal) and runs that clicked an email after
the split; the counts come from ``stats`` (see :mod:`flowmail.store.splits`).

The test is a pooled two-proportion z-test: with ``x`` successes of ``n`` runs per arm,
``p = (x1 + x2) / (n1 + n2)``, ``z = (x1/n1 - x2/n2) / sqrt(p (1 - p) (1/n1 + 1/n2))`` and
the two-sided p-value ``erfc(|z| / sqrt(2))``. Every arm is tested against the control
(the first arm); a difference is significant when the p-value is below ``1 - confidence``.
The winner is the arm with the best rate that is significantly better than every other
arm, once each arm has ``min_runs`` runs. No correction is made for testing several arms
or for looking again every minute: ``min_runs`` and a high ``confidence`` guard against
calling a winner on noise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowmail.analytics.model import VariantFigures, WorkflowFigures
from flowmail.engine.catalog import Mode
from flowmail.language.loader import parse_workflow
from flowmail.language.models import SplitStep, WinnerRule, Workflow
from flowmail.store.splits import (
    ArmCounts,
    Winner,
    arm_counts,
    load_winners,
    save_winner,
)
from flowmail.store.sql import SqlStore

DEFAULT_RULE = WinnerRule()


# --- the statistics (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    target: str
    runs: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.runs if self.runs else 0.0


@dataclass(frozen=True)
class ZTest:
    z: float
    p_value: float

    def significant(self, confidence: float) -> bool:
        return self.p_value < 1 - confidence


def z_test(x1: int, n1: int, x2: int, n2: int) -> ZTest | None:
    """Pooled two-proportion z-test of ``x1/n1`` against ``x2/n2`` (``z > 0``: the first is
    higher); None while either side has no runs."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    spread = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if spread <= 0:  # both rates 0 or both 1: no difference to see
        return ZTest(0.0, 1.0)
    z = (x1 / n1 - x2 / n2) / math.sqrt(spread)
    return ZTest(z, math.erfc(abs(z) / math.sqrt(2)))


def against_control(arms: Sequence[Arm]) -> list[ZTest | None]:
    """Each arm tested against the first (the control has None)."""
    if not arms:
        return []
    control = arms[0]
    return [None] + [
        z_test(arm.successes, arm.runs, control.successes, control.runs) for arm in arms[1:]
    ]


def pick_winner(arms: Sequence[Arm], confidence: float, min_runs: int = 1) -> str | None:
    """The arm significantly better than every other arm, once each has ``min_runs``."""
    if len(arms) < 2 or any(arm.runs < max(min_runs, 1) for arm in arms):
        return None
    best = max(arms, key=lambda arm: arm.rate)
    for other in arms:
        if other is best:
            continue
        test = z_test(best.successes, best.runs, other.successes, other.runs)
        if test is None or test.z <= 0 or not test.significant(confidence):
            return None
    return best.target


# --- figures ---------------------------------------------------------------------------


def _metric(step: SplitStep, workflow: Workflow) -> str:
    if step.winner is not None:
        return step.winner.metric
    return "converted" if workflow.goal is not None else "clicked"


def _arms(step: SplitStep, counts: dict[str, ArmCounts], metric: str) -> list[Arm]:
    targets = list(dict.fromkeys(case.then for case in step.split))
    targets += sorted(set(counts) - set(targets))  # arms of other versions
    arms = []
    for target in targets:
        found = counts.get(target, ArmCounts())
        arms.append(Arm(target, found.entered, getattr(found, metric)))
    return arms


def split_figures(
    workflow: Workflow,
    step: SplitStep,
    counts: dict[str, ArmCounts],
    decided: str | None = None,
) -> list[VariantFigures]:
    """One split's arms with their tests against the control (pure)."""
    rule = step.winner or DEFAULT_RULE
    metric = _metric(step, workflow)
    arms = _arms(step, counts, metric)
    winner = decided or pick_winner(arms, rule.confidence, rule.min_runs)
    figures = []
    for arm, test in zip(arms, against_control(arms), strict=True):
        found = counts.get(arm.target, ArmCounts())
        figures.append(
            VariantFigures(
                split_step=step.id,
                target=arm.target,
                entered=found.entered,
                converted=found.converted,
                clicked=found.clicked,
                metric=metric,
                rate=arm.rate,
                z=None if test is None else test.z,
                p_value=None if test is None else test.p_value,
                significant=test is not None and test.significant(rule.confidence),
                winner=arm.target == winner,
            )
        )
    return figures


def _definition(
    store: SqlStore, workspace_id: str, workflow_id: str, version: int
) -> Workflow | None:
    definition = store.workflow_definition(workspace_id, workflow_id, version)
    if definition is None:
        return None
    return parse_workflow(definition, f"{workflow_id} v{version}")


def fill_variants(
    store: SqlStore,
    workspace_id: str,
    figures: list[WorkflowFigures],
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Set each workflow's ``variants``: every arm of every split step of its version (the
    current version's splits when ``version`` is None, counted over all versions)."""
    current = {row.id: row.version for row in store.workflow_rows(workspace_id)}
    winners = load_winners(store, workspace_id).get(workspace_id, {})
    for figure in figures:
        number = figure.version if figure.version is not None else current.get(figure.workflow_id)
        workflow = None
        if number is not None:
            workflow = _definition(store, workspace_id, figure.workflow_id, number)
        if number is None or workflow is None:  # no such workflow or version
            figure.variants = []
            continue
        steps = [s for s in workflow.steps if isinstance(s, SplitStep)]
        wanted = [(figure.workflow_id, figure.version, s.id) for s in steps]
        found = arm_counts(store, workspace_id, wanted, since, until)
        decided = winners.get((figure.workflow_id, number), {})
        variants: list[VariantFigures] = []
        for step in steps:
            counts: dict[str, ArmCounts] = {}
            for (_, _, step_id), arms in found.items():
                if step_id == step.id:
                    for target, arm in arms.items():
                        total = counts.setdefault(target, ArmCounts())
                        total.entered += arm.entered
                        total.converted += arm.converted
                        total.clicked += arm.clicked
            variants += split_figures(workflow, step, counts, decided.get(step.id))
        figure.variants = variants


# --- the auto-winner rule --------------------------------------------------------------


def decide_winners(store: SqlStore, now: datetime) -> list[tuple[str, str, int, str, str]]:
    """Evaluate every split with a winner rule in the current version of each workflow
    that still runs (not archived or cancelled) and record a winner once one is
    significant. A decided winner never changes. Returns what this call decided:
    (workspace, workflow, version, split step, winning target)."""
    existing = load_winners(store)
    decided = []
    for row in sorted(store.workflow_rows(), key=lambda r: (r.workspace_id, r.id)):
        if row.mode in (Mode.ARCHIVED, Mode.CANCEL):
            continue
        definition = store.workflow_definition(row.workspace_id, row.id, row.version)
        if definition is None or "winner" not in json.dumps(definition):
            continue  # no rule: skip parsing
        workflow = parse_workflow(definition, f"{row.id} v{row.version}")
        known = existing.get(row.workspace_id, {}).get((row.id, row.version), {})
        steps = [
            s
            for s in workflow.steps
            if isinstance(s, SplitStep) and s.winner is not None and s.id not in known
        ]
        if not steps:
            continue
        wanted = [(row.id, row.version, s.id) for s in steps]
        found = arm_counts(store, row.workspace_id, wanted)
        for step in steps:
            counts = found.get((row.id, row.version, step.id), {})
            winner = _decide(row.workspace_id, workflow, row.version, step, counts, now)
            if winner is not None and save_winner(store, winner):
                decided.append(
                    (
                        winner.workspace_id,
                        winner.workflow_id,
                        winner.version,
                        step.id,
                        winner.target,
                    )
                )
    return decided


def _decide(
    workspace_id: str,
    workflow: Workflow,
    version: int,
    step: SplitStep,
    counts: dict[str, ArmCounts],
    now: datetime,
) -> Winner | None:
    rule = step.winner
    assert rule is not None
    targets = {case.then for case in step.split}
    arms = [arm for arm in _arms(step, counts, rule.metric) if arm.target in targets]
    target = pick_winner(arms, rule.confidence, rule.min_runs)
    if target is None:
        return None
    best = next(arm for arm in arms if arm.target == target)
    detail: dict[str, Any] = {
        "metric": rule.metric,
        "confidence": rule.confidence,
        "min_runs": rule.min_runs,
        "arms": [
            {"target": a.target, "runs": a.runs, rule.metric: a.successes, "rate": a.rate}
            for a in arms
        ],
        "tests": [
            {"against": other.target, "z": test.z, "p_value": test.p_value}
            for other in arms
            if other is not best
            and (test := z_test(best.successes, best.runs, other.successes, other.runs))
        ],
    }
    return Winner(workspace_id, workflow.id, version, step.id, target, now, detail)
