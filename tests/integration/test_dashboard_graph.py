"""The workflow diagram's layout (pure: no database): every step placed once, in layers
that follow the edges, without overlaps; loops set aside and routed round the side;
labels and counts on the edges."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowmail.analytics.model import StepFigures
from flowmail.dashboard.graph import NODE_H, NODE_W, START, Diagram, layout
from flowmail.language.loader import parse_workflow

EXAMPLES = sorted(
    p for p in (Path(__file__).parents[2] / "examples").glob("*.yaml") if "scenario" not in p.name
)
LOOPING: dict[str, Any] = {
    "id": "nag",
    "trigger": {"event": "trial_started"},
    "steps": [
        {"id": "remind", "email": {"subject": "Still there?"}},
        {"id": "pause", "wait": "2d"},
        {
            "id": "check",
            "branch": [
                {"if": {"contact.plan": "paid"}, "then": "end"},
                {"else": "remind"},
            ],
        },
    ],
}
SPLIT: dict[str, Any] = {
    "id": "ab",
    "trigger": {"event": "signed_up"},
    "steps": [
        {"id": "pick", "split": [{"weight": 3, "then": "a"}, {"weight": 1, "then": "b"}]},
        {"id": "a", "email": {"subject": "A"}, "next": "end"},
        {"id": "b", "email": {"subject": "B"}},
        {"id": "wait_reply", "wait_for": {"event": "replied", "timeout": "3d"},
         "on_timeout": "b"},
    ],
}  # fmt: skip


def _overlap(diagram: Diagram) -> list[tuple[str, str]]:
    found = []
    for a, b in combinations(diagram.nodes, 2):
        if abs(a.x - b.x) < NODE_W and abs(a.y - b.y) < NODE_H:
            found.append((a.id, b.id))
    return found


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_is_laid_out_in_layers_without_overlaps(path: Path) -> None:
    workflow = parse_workflow(yaml.safe_load(path.read_text()), path.name)
    diagram = layout(workflow)
    ids = [node.id for node in diagram.nodes]
    assert ids[0] == START
    assert sorted(ids[1:]) == sorted([s.id for s in workflow.steps] + ["end"])
    assert _overlap(diagram) == []
    for node in diagram.nodes:
        assert node.x > 0 and node.x + NODE_W <= diagram.width
        assert node.y > 0 and node.y + NODE_H <= diagram.height
    for edge in diagram.edges:
        source, target = diagram.by_id[edge.source], diagram.by_id[edge.target]
        assert edge.loop or target.layer > source.layer, (edge.source, edge.target)
        assert edge.path.startswith("M")
    assert layout(workflow) == diagram  # the same workflow, the same picture


def test_a_loop_goes_round_the_side() -> None:
    diagram = layout(parse_workflow(LOOPING))
    [loop] = [e for e in diagram.edges if e.loop]
    assert (loop.source, loop.target, loop.label) == ("check", "remind", "else")
    layers = {n.id: n.layer for n in diagram.nodes}
    assert layers == {START: 0, "remind": 1, "pause": 2, "check": 3, "end": 4}
    right = max(n.x + NODE_W for n in diagram.nodes)
    assert loop.label_x > right  # drawn right of every node
    assert diagram.width > right + 20
    ending = next(e for e in diagram.edges if e.target == "end")
    assert ending.label == "case 1" and not ending.loop


def test_edges_carry_split_shares_wait_outcomes_and_counts() -> None:
    workflow = parse_workflow(SPLIT)
    figures = {
        "pick": StepFigures("pick", "split", entered=40, edges={"a": 30, "b": 10}),
        "a": StepFigures("a", "email", entered=30, edges={"end": 30}),
        "b": StepFigures("b", "email", entered=14, edges={"wait_reply": 14}),
        "wait_reply": StepFigures("wait_reply", "wait_for", entered=14, waiting=9,
                                  edges={"b": 4, "end": 1}),
    }  # fmt: skip
    diagram = layout(workflow, figures, entered=40)
    edges = {(e.source, e.target): e for e in diagram.edges}
    assert (edges["pick", "a"].label, edges["pick", "a"].count) == ("75 %", 30)
    assert (edges["pick", "b"].label, edges["pick", "b"].count) == ("25 %", 10)
    assert edges[START, "pick"].count == 40
    assert edges["wait_reply", "end"].label == "event"  # on_event falls to the next: end
    back = edges["wait_reply", "b"]
    assert (back.label, back.count, back.loop) == ("timeout", 4, True)
    wait = diagram.by_id["wait_reply"]
    assert (wait.entered, wait.waiting) == (14, 9)
    assert diagram.by_id[START].entered == 40
    assert diagram.by_id["a"].detail == "A"


def test_without_figures_nothing_is_counted() -> None:
    diagram = layout(parse_workflow(SPLIT))
    assert all(e.count is None for e in diagram.edges)
    assert all(n.entered is None for n in diagram.nodes)
