"""Run the shell commands of a README for real, in document order, as a reader would.

Used by ``tests/e2e/test_readme_commands.py``. The rules, all generic, so that blocks
added later are run too:

Commands
    A ```` ```console ```` block is a list of commands: a line starting with ``$ `` is a
    command (a line ending in ``\\`` continues on the next), the lines after it up to the
    next ``$ `` are its shown output. In a ```` ```sh ```` block (or ``shell``, ``bash``)
    every line is a command and no output is shown.

One folder, in order
    Every command runs with ``bash`` in one fresh folder holding ``examples/``,
    ``templates/`` and a ``.venv`` link to the virtualenv, with ``PATH`` starting at the
    virtualenv's ``bin`` (so ``python`` and ``flowmail`` are the project's) and no
    ``FLOWMAIL_*`` variable from outside. Commands run in ``set -a`` mode and what they
    set is kept, so ``KEY=...`` and ``export X=...`` apply to later commands, and ``$?``
    is the previous command's status (``echo $?`` works).

Files
    A non-shell block is written to a file when the paragraph before it says
    ``Save this as `NAME``` or ``Given this `NAME```, when the paragraph after it starts
    with ``Saved as `NAME```, or when a ``<!-- test: file NAME -->`` marker precedes it.

Markers (HTML comments, invisible on GitHub) before a block
    ``<!-- test: exit N -->``: the block's last command exits with status N
    (``exit N PREFIX``: the block's commands that start with PREFIX do).
    ``<!-- test: file NAME -->``: the block is the file NAME.
    ``<!-- test:`` then lines ``$ COMMAND`` ``-->``: hidden set-up commands, run before
    the block; a line not starting with ``$ `` continues the command above (heredocs).
    Directives come first, commands after.

Exit status
    0, unless the next command is ``echo $?`` showing N (then N), the shown output starts
    with ``error:`` (then any non-zero status), or an ``exit N`` marker says otherwise.

Long-running commands
    ``flowmail serve|up|sink``, ``flowmail worker|sender`` without ``--drain``,
    ``python -m aiosmtpd`` and ``make run`` start in the background, are waited for
    (their ports accept connections and their shown output has appeared), and run until
    the end of the README or until a later one needs the same port; then they get
    Ctrl-C (SIGINT). The README's ports
    (the API's 8025, SMTP's 1025) are replaced, in commands, shown output and files, by
    free ports of as many digits (so lines wrap alike), passed to every command as
    ``FLOWMAIL_API_PORT``, ``FLOWMAIL_SMTP_PORT`` and ``FLOWMAIL_PUBLIC_URL``.

Shown output
    Each shown line must equal a line of the real output (stdout and stderr), compared
    loosely: whitespace collapsed, rich rules and box edges of any width, and volatile
    parts matched by kind (API keys, ids, signed tokens, timestamps, durations, the
    folders of an absolute path); a ``...`` line is skipped and ``...`` inside a line
    matches anything. A made-up key or id the README shows is paired with the real one
    printed in its place, and later commands, outputs and files get the real one (so
    ``KEY=fm_...`` holds a working key). A long-running command's shown lines after a
    ``^C`` line are checked once it has been stopped.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flowmail.settings import Settings

SHELLS = {"console", "sh", "shell", "bash"}
COMMAND_SECONDS = 60.0  # a foreground command taking longer is a failure
READY_SECONDS = 45.0  # a background command must be ready within this
STOP_SECONDS = 15.0
COLUMNS = 88  # the terminal width the README's output was made with

# --- parsing ---------------------------------------------------------------------------


@dataclass
class Command:
    line: int  # README line of the command
    text: str  # as written, continuation lines and all
    section: str
    block: int  # README line of its block's fence
    shown: list[tuple[int, str]] | None = None  # (line, text) of the output shown; None: none
    expect: int | None = 0  # exit status; None: any but 0
    hidden: bool = False  # from a ``<!-- test: $ ... -->`` marker

    @property
    def where(self) -> str:
        kind = "hidden command" if self.hidden else "command"
        return f"README.md:{self.line} ({self.section}): {kind} `{_one_line(self.text)}`"


@dataclass
class SaveFile:
    line: int
    path: str
    text: str
    section: str


Step = Command | SaveFile


@dataclass
class _Block:
    language: str
    text: str
    line: int  # of the opening fence
    section: str


@dataclass
class _Prose:
    text: str


@dataclass
class _Marker:
    text: str
    line: int


@dataclass
class _Heading:
    text: str


_Element = _Block | _Prose | _Marker | _Heading

SAVE_BEFORE = re.compile(r"(?:[Ss]ave (?:this|it) as|[Gg]iven this) `([^`\s]+)`")
SAVE_AFTER = re.compile(r"^Saved as `([^`\s]+)`")
MARKER = re.compile(r"<!--\s*test:(.*?)-->", re.S)


def _one_line(text: str) -> str:
    return " ".join(text.replace("\\\n", " ").split())


def _elements(readme: str) -> list[_Element]:
    lines = readme.splitlines()
    elements: list[_Element] = []
    section = ""
    prose: list[str] = []

    def flush() -> None:
        if prose:
            elements.append(_Prose(" ".join(prose)))
            prose.clear()

    index = 0
    while index < len(lines):
        line = lines[index]
        fence = re.match(r"^```([\w-]*)", line)
        if fence:
            flush()
            end = index + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            text = "\n".join(lines[index + 1 : end])
            elements.append(_Block(fence[1], text, index + 1, section))
            index = end + 1
            continue
        if line.lstrip().startswith("<!--"):
            flush()
            end = index
            while end < len(lines) - 1 and "-->" not in lines[end]:
                end += 1
            marker = MARKER.search("\n".join(lines[index : end + 1]))
            if marker:
                elements.append(_Marker(marker[1], index + 1))
            index = end + 1
            continue
        heading = re.match(r"^#{1,6} (.*)", line)
        if heading:
            flush()
            section = heading[1].strip()
            elements.append(_Heading(section))
        elif line.strip():
            prose.append(line.strip())
        else:
            flush()
        index += 1
    flush()
    return elements


def _marker_parts(
    markers: list[_Marker], section: str, block: int
) -> tuple[dict[str, str], list[Command]]:
    """Directives (``exit``, ``file``) and hidden commands of the markers before a block."""
    directives: dict[str, str] = {}
    hidden: list[Command] = []
    for marker in markers:
        for offset, raw in enumerate(marker.text.splitlines()):
            line = marker.line + offset
            stripped = raw.strip()
            if stripped.startswith("$ "):
                text = stripped[2:]
                hidden.append(Command(line, text, section, block, None, 0, hidden=True))
            elif hidden:
                hidden[-1].text += "\n" + raw
            elif stripped:
                word, _, value = stripped.partition(" ")
                if word not in ("exit", "file") or not value.strip():
                    raise ValueError(f"README.md:{line}: unknown test marker {stripped!r}")
                directives[word] = value.strip()
    return directives, hidden


def _console_commands(block: _Block) -> list[Command]:
    commands: list[Command] = []
    continued = False
    for offset, raw in enumerate(block.text.splitlines()):
        line = block.line + 1 + offset
        if continued:
            commands[-1].text += "\n" + raw
        elif raw.startswith("$ "):
            commands.append(Command(line, raw[2:], block.section, block.line, []))
        elif commands and commands[-1].shown is not None:
            commands[-1].shown.append((line, raw))
        else:
            raise ValueError(f"README.md:{line}: output before any `$ ` command")
        continued = raw.endswith("\\")
    for index, command in enumerate(commands[:-1]):
        after = commands[index + 1]
        status = [text.strip() for _, text in after.shown or [] if text.strip()]
        if after.text.strip() == "echo $?" and status and status[0].isdigit():
            command.expect = int(status[0])
    for command in commands:
        shown = [text for _, text in command.shown or [] if text.strip()]
        if shown and shown[0].startswith("error:") and command.expect == 0:
            command.expect = None
    return commands


def _sh_commands(block: _Block) -> list[Command]:
    commands: list[Command] = []
    continued = False
    for offset, raw in enumerate(block.text.splitlines()):
        line = block.line + 1 + offset
        if continued:
            commands[-1].text += "\n" + raw
        elif raw.strip() and not raw.lstrip().startswith("#"):
            commands.append(Command(line, raw.strip(), block.section, block.line))
        continued = raw.endswith("\\")
    return commands


def parse_readme(readme: str) -> list[Step]:
    """The README's commands and files, in document order."""
    elements = _elements(readme)
    steps: list[Step] = []
    markers: list[_Marker] = []
    for index, element in enumerate(elements):
        if isinstance(element, _Marker):
            markers.append(element)
            continue
        if not isinstance(element, _Block):
            if isinstance(element, _Heading) and markers:
                raise ValueError(f"README.md:{markers[0].line}: a test marker before a heading")
            continue
        directives, hidden = _marker_parts(markers, element.section, element.line)
        markers = []
        steps.extend(hidden)
        if element.language in SHELLS:
            commands = (
                _console_commands(element)
                if element.language == "console"
                else _sh_commands(element)
            )
            if "exit" in directives:
                _expect(commands, directives["exit"], element.line)
            steps.extend(commands)
            continue
        name = directives.get("file") or _save_name(elements, index)
        if name:
            steps.append(SaveFile(element.line, name, element.text + "\n", element.section))
    if markers:
        raise ValueError(f"README.md:{markers[0].line}: a test marker with no block after it")
    return steps


def _expect(commands: list[Command], directive: str, line: int) -> None:
    """``exit N``: the last command exits N; ``exit N PREFIX``: the commands starting
    with PREFIX do."""
    status, _, prefix = directive.partition(" ")
    chosen = [c for c in commands if _one_line(c.text).startswith(prefix.strip())]
    if not status.isdigit() or not chosen:
        raise ValueError(f"README.md:{line}: `exit {directive}` names no command of the block")
    for command in chosen if prefix.strip() else chosen[-1:]:
        command.expect = int(status)


def _save_name(elements: list[_Element], index: int) -> str | None:
    before = next((e for e in reversed(elements[:index]) if not isinstance(e, _Marker)), None)
    if isinstance(before, _Prose):
        named = SAVE_BEFORE.findall(before.text)
        if named:
            return str(named[-1])
    after = elements[index + 1] if index + 1 < len(elements) else None
    if isinstance(after, _Prose):
        said = SAVE_AFTER.match(after.text)
        if said:
            return said[1]
    return None


def commands(steps: Iterable[Step]) -> list[Command]:
    return [step for step in steps if isinstance(step, Command)]


# --- comparing output ------------------------------------------------------------------

# Volatile parts, matched by kind; "key" and "hex" values are learned (shown -> real).
VOLATILE = {
    "key": (r"fm_[0-9a-f]{16}_[A-Za-z0-9_-]{20,}", r"fm_[0-9a-f]+_[A-Za-z0-9_-]+"),
    "token": (r"eyJ[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?", r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?"),
    "time": (
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?",
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?",
    ),
    "stamp_id": (r"\b\d{8}T\d{6,}Z-[0-9a-f]{6,}\b", r"\d{8}T\d+Z-[0-9a-f]+"),  # dev mailbox ids
    "hex": (r"(?<![0-9A-Za-z])[0-9a-f]{12,}(?![0-9A-Za-z])", r"[0-9a-f]+"),
    "folder": (r"(?<![\w.:/<])/(?:[\w.-]+/)+(?=[\w.-])", r"/(?:[^\s/]+/)*"),  # /home/me/x/
    "duration": (r"\b(?:\d+(?:\.\d+)?(?:ms|[smhdw]))+\b", r"(?:\d+(?:\.\d+)?(?:ms|[smhdw]))+"),
    "elision": (r"\.\.\.|…", r".*"),
}
LEARNED_KINDS = ("key", "stamp_id", "hex")
_VOLATILE = re.compile("|".join(f"(?P<{kind}>{shown})" for kind, (shown, _) in VOLATILE.items()))


def normalise(line: str) -> str:
    """Whitespace collapsed; rich rules and box edges of any width alike."""
    line = re.sub("([─━═])[─━═]+", r"\1", line).strip().strip("│").strip()
    return " ".join(line.split())


def shown_pattern(line: str) -> tuple[re.Pattern[str], list[tuple[str, str]]]:
    """A regex for a shown line, and the (kind, shown value) of each group in it."""
    text = normalise(line)
    parts: list[str] = []
    groups: list[tuple[str, str]] = []
    position = 0
    for found in _VOLATILE.finditer(text):
        kind = found.lastgroup or ""
        parts.append(re.escape(text[position : found.start()]))
        if kind == "elision":
            parts.append(".*")
        else:
            parts.append(f"({VOLATILE[kind][1]})")
            groups.append((kind, found[0]))
        position = found.end()
    parts.append(re.escape(text[position:]))
    return re.compile("".join(parts)), groups


def is_elision(line: str) -> bool:
    return normalise(line) in ("", "...", "…")


def match_output(
    shown: list[tuple[int, str]], real: str, learned: dict[str, str]
) -> list[tuple[int, str]]:
    """The shown lines not found in the real output; learns ids and keys on the way."""
    lines = [normalise(line) for line in real.splitlines()]
    missing: list[tuple[int, str]] = []
    for number, text in shown:
        if is_elision(text):
            continue
        pattern, groups = shown_pattern(text)
        found = next((m for m in map(pattern.fullmatch, lines) if m), None)
        if found is None:
            missing.append((number, text))
            continue
        for (kind, value), got in zip(groups, found.groups(), strict=True):
            if kind in LEARNED_KINDS and value != got:
                learned.setdefault(value, got)
    return missing


# --- running ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LongRunning:
    pattern: re.Pattern[str]
    port_settings: tuple[str, ...]  # settings naming the ports it listens on


LONG_RUNNING = [
    LongRunning(re.compile(r"\bflowmail serve\b"), ("FLOWMAIL_API_PORT",)),
    LongRunning(re.compile(r"\bflowmail up\b"), ("FLOWMAIL_API_PORT", "FLOWMAIL_SMTP_PORT")),
    LongRunning(re.compile(r"\bflowmail sink\b"), ("FLOWMAIL_SMTP_PORT",)),
    LongRunning(re.compile(r"\bflowmail (?:worker|sender)\b(?!.*--drain)"), ()),
    LongRunning(re.compile(r"\bpython[\d.]* -m aiosmtpd\b"), ()),
    LongRunning(re.compile(r"^make run\b"), ("FLOWMAIL_API_PORT", "FLOWMAIL_SMTP_PORT")),
]
EXPLICIT_PORT = re.compile(r"(?:--(?:api-|smtp-)?port[ =]|-l \S*:|--listen[ =]\S*:)(\d+)")


def long_running(command: Command) -> LongRunning | None:
    text = _one_line(command.text)
    if "--help" in text:
        return None
    return next((kind for kind in LONG_RUNNING if kind.pattern.search(text)), None)


@dataclass
class Background:
    command: Command
    process: subprocess.Popen[bytes]
    log: Path
    ports: set[int]
    after_stop: list[tuple[int, str]]  # shown lines after a ``^C`` line
    stopped: bool = False


def free_port_like(port: int, taken: set[int]) -> int:
    """A free TCP port with as many digits as ``port`` (so output wraps the same)."""
    low, high = 10 ** (len(str(port)) - 1), 10 ** len(str(port)) - 1
    low = max(low, 1024)
    for _ in range(500):
        candidate = random.randint(low, high)
        if candidate in taken or candidate == port:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        return candidate
    raise RuntimeError(f"no free port like {port}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class CannotRun:
    """An allow-list entry: commands that cannot run here, and why."""

    pattern: str  # a regex matched at the start of the command (continuation lines joined)
    reason: str
    whole_block: bool = False  # the block's later commands depend on it: skip them too

    def matches(self, command: Command) -> bool:
        return re.match(self.pattern, _one_line(command.text)) is not None


@dataclass
class Outcome:
    command: Command
    status: int | None = None
    seconds: float = 0.0
    skipped: str = ""  # the allow-list's reason


class ReadmeRun:
    """Runs steps in one folder; ``problems`` collects what went wrong, each naming the
    README line and command."""

    def __init__(
        self,
        folder: Path,
        root: Path,
        ports: dict[int, int],
        cannot_run: Iterable[CannotRun],
    ) -> None:
        self.folder = folder / "work"
        self.state = folder / "state"
        self.folder.mkdir()
        self.state.mkdir()
        for name in ("examples", "templates"):
            shutil.copytree(root / name, self.folder / name)
        (self.folder / ".venv").symlink_to(Path(sys.prefix))
        self.ports = ports
        self.cannot_run = list(cannot_run)
        self.env = self._clean_env(ports)
        self.cwd = self.folder
        self.status = 0
        self.learned: dict[str, str] = {}
        self.background: list[Background] = []
        self.problems: list[str] = []
        self.outcomes: list[Outcome] = []
        self._skip_block: int | None = None

    @staticmethod
    def _clean_env(ports: dict[int, int]) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("FLOWMAIL_", "VIRTUAL_ENV", "PYTEST_", "COV_"))
        }
        env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.update(COLUMNS=str(COLUMNS), LINES="50", TERM="dumb", PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        api = Settings.model_fields["api_port"].default
        smtp = Settings.model_fields["smtp_port"].default
        env["FLOWMAIL_API_PORT"] = str(ports.get(api, api))
        env["FLOWMAIL_SMTP_PORT"] = str(ports.get(smtp, smtp))
        env["FLOWMAIL_PUBLIC_URL"] = f"http://127.0.0.1:{ports.get(api, api)}"
        return env

    # -- text ------------------------------------------------------------------------

    def rewrite(self, text: str) -> str:
        """The README's ports made ours, and made-up keys and ids made real."""
        for readme_port, port in self.ports.items():
            text = re.sub(rf"\b{readme_port}\b", str(port), text)
        for shown in sorted(self.learned, key=len, reverse=True):
            text = text.replace(shown, self.learned[shown])
        return text

    # -- steps -----------------------------------------------------------------------

    def run(self, step: Step) -> None:
        if isinstance(step, SaveFile):
            path = self.cwd / step.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.rewrite(step.text), encoding="utf-8")
            return
        if self._skip_block == step.block and not step.hidden:
            self.outcomes.append(Outcome(step, skipped="after an allow-listed command"))
            return
        for entry in self.cannot_run:
            if entry.matches(step):
                self.outcomes.append(Outcome(step, skipped=entry.reason))
                if entry.whole_block:
                    self._skip_block = step.block
                return
        if long_running(step):
            self._start(step)
        else:
            self._foreground(step)

    def _script(self, command: Command, dump: bool) -> str:
        lines = ["set -a", f"(exit {self.status})", self.rewrite(command.text)]
        if dump:
            lines += [
                "__readme_status=$?",
                f"env -0 > {self.state / 'env'}",
                f"pwd > {self.state / 'cwd'}",
                "exit $__readme_status",
            ]
        return "\n".join(lines) + "\n"

    def _foreground(self, command: Command) -> None:
        started = time.monotonic()
        outcome = Outcome(command)
        self.outcomes.append(outcome)
        try:
            done = subprocess.run(
                ["bash", "-c", self._script(command, dump=True)],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=COMMAND_SECONDS,
            )
        except subprocess.TimeoutExpired as expired:
            self.problems.append(
                f"{command.where}\n  did not finish within {COMMAND_SECONDS:.0f} s "
                "(if it is meant to keep running, teach tests/readme_runner.py LONG_RUNNING)"
                + _excerpt("output", _text(expired.stdout) + _text(expired.stderr))
            )
            outcome.seconds = time.monotonic() - started
            return
        outcome.seconds = time.monotonic() - started
        outcome.status = self.status = done.returncode
        self._load_state()
        output = done.stdout + done.stderr
        wrong: list[str] = []
        if command.expect is None and done.returncode == 0:
            wrong.append("exit status 0, but the README shows an error")
        elif command.expect is not None and done.returncode != command.expect:
            wrong.append(f"exit status {done.returncode}, expected {command.expect}")
        if command.shown:
            shown = [(n, self.rewrite(t)) for n, t in command.shown]
            missing = match_output(shown, output, self.learned)
            if missing:
                wrong.append(_missing(missing))
        if wrong:
            self.problems.append(
                f"{command.where}\n"
                + "\n".join(f"  {w}" for w in wrong)
                + _excerpt("output", output)
            )

    def _load_state(self) -> None:
        raw = (self.state / "env").read_bytes().decode(errors="replace")
        env = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
        for name in ("_", "SHLVL", "PWD", "OLDPWD", "__readme_status"):
            env.pop(name, None)
        self.env = env
        self.cwd = Path((self.state / "cwd").read_text().strip())

    def _start(self, command: Command) -> None:
        kind = long_running(command)
        assert kind is not None
        text = self.rewrite(command.text)
        explicit = {int(port) for port in EXPLICIT_PORT.findall(_one_line(text))}
        ports = explicit or {int(self.env[name]) for name in kind.port_settings if name in self.env}
        for other in self.background:
            if not other.stopped and other.ports & ports:
                self._stop(other)
        log = self.state / f"background-{command.line}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", self._script(command, dump=False)],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        shown = [(n, self.rewrite(t)) for n, t in command.shown or []]
        interrupt = next((i for i, (_, t) in enumerate(shown) if normalise(t) == "^C"), None)
        after_stop = shown[interrupt + 1 :] if interrupt is not None else []
        shown = shown[:interrupt]
        running = Background(command, process, log, ports, after_stop)
        self.background.append(running)
        outcome = Outcome(command)
        self.outcomes.append(outcome)
        started = time.monotonic()
        missing = shown
        while time.monotonic() - started < READY_SECONDS:
            if process.poll() is not None:
                break
            up = all(port_open(port) for port in ports)
            missing = match_output(shown, log.read_text(errors="replace"), self.learned)
            if up and not missing and time.monotonic() - started > 0.3:
                outcome.seconds = time.monotonic() - started
                return
            time.sleep(0.1)
        outcome.seconds = time.monotonic() - started
        output = log.read_text(errors="replace")
        if process.poll() is not None:
            problem = f"exited with status {process.returncode} instead of running on"
        elif not all(port_open(port) for port in ports):
            problem = f"ports {sorted(ports)} not open after {READY_SECONDS:.0f} s"
        else:
            problem = _missing(missing)
        self.problems.append(f"{command.where}\n  {problem}" + _excerpt("output", output))
        running.after_stop = []  # reported once, here
        self._stop(running)

    def _stop(self, running: Background) -> None:
        """Ctrl-C (SIGINT to its process group), then the lines the README shows after
        ``^C`` must be there."""
        running.stopped = True
        if running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGINT)
            try:
                running.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(running.process.pid, signal.SIGKILL)
                running.process.wait()
                self.problems.append(
                    f"{running.command.where}\n  did not stop within {STOP_SECONDS:.0f} s of "
                    "Ctrl-C (SIGINT)"
                )
        output = running.log.read_text(errors="replace")
        missing = match_output(running.after_stop, output, self.learned)
        if missing:
            self.problems.append(
                f"{running.command.where}\n  once stopped: {_missing(missing)}"
                + _excerpt("output", output)
            )

    def close(self) -> None:
        """Stop what is still running; one that died on its own is a problem."""
        for running in self.background:
            if running.stopped:
                continue
            if running.process.poll() is not None:
                self.problems.append(
                    f"{running.command.where}\n  stopped on its own "
                    f"(status {running.process.returncode}) before the end of the README"
                    + _excerpt("output", running.log.read_text(errors="replace"))
                )
            self._stop(running)

    def __enter__(self) -> ReadmeRun:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _missing(lines: list[tuple[int, str]]) -> str:
    listed = "\n".join(f"    README.md:{number}: {text}" for number, text in lines)
    return f"these shown lines are not in the output:\n{listed}"


def _excerpt(title: str, text: str, limit: int = 40) -> str:
    lines = text.rstrip("\n").splitlines()
    if len(lines) > limit:
        lines = [*lines[: limit // 2], "  [...]", *lines[-limit // 2 :]]
    body = "\n".join(f"    | {line}" for line in lines) or "    (none)"
    return f"\n  {title}:\n{body}"
