"""Checks on a workflow's step graph that the models alone cannot express."""

from __future__ import annotations

from dataclasses import dataclass

from flowmail.language.models import (
    END,
    WAIT_KINDS,
    BranchStep,
    ExitStep,
    SplitStep,
    StepBase,
    WaitForStep,
    WaitStep,
    Workflow,
    step_kind,
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow, tied to a step where there is one."""

    message: str
    step: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.file, f"step {self.step}" if self.step else None) if p)
        return f"{where}: {self.message}" if where else self.message


def edges(workflow: Workflow, step: StepBase) -> list[str]:
    """Where ``step`` may go next: step ids or ``end``."""
    if isinstance(step, ExitStep):
        return [END]
    following = step.next or workflow.successor(step.id)
    if isinstance(step, BranchStep | SplitStep):
        return step.targets()
    if isinstance(step, WaitForStep):
        return [step.on_event or following, step.on_timeout or following]
    return [following]


def check_graph(workflow: Workflow) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for step in workflow.steps:
        if step.id == END:
            problems.append(Problem("'end' is reserved and cannot be a step id", step.id))
        if step.id in seen:
            problems.append(Problem(f"duplicate step id {step.id!r}", step.id))
        seen.add(step.id)
    for step in workflow.steps:
        for target in step.targets():
            if target != END and target not in seen:
                problems.append(Problem(f"goes to unknown step {target!r}", step.id))
        if isinstance(step, BranchStep):
            problems.extend(_check_branch(step))
        if isinstance(step, SplitStep) and step.winner is not None:
            problems.extend(_check_winner(workflow, step))
    if problems:
        return problems
    reachable = _reachable(workflow)
    for step in workflow.steps:
        if step.id not in reachable:
            problems.append(Problem("is unreachable: no step leads to it", step.id))
    problems.extend(_check_loops(workflow))
    return problems


def _check_branch(step: BranchStep) -> list[Problem]:
    problems = []
    *cases, last = step.branch
    if last.else_ is None:
        problems.append(Problem("branch has no final 'else' case", step.id))
    if any(case.else_ is not None for case in cases):
        problems.append(Problem("'else' must be the last case of a branch", step.id))
    if step.next is not None:
        problems.append(Problem("a branch goes where its cases say; remove 'next'", step.id))
    return problems


def _check_winner(workflow: Workflow, step: SplitStep) -> list[Problem]:
    """A winner is an arm, told apart by its target: it needs two arms with distinct ones."""
    problems = []
    targets = [case.then for case in step.split]
    if len(set(targets)) < 2 or len(set(targets)) != len(targets):
        message = "a split with a winner rule needs two or more arms, each to a different step"
        problems.append(Problem(message, step.id))
    rule = step.winner
    if rule is not None and rule.metric == "converted" and workflow.goal is None:
        problems.append(
            Problem("winner metric 'converted' needs a workflow goal (or use 'clicked')", step.id)
        )
    return problems


def _reachable(workflow: Workflow) -> set[str]:
    todo, found = [workflow.steps[0].id], set()
    while todo:
        current = todo.pop()
        if current == END or current in found:
            continue
        found.add(current)
        todo.extend(edges(workflow, workflow.step(current)))
    return found


LOOP_HINT = " (add a duration, until_time or wait_for: business hours and until may not wait)"


def _always_waits(step: StepBase) -> bool:
    """A wait that never continues at once: business hours and ``until`` may not wait at all."""
    if isinstance(step, WaitStep):
        return step.wait.duration is not None or step.wait.until_time is not None
    return step_kind(step) in WAIT_KINDS


def _check_loops(workflow: Workflow) -> list[Problem]:
    """Every cycle must pass through a wait, or a run could spin forever in one instant."""
    graph = {
        s.id: [t for t in edges(workflow, s) if t != END]
        for s in workflow.steps
        if not _always_waits(s)
    }
    problems, state = [], dict.fromkeys(graph, 0)  # 0 new, 1 on stack, 2 done
    for root in graph:
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            node, index = stack.pop()
            if index == 0:
                if state[node] == 2:
                    continue
                state[node] = 1
                path.append(node)
            targets = [t for t in graph[node] if t in graph]
            if index < len(targets):
                stack.append((node, index + 1))
                target = targets[index]
                if state[target] == 1:
                    loop = [*path[path.index(target) :], target]
                    message = "loop without a wait: " + " -> ".join(loop) + LOOP_HINT
                    problems.append(Problem(message, target))
                elif state[target] == 0:
                    stack.append((target, 0))
            else:
                state[node] = 2
                path.pop()
    return problems
