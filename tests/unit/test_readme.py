"""README.md stays true: what it shows must load, run and exist.

- every YAML/JSON block that is a workflow validates (blocks marked "invalid on purpose"
  must fail, with the very messages the README prints);
- fragments (a trigger, some steps, a goal) validate inside a minimal workflow, and
  ``where:`` blocks parse as conditions;
- every scenario block simulates;
- template files (``NAME.yaml``) load and pass the save-time checks, and one that names
  a file in ``templates/`` says what that file says;
- every ``flowmail ...`` command line in console/sh blocks names a real command with
  real options (its ``--help`` exits 0);
- the settings table is ``settings_table()``, and every FLOWMAIL_* setting is there;
- every endpoint named (``GET /v1/...``, or a URL on the tour's server) is one the app
  serves, with that method; every endpoint the app serves is named;
- every Python block compiles, and the pytest example passes.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from flowmail.api.app import create_app
from flowmail.cli import app
from flowmail.clock import SystemClock
from flowmail.dashboard import ROUTERS as DASHBOARD_ROUTERS
from flowmail.language.conditions import parse_condition
from flowmail.language.loader import WorkflowInvalid, parse_workflow
from flowmail.language.models import Workflow
from flowmail.settings import Settings, settings_table
from flowmail.simulate import simulate_file
from flowmail.store.sql import SqlStore
from flowmail.templates.files import load_template_file
from flowmail.templates.validate import validate_template
from flowmail.webhooks import PROVIDERS as WEBHOOK_PROVIDERS

ROOT = Path(__file__).resolve().parents[2]
README_PATH = ROOT / "README.md"
README = README_PATH.read_text(encoding="utf-8")
EXAMPLES = ROOT / "examples"
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
WORKFLOW_FIELDS = set(Workflow.model_fields)
TEMPLATE_FIELDS = {"subject", "topic", "defaults", "fallback"}  # a template's NAME.yaml
INVALID_MARK = "invalid on purpose"
FILLER: dict[str, Any] = {
    "id": "readme_fragment",
    "trigger": {"event": "readme_event"},
    "steps": [{"id": "readme_step", "exit": True}],
}


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int

    @property
    def name(self) -> str:
        return f"{self.language or 'text'}@README.md:{self.line}"


def _blocks() -> list[Block]:
    return [Block(m[1], m[2], README.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(README)]


BLOCKS = _blocks()


def _of(*languages: str) -> list[Block]:
    return [b for b in BLOCKS if b.language in languages]


def _data_blocks() -> list[tuple[Block, Any]]:
    parsed = []
    for block in _of("yaml", "yml", "json"):
        data = json.loads(block.text) if block.language == "json" else yaml.safe_load(block.text)
        parsed.append((block, data))
    return parsed


DATA = _data_blocks()


def _kind(data: Any) -> str:
    if not isinstance(data, dict):
        return "unknown"
    if "workflows" in data:
        return "scenario"
    if "workflow_id" in data or {"id", "trigger", "steps"} <= set(data) <= WORKFLOW_FIELDS:
        return "workflow"
    if set(data) <= WORKFLOW_FIELDS:
        return "fragment"
    if set(data) == {"where"}:
        return "condition"
    if "subject" in data and set(data) <= TEMPLATE_FIELDS:
        return "template"
    return "unknown"


def _ids(items: list[tuple[Block, Any]]) -> list[str]:
    return [block.name for block, _ in items]


def _kinds(*kinds: str) -> list[tuple[Block, Any]]:
    return [(block, data) for block, data in DATA if _kind(data) in kinds]


# --- the blocks themselves -------------------------------------------------------------


def test_the_readme_has_what_these_tests_look_for() -> None:
    kinds = [_kind(data) for _, data in DATA]
    assert kinds.count("workflow") >= 2
    assert kinds.count("fragment") >= 5
    assert "scenario" in kinds
    assert "condition" in kinds
    assert "template" in kinds
    assert _commands(), "no flowmail command lines found"
    assert len(_endpoints()) >= 30, "no endpoints found"


@pytest.mark.parametrize(("block", "data"), DATA, ids=_ids(DATA))
def test_every_yaml_block_is_something_known(block: Block, data: Any) -> None:
    assert _kind(data) != "unknown", (
        f"{block.name}: not a workflow, fragment, condition, scenario or template; "
        "teach tests/unit/test_readme.py what it is"
    )


WORKFLOWS = _kinds("workflow")


@pytest.mark.parametrize(("block", "data"), WORKFLOWS, ids=_ids(WORKFLOWS))
def test_workflows_validate(block: Block, data: dict[str, Any]) -> None:
    first_line = block.text.splitlines()[0]
    if INVALID_MARK not in first_line:
        parse_workflow(data, block.name)
        return
    file = first_line.lstrip("# ").split()[0]
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(data, file)
    for problem in caught.value.problems:
        assert str(problem) in README, f"the README should print: {problem}"


FRAGMENTS = _kinds("fragment")


@pytest.mark.parametrize(("block", "data"), FRAGMENTS, ids=_ids(FRAGMENTS))
def test_fragments_validate_inside_a_workflow(block: Block, data: dict[str, Any]) -> None:
    parse_workflow({**FILLER, **data}, block.name)


CONDITIONS = _kinds("condition")


@pytest.mark.parametrize(("block", "data"), CONDITIONS, ids=_ids(CONDITIONS))
def test_condition_blocks_parse(block: Block, data: dict[str, Any]) -> None:
    parse_condition(data["where"])
    parse_workflow({**FILLER, "trigger": {"event": "x", "where": data["where"]}}, block.name)


SCENARIOS = _kinds("scenario")


@pytest.mark.parametrize(("block", "data"), SCENARIOS, ids=_ids(SCENARIOS))
def test_scenarios_simulate(block: Block, data: dict[str, Any], tmp_path: Path) -> None:
    """Scenario blocks name workflow files as if they sat in examples/."""
    for path in EXAMPLES.iterdir():
        shutil.copy(path, tmp_path / path.name)
    scenario = tmp_path / "readme.scenario.yaml"
    scenario.write_text(block.text, encoding="utf-8")
    result = simulate_file(scenario)
    assert result.runs, f"{block.name}: the scenario starts no run"


TEMPLATES = _kinds("template")


@pytest.mark.parametrize(("block", "data"), TEMPLATES, ids=_ids(TEMPLATES))
def test_template_files_load_and_pass_the_checks(
    block: Block, data: dict[str, Any], tmp_path: Path
) -> None:
    """Loaded beside a compliant text body; one whose first line names a file in the
    repository (``# templates/welcome_01.yaml ...``) must say what that file says."""
    named = re.match(r"#\s*(templates/[\w.\-]+\.ya?ml)", block.text)
    if named:
        real = yaml.safe_load((ROOT / named[1]).read_text(encoding="utf-8"))
        assert data == real, f"{block.name}: not what {named[1]} says"
    meta = tmp_path / "readme_template.yaml"
    meta.write_text(block.text, encoding="utf-8")
    meta.with_suffix(".txt").write_text(
        "Hi {{ contact.first_name }}\n{{ unsubscribe_url }}\n{{ postal_address }}\n",
        encoding="utf-8",
    )
    validate_template(load_template_file(meta), postal_address="1 Main Street")


def test_toml_blocks_name_real_settings() -> None:
    for block in _of("toml"):
        unknown = set(tomllib.loads(block.text)) - set(Settings.model_fields)
        assert not unknown, f"{block.name}: no such settings {sorted(unknown)}"


# --- commands ----------------------------------------------------------------------------


def _command_lines(block: Block) -> list[str]:
    """The command lines of a shell block, each with its ``\\`` continuation lines joined
    on (in a console block, only lines that start with ``$ `` are commands)."""
    lines: list[str] = []
    continued = False
    for line in block.text.splitlines():
        if continued:
            lines[-1] = lines[-1][:-1] + " " + line.strip()
        elif block.language != "console":
            lines.append(line)
        elif line.startswith("$ "):
            lines.append(line[2:])
        else:
            continue  # output
        continued = lines[-1].endswith("\\")
    return lines


def _commands() -> list[tuple[Block, list[str]]]:
    """``flowmail`` invocations: the words after ``flowmail`` on each command line."""
    found = []
    for block in _of("console", "sh", "shell", "bash"):
        for line in _command_lines(block):
            words = shlex.split(line, comments=True)
            for index, word in enumerate(words):
                if re.fullmatch(r"([\w.\-]*/)*flowmail", word):  # flowmail, .venv/bin/flowmail
                    found.append((block, words[index + 1 :]))
    return found


COMMANDS = _commands()


@pytest.mark.parametrize(
    ("block", "words"), COMMANDS, ids=[f"{b.name}:{' '.join(w)}" for b, w in COMMANDS]
)
def test_command_lines_name_real_commands_and_options(block: Block, words: list[str]) -> None:
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    while hasattr(command, "commands") and words[len(path) :]:
        word = words[len(path)]
        assert word in command.commands, f"{block.name}: no command {' '.join([*path, word])}"
        command = command.commands[word]
        path.append(word)
    assert not hasattr(command, "commands"), f"{block.name}: {path} needs a subcommand"
    known = {"--help"}
    for param in command.params:
        known.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("-"))
    for word in words[len(path) :]:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{block.name}: flowmail {path} has no {word}"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output


# --- settings ---------------------------------------------------------------------------


def _shown_default(name: str, default: str) -> str:
    """The default as the README shows it: a factory's value rather than 'PydanticUndefined'
    (what ``settings_table()`` gives for a field with a default factory)."""
    if default == "PydanticUndefined":
        return repr(Settings.model_fields[name].get_default(call_default_factory=True))
    return default


def test_every_setting_is_in_the_table_exactly() -> None:
    for variable, default, meaning in settings_table():
        shown = _shown_default(variable.removeprefix("FLOWMAIL_").lower(), default)
        row = f"| `{variable}` | `{shown}` | {meaning} |"
        assert row in README, (
            f"README.md's settings table lacks or misstates {variable}; paste this row:\n{row}"
        )


def test_the_readme_names_no_setting_that_does_not_exist() -> None:
    known = {variable for variable, _, _ in settings_table()}
    named = set(re.findall(r"FLOWMAIL_[A-Z_]+", README))
    assert named <= known, f"not settings: {sorted(named - known)}"


# --- endpoints ------------------------------------------------------------------------------

METHODS = "GET|POST|PUT|PATCH|DELETE"
NAMED_ENDPOINT = re.compile(rf"\b({METHODS}) (/[\w\-./{{}}]*)")
DASHBOARD = "/ui"  # pages for people: may be named, need not be
TOUR_URL = re.compile(r"http://127\.0\.0\.1:8025(/[^\s\"'?)>`,]*)")


def _endpoints() -> list[tuple[str | None, str]]:
    """(method, path) named in the README: ``GET /v1/x`` anywhere, and the paths of URLs
    on the tour's server (any method)."""
    named: list[tuple[str | None, str]] = [
        (m[1], m[2].rstrip(".")) for m in NAMED_ENDPOINT.finditer(README)
    ]
    return named + [(None, m[1]) for m in TOUR_URL.finditer(README) if m[1] != "/"]


def _shape(path: str) -> str:
    """Parameters all look alike: ``/v1/contacts/{contact_id}`` -> ``/v1/contacts/{}``."""
    return re.sub(r"\{[^}]*\}", "{}", path)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Path template -> methods, as the app built by ``create_app`` serves them."""
    folder = tmp_path_factory.mktemp("api")
    store = SqlStore.from_url(f"sqlite:///{folder / 'readme.db'}")
    try:
        api = create_app(Settings(), store, SystemClock())
        routes = {
            path: {method.upper() for method in operations}
            for path, operations in api.openapi()["paths"].items()
        }
    finally:
        store.close()
    for path in (api.openapi_url, api.docs_url):
        if path:
            routes[path] = {"GET"}
    for router in DASHBOARD_ROUTERS:  # the dashboard's pages: not in the OpenAPI document
        for route in router.routes:
            methods = getattr(route, "methods", None) or {"GET"}
            routes.setdefault(getattr(route, "path", ""), set()).update(methods - {"HEAD"})
    return routes


def _route_for(path: str, served: dict[str, set[str]]) -> str | None:
    for template in served:
        pattern = re.escape(_shape(template)).replace(re.escape("{}"), "[^/]+")
        if re.fullmatch(pattern, _shape(path).replace("{}", "x")):
            return template
    return None


def test_every_endpoint_named_is_served(served: dict[str, set[str]]) -> None:
    wrong = []
    for method, path in _endpoints():
        template = _route_for(path, served)
        if template is None:
            wrong.append(f"{method or 'a URL:'} {path}: no such path")
        elif method is not None and method not in served[template]:
            wrong.append(f"{method} {path}: {template} answers {sorted(served[template])}")
        webhook = re.fullmatch(r"/v1/webhooks/([\w\-]+)", path)
        if webhook and webhook[1] not in WEBHOOK_PROVIDERS:
            wrong.append(f"{path}: no webhook provider {webhook[1]!r}")
    assert not wrong, "README.md names endpoints the app does not serve:\n" + "\n".join(wrong)


def test_every_endpoint_served_is_named(served: dict[str, set[str]]) -> None:
    named = {(method, _shape(path)) for method, path in _endpoints() if method}
    missing = [
        f"{method} {path}"
        for path, methods in sorted(served.items())
        for method in sorted(methods)
        if (method, _shape(path)) not in named and not path.startswith(DASHBOARD)
    ]
    assert not missing, "README.md does not name these endpoints:\n" + "\n".join(missing)


# --- Python ---------------------------------------------------------------------------------


PYTHON = _of("python")


@pytest.mark.parametrize("block", PYTHON, ids=[b.name for b in PYTHON])
def test_python_blocks_compile(block: Block) -> None:
    compile(block.text, block.name, "exec")


def test_the_pytest_example_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    examples = [b for b in PYTHON if "def test_" in b.text]
    assert examples, "the README should show a pytest example"
    monkeypatch.chdir(ROOT)  # it loads examples/... like a user in the repository would
    for block in examples:
        namespace: dict[str, Any] = {"__name__": "readme_example"}
        exec(compile(block.text, block.name, "exec"), namespace)
        tests = [fn for name, fn in namespace.items() if name.startswith("test_")]
        assert tests
        for test in tests:
            test()
