"""``/v1/templates``: versioned email templates.

PUT checks a template as ``flowmail templates`` does (Liquid parses, filters exist, a
marketing template has an unsubscribe link and the postal address; 422 with the
problems otherwise); saved content that differs from the latest version is a new
version, and messages keep naming the version they were rendered from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from flowmail.api.auth import AdminKey
from flowmail.api.context import Ctx
from flowmail.api.errors import ApiError, Responses, invalid, problem
from flowmail.api.fields import JsonObject, Text
from flowmail.store.templates import get_template, list_templates, save_template
from flowmail.templates.model import Template as StoredTemplate
from flowmail.templates.validate import TemplateInvalid, validate_template

router = APIRouter(prefix="/v1/templates", tags=["templates"])
_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
Name = Annotated[str, Path(min_length=1, max_length=200, pattern=_NAME)]
_MISSING: Responses = {
    404: {"description": "No such template (or version) in this key's workspace"}
}


class TemplateSummary(BaseModel):
    name: str
    version: int = Field(description="The latest version")
    versions: int
    created_at: datetime


class TemplateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: Text = Field(max_length=2000)
    html: Text | None = None
    text: Text | None = None
    mjml: Text | None = Field(None, description="Compiled to HTML when saved (give html or mjml)")
    defaults: JsonObject = Field(default_factory=dict, description="Values for missing variables")
    fallback: Text | None = Field(None, max_length=200, description="Template used if this fails")
    topic: Text = Field(
        "marketing", max_length=64, description="transactional or a marketing topic"
    )


class Template(BaseModel):
    name: str
    version: int
    subject: str
    html: str | None
    text: str | None
    mjml: str | None
    defaults: dict[str, Any]
    fallback: str | None
    topic: str


class Saved(BaseModel):
    name: str
    version: int
    changed: bool = Field(description="False when the content was the latest version's")


def _out(template: StoredTemplate) -> Template:
    fields: dict[str, Any] = {**template.content(), "name": template.name}
    return Template(**fields, version=template.version)


@router.get("", response_model=list[TemplateSummary])
def list_all(key: AdminKey, ctx: Ctx) -> list[TemplateSummary]:
    return [
        TemplateSummary(
            name=i.name, version=i.version, versions=i.versions, created_at=i.created_at
        )
        for i in list_templates(ctx.store, key.workspace_id)
    ]


@router.get("/{name}", response_model=Template, responses=_MISSING)
def get_one(
    name: Name,
    key: AdminKey,
    ctx: Ctx,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Template:
    """The latest version, or the one asked for."""
    template = get_template(ctx.store, key.workspace_id, name, version)
    if template is None:
        raise ApiError(404, f"no template {name!r}" + (f" version {version}" if version else ""))
    return _out(template)


@router.put("/{name}", response_model=Saved, responses={422: {"description": "Invalid"}})
def put(name: Name, body: TemplateBody, key: AdminKey, ctx: Ctx) -> Saved:
    if body.html is not None and body.mjml is not None:
        raise invalid([problem("mjml", "give html or mjml, not both")])
    template = StoredTemplate(name=name, **body.model_dump())
    try:
        prepared = validate_template(template, postal_address=ctx.settings.postal_address)
    except TemplateInvalid as exc:
        raise invalid([problem(p.part or "template", p.message) for p in exc.problems]) from None
    known = {info.name for info in list_templates(ctx.store, key.workspace_id)}
    if prepared.fallback and prepared.fallback not in known:
        raise invalid([problem("fallback", f"names no template: {prepared.fallback!r}")])
    before = get_template(ctx.store, key.workspace_id, name)
    version = save_template(ctx.store, key.workspace_id, prepared, ctx.clock.now())
    return Saved(name=name, version=version, changed=before is None or before.version != version)
