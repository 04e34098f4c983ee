"""Templates as files: ``NAME.yaml`` plus ``NAME.html``, ``NAME.txt`` or ``NAME.mjml``.

``NAME.yaml`` holds the rest::

    subject: "Welcome, {{ contact.first_name }}!"
    topic: onboarding            # optional; anything but transactional is marketing
    defaults:                    # optional; values for variables that have none
      contact.first_name: there
    fallback: plain_welcome      # optional; rendered if this one fails at send time

MJML is compiled to HTML when the folder is loaded (give ``NAME.html`` or
``NAME.mjml``, not both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flowmail.templates.liquid import TemplateError
from flowmail.templates.markup import mjml_to_html
from flowmail.templates.model import Template

_KEYS = {"subject", "topic", "defaults", "fallback"}
_BODIES = {".html": "html", ".txt": "text", ".mjml": "mjml"}


class TemplateFileError(ValueError):
    """One or more template files cannot be read; each problem names its file."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _flatten(defaults: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{contact: {first_name: x}}`` and ``{contact.first_name: x}`` mean the same."""
    out: dict[str, Any] = {}
    for key, value in defaults.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateFileError([f"{path}: cannot read: {exc}"]) from None


def _meta(path: Path) -> dict[str, Any]:
    try:
        meta = yaml.safe_load(_read(path))
    except yaml.YAMLError as exc:
        raise TemplateFileError([f"{path}: not valid YAML: {exc}"]) from None
    if not isinstance(meta, dict):
        raise TemplateFileError([f"{path}: must be a mapping with at least a subject"])
    problems = [f"{path}: unknown key {key!r}" for key in meta if key not in _KEYS]
    if not isinstance(meta.get("subject"), str) or not meta["subject"].strip():
        problems.append(f"{path}: subject is missing")
    if not isinstance(meta.get("defaults", {}), dict):
        problems.append(f"{path}: defaults must be a mapping")
    for key in ("topic", "fallback"):
        if key in meta and not isinstance(meta[key], str):
            problems.append(f"{path}: {key} must be a string")
    if problems:
        raise TemplateFileError(problems)
    return meta


def load_template_file(meta_path: Path) -> Template:
    """The template described by ``NAME.yaml`` and the body files beside it."""
    meta = _meta(meta_path)
    name = meta_path.stem
    bodies = {
        part: _read(meta_path.with_suffix(suffix))
        for suffix, part in _BODIES.items()
        if meta_path.with_suffix(suffix).is_file()
    }
    if not bodies:
        raise TemplateFileError([f"{meta_path}: no {name}.html, {name}.txt or {name}.mjml"])
    if "html" in bodies and "mjml" in bodies:
        raise TemplateFileError([f"{meta_path}: give {name}.html or {name}.mjml, not both"])
    html = bodies.get("html")
    if "mjml" in bodies:
        try:
            html = mjml_to_html(bodies["mjml"])
        except TemplateError as exc:
            raise TemplateFileError([f"{meta_path.with_suffix('.mjml')}: {exc}"]) from None
    return Template(
        name=name,
        subject=meta["subject"],
        html=html,
        text=bodies.get("text"),
        mjml=bodies.get("mjml"),
        defaults=_flatten(meta.get("defaults") or {}),
        fallback=meta.get("fallback"),
        topic=meta.get("topic", "marketing"),
    )


def load_template_dir(path: str | Path) -> dict[str, Template]:
    """Every template in a folder, by name; all problems reported together."""
    folder = Path(path)
    if not folder.is_dir():
        raise TemplateFileError([f"{folder}: no such folder"])
    templates: dict[str, Template] = {}
    problems: list[str] = []
    metas = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    for meta_path in metas:
        if meta_path.stem in templates:
            problems.append(f"{meta_path}: {meta_path.stem} is defined twice")
            continue
        try:
            templates[meta_path.stem] = load_template_file(meta_path)
        except TemplateFileError as exc:
            problems += exc.problems
    named = {m.stem for m in metas}
    for body in sorted(folder.iterdir()):
        if body.suffix in _BODIES and body.stem not in named:
            problems.append(f"{body}: no {body.stem}.yaml beside it (it needs a subject)")
    if problems:
        raise TemplateFileError(problems)
    return templates
