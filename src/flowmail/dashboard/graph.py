"""A workflow's steps as a diagram: a layered layout computed here, drawn as SVG by the
template (no JavaScript).

1. Nodes are the trigger, the steps and ``end``; edges are where each step may go
   (:func:`flowmail.language.graph.edges`), labelled with the branch case, split
   share or wait_for outcome.
2. Edges that close a loop (found by a depth-first walk from the trigger) are set
   aside; every other node's layer is its longest distance from the trigger.
3. Within a layer, nodes start in the definition's order and are reordered by the
   mean position of their neighbours, a bounded number of sweeps down and up.
4. Forward edges are curves from a node's bottom to the next one's top; loop edges go
   round the right-hand side.

Pure: the same workflow and figures give the same diagram.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flowmail.analytics.model import StepFigures
from flowmail.language.durations import format_duration
from flowmail.language.graph import edges as step_edges
from flowmail.language.models import (
    END,
    BranchStep,
    EmailStep,
    EnrollStep,
    SplitStep,
    StepBase,
    WaitForStep,
    WaitStep,
    WebhookStep,
    Workflow,
    step_kind,
)

START = "(trigger)"  # the trigger's node: never a step id (slugs have no brackets)
NODE_W, NODE_H = 200, 58
H_GAP, V_GAP = 36, 64
MARGIN = 24
LOOP_GAP = 28  # room right of the nodes for each loop edge
SWEEPS = 4
MAX_LABEL = 26


@dataclass
class Node:
    id: str
    kind: str  # trigger, end, or a step kind
    title: str
    detail: str
    layer: int = 0
    x: float = 0
    y: float = 0
    entered: int | None = None
    waiting: int | None = None
    active: int | None = None

    @property
    def cx(self) -> float:
        return self.x + NODE_W / 2


@dataclass
class Edge:
    source: str
    target: str
    label: str = ""
    count: int | None = None
    loop: bool = False
    path: str = ""
    label_x: float = 0
    label_y: float = 0


@dataclass
class Diagram:
    nodes: list[Node]
    edges: list[Edge]
    width: float = 0
    height: float = 0
    node_w: int = NODE_W
    node_h: int = NODE_H
    by_id: dict[str, Node] = field(default_factory=dict)


def _short(text: str, size: int = MAX_LABEL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"


def _detail(step: StepBase) -> str:
    if isinstance(step, EmailStep):
        return step.email.template or step.email.subject or ""
    if isinstance(step, WaitStep):
        spec = step.wait
        if spec.duration is not None:
            return format_duration(spec.duration)
        if spec.until_time is not None:
            return f"until {spec.until_time}"
        return "business hours" if spec.business_hours else "until a time"
    if isinstance(step, WaitForStep):
        return f"for {step.wait_for.event}"
    if isinstance(step, EnrollStep):
        return f"into {step.enroll}"
    if isinstance(step, WebhookStep):
        return step.webhook.method
    return step.name or ""


def _labelled_targets(workflow: Workflow, step: StepBase) -> list[tuple[str, str]]:
    """(target, label) in the order the step tries them."""
    if isinstance(step, BranchStep):
        return [
            (case.target, "else" if case.else_ is not None else f"case {i + 1}")
            for i, case in enumerate(step.branch)
        ]
    if isinstance(step, SplitStep):
        total = sum(case.weight for case in step.split)
        return [
            (case.then, case.name or f"{case.weight / total * 100:.0f} %") for case in step.split
        ]
    targets = step_edges(workflow, step)
    if isinstance(step, WaitForStep):
        return list(zip(targets, ("event", "timeout"), strict=True))
    return [(target, "") for target in targets]


def _edges(workflow: Workflow, start: str) -> list[Edge]:
    found: dict[tuple[str, str], Edge] = {}
    pairs = [(start, workflow.steps[0].id, "")]
    for step in workflow.steps:
        pairs += [(step.id, target, label) for target, label in _labelled_targets(workflow, step)]
    for source, target, label in pairs:
        edge = found.setdefault((source, target), Edge(source, target))
        if label and label not in edge.label.split(" / "):
            edge.label = f"{edge.label} / {label}" if edge.label else label
    return list(found.values())


def _mark_loops(order: list[str], edges: list[Edge], start: str) -> None:
    """Mark the edges that close a cycle (depth-first from the trigger, iteratively)."""
    out: dict[str, list[Edge]] = {node: [] for node in order}
    for edge in edges:
        out[edge.source].append(edge)
    state = dict.fromkeys(order, 0)  # 0 new, 1 on the stack, 2 done
    roots = [start, *order]
    for root in roots:
        if state[root]:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, index = stack.pop()
            if index < len(out[node]):
                stack.append((node, index + 1))
                edge = out[node][index]
                if state[edge.target] == 1:
                    edge.loop = True
                elif state[edge.target] == 0:
                    state[edge.target] = 1
                    stack.append((edge.target, 0))
            else:
                state[node] = 2


def _layers(order: list[str], edges: list[Edge]) -> dict[str, int]:
    """Longest distance from a source over the forward edges (Kahn's order)."""
    forward = [e for e in edges if not e.loop]
    incoming = {node: 0 for node in order}
    for edge in forward:
        incoming[edge.target] += 1
    layer = dict.fromkeys(order, 0)
    ready = [node for node in order if incoming[node] == 0]
    while ready:
        node = ready.pop(0)
        for edge in forward:
            if edge.source != node:
                continue
            layer[edge.target] = max(layer[edge.target], layer[node] + 1)
            incoming[edge.target] -= 1
            if incoming[edge.target] == 0:
                ready.append(edge.target)
    return layer


def _order(order: list[str], layer: dict[str, int], edges: list[Edge]) -> list[list[str]]:
    """Nodes per layer, reordered by their neighbours' mean position (bounded sweeps)."""
    rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for node in order:
        rows[layer[node]].append(node)
    up: dict[str, list[str]] = {node: [] for node in order}
    down: dict[str, list[str]] = {node: [] for node in order}
    for edge in edges:
        if not edge.loop:
            down[edge.source].append(edge.target)
            up[edge.target].append(edge.source)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(rows)) if downward else range(len(rows) - 2, -1, -1)
        for i in indices:
            near = rows[i - 1] if downward else rows[i + 1]
            rows[i] = _reordered(rows[i], near, up if downward else down)
    return rows


def _reordered(row: list[str], near: list[str], links: dict[str, list[str]]) -> list[str]:
    """``row`` sorted by the mean position of each node's neighbours in ``near`` (a node
    without any keeps its own position)."""
    where = {node: position for position, node in enumerate(near)}
    own = {node: position for position, node in enumerate(row)}

    def weight(node: str) -> float:
        seen = [where[n] for n in links[node] if n in where]
        return sum(seen) / len(seen) if seen else own[node]

    return sorted(row, key=weight)


def _bezier(x1: float, y1: float, x2: float, y2: float, c1: tuple[float, float],
            c2: tuple[float, float]) -> tuple[str, float, float]:  # fmt: skip
    path = f"M{x1:.1f},{y1:.1f} C{c1[0]:.1f},{c1[1]:.1f} {c2[0]:.1f},{c2[1]:.1f} {x2:.1f},{y2:.1f}"
    mid_x = (x1 + 3 * c1[0] + 3 * c2[0] + x2) / 8
    mid_y = (y1 + 3 * c1[1] + 3 * c2[1] + y2) / 8
    return path, mid_x, mid_y


def _route(edges: list[Edge], nodes: dict[str, Node], right: float) -> float:
    """Each edge's SVG path and label position; returns the width the loops need."""
    loops = 0
    for edge in edges:
        a, b = nodes[edge.source], nodes[edge.target]
        if edge.loop or b.layer <= a.layer:
            loops += 1
            x = right + loops * LOOP_GAP
            y1, y2 = a.y + NODE_H / 2, b.y + NODE_H / 2
            edge.path, edge.label_x, edge.label_y = _bezier(
                a.x + NODE_W, y1, b.x + NODE_W, y2, (x, y1), (x, y2)
            )
            continue
        x1, y1, x2, y2 = a.cx, a.y + NODE_H, b.cx, b.y
        bend = max(V_GAP / 2, (y2 - y1) / 2)
        edge.path, edge.label_x, edge.label_y = _bezier(
            x1, y1, x2, y2, (x1, y1 + bend), (x2, y2 - bend)
        )
    return loops * LOOP_GAP + (LOOP_GAP if loops else 0)


def _count(figures: Mapping[str, StepFigures], edge: Edge, start: str) -> int | None:
    if edge.source == start:
        first = figures.get(edge.target)
        return None if first is None else first.entered
    source = figures.get(edge.source)
    if source is None:
        return None
    return source.edges.get(edge.target, 0)


def layout(
    workflow: Workflow, figures: Mapping[str, StepFigures] | None = None, entered: int | None = None
) -> Diagram:
    """The diagram of ``workflow``, with each step's and edge's counts from ``figures``
    (step id -> figures) when given; ``entered`` labels the trigger."""
    figures = figures or {}
    start = START
    edges = _edges(workflow, start)
    nodes = {start: Node(start, "trigger", "trigger", _trigger_text(workflow), entered=entered)}
    for step in workflow.steps:
        node = Node(step.id, step_kind(step), _short(step.id), _short(_detail(step)))
        found = figures.get(step.id)
        if found is not None:
            node.entered, node.waiting, node.active = found.entered, found.waiting, found.active
        nodes[step.id] = node
    if any(edge.target == END for edge in edges):
        nodes[END] = Node(END, "end", "end", "")
    order = list(nodes)
    _mark_loops(order, edges, start)
    layer = _layers(order, edges)
    rows = _order(order, layer, edges)
    widest = max(len(row) for row in rows)
    full = widest * NODE_W + (widest - 1) * H_GAP
    for index, row in enumerate(rows):
        used = len(row) * NODE_W + (len(row) - 1) * H_GAP
        for position, node_id in enumerate(row):
            node = nodes[node_id]
            node.layer = index
            node.x = MARGIN + (full - used) / 2 + position * (NODE_W + H_GAP)
            node.y = MARGIN + index * (NODE_H + V_GAP)
    for edge in edges:
        if figures:
            edge.count = _count(figures, edge, start)
    extra = _route(edges, nodes, MARGIN + full)
    height = 2 * MARGIN + len(rows) * NODE_H + (len(rows) - 1) * V_GAP
    return Diagram(list(nodes.values()), edges, 2 * MARGIN + full + extra, height, by_id=nodes)


def _trigger_text(workflow: Workflow) -> str:
    trigger = workflow.trigger
    for name in ("event", "behavior", "attribute", "date", "schedule"):
        value = getattr(trigger, name, None)
        if isinstance(value, str):
            return _short(f"on {value}")
        if value is not None:
            return _short(f"{name} trigger")
    return "trigger"
