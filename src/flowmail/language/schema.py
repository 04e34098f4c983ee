"""The JSON Schema of the workflow language, for editors and CI checks."""

from __future__ import annotations

from typing import Any

from flowmail.language.models import Workflow
from flowmail.language.types import CONDITION_MARK, condition_schema


def _link_conditions(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get(CONDITION_MARK):
            return {"$ref": "#/$defs/Condition"}
        return {key: _link_conditions(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_link_conditions(item) for item in node]
    return node


def workflow_schema() -> dict[str, Any]:
    schema: dict[str, Any] = _link_conditions(Workflow.model_json_schema(by_alias=True))
    schema.setdefault("$defs", {})["Condition"] = condition_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "flowmail workflow"
    return schema
