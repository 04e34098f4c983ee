"""Every command in README.md is run, for real, so the README cannot rot.

``tests/unit/test_readme.py`` checks that the README's commands exist; this runs them,
in document order, in one fresh folder, as a reader following along would: the tour's
state carries on from section to section, servers start in the background, ``curl``
talks to them, and what the README shows as output must be what they print. The rules
(which lines are commands, markers, exit statuses, what is long-running, how output is
compared) are in ``tests/readme_runner.py``; the commands that cannot run here are
listed below with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flowmail.settings import Settings
from readme_runner import (
    CannotRun,
    Command,
    ReadmeRun,
    SaveFile,
    commands,
    free_port_like,
    long_running,
    match_output,
    parse_readme,
)

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# Commands that cannot run here, and why. Everything else in the README runs: keep this
# list short.
CANNOT_RUN = [
    CannotRun(
        r"make (run|test|unit|lint|bench|clean)\b",
        "the project's own Makefile, in the repository rather than a reader's folder: "
        "`make run` is tests/e2e/test_first_run.py (a fresh clone), `make test`, `unit` "
        "and `lint` are this very test run, `make bench` takes minutes and `make clean` "
        "deletes the virtualenv",
    ),
    CannotRun(
        r"export FLOWMAIL_DATABASE_URL=postgresql\+psycopg://\S*@db\.internal/",
        "needs the PostgreSQL server at db.internal that the example names; the rest of "
        "its block runs against it",
        whole_block=True,
    ),
    CannotRun(
        r"flowmail messages retry ",
        "the tour has no dead, failed, unknown or skipped message to retry: its one email "
        "was sent (retry is tested in tests/integration)",
    ),
]
MOST_CANNOT_RUN = 4

STEPS = parse_readme(README)
COMMANDS = commands(STEPS)


def _ports() -> dict[int, int]:
    """The README's API and SMTP ports -> free ones of as many digits."""
    api = Settings.model_fields["api_port"].default
    smtp = Settings.model_fields["smtp_port"].default
    ours = free_port_like(api, set())
    return {api: ours, smtp: free_port_like(smtp, {ours})}


def test_every_readme_command_runs_and_prints_what_the_readme_shows(tmp_path: Path) -> None:
    started = time.monotonic()
    with ReadmeRun(tmp_path, ROOT, _ports(), CANNOT_RUN) as run:
        for step in STEPS:
            run.run(step)
    seconds = time.monotonic() - started
    assert not run.problems, (
        f"{len(run.problems)} README command(s) went wrong (fix the README, or the code; "
        f"rules in tests/readme_runner.py):\n\n" + "\n\n".join(run.problems)
    )
    assert [o.command for o in run.outcomes] == COMMANDS, "not every command was run"
    ran = [o for o in run.outcomes if not o.skipped]
    assert len(ran) >= 40, f"only {len(ran)} commands ran"
    assert any(long_running(o.command) for o in ran), "no server was started"
    assert any(o.command.text.startswith("curl") for o in ran), "no curl command ran"
    slowest = sorted(ran, key=lambda o: o.seconds, reverse=True)[:5]
    print(f"\nREADME commands: {len(ran)} run in {seconds:.1f} s; slowest:")
    for outcome in slowest:
        print(f"  {outcome.seconds:5.1f} s  README.md:{outcome.command.line}")


def test_the_allow_list_is_short_and_every_entry_is_still_in_the_readme() -> None:
    assert len(CANNOT_RUN) <= MOST_CANNOT_RUN, "run these commands instead of listing them"
    for entry in CANNOT_RUN:
        assert entry.reason.strip(), f"{entry.pattern}: say why it cannot run"
        assert any(map(entry.matches, COMMANDS)), (
            f"the allow-listed {entry.pattern!r} is no longer in the README: remove it"
        )


def test_the_runner_finds_what_the_readme_has() -> None:
    """The parsing rules still see the README: commands with output, statuses from the
    output, files to save, a background server."""
    assert len(COMMANDS) >= 40
    assert sum(bool(c.shown) for c in COMMANDS) >= 30
    assert any(c.expect is None for c in COMMANDS), "no command showing `error:`"
    assert any(c.expect not in (0, None) for c in COMMANDS), "no `echo $?` or exit marker"
    assert any(isinstance(s, SaveFile) for s in STEPS), "no block is saved as a file"
    assert any(long_running(c) for c in COMMANDS)


# --- the rules, on small READMEs ----------------------------------------------------------

SAMPLE = """\
# Tool

## Start

Save this as `hello.py`:

```python
print("hello")
```

```console
$ python hello.py
hello
$ tool check \\
    --strict bad.yaml
✗ bad.yaml: wrong
$ echo $?
1
$ tool list
error: no database
```

```yaml
a: 1
```

Saved as `conf/a.yaml`, it sets a.

<!-- test: exit 3 flowmail workflows migrate
$ printf 'x\\n' > made.txt
$ cat > b.txt <<'EOF'
two
EOF
-->
```sh
flowmail workflows migrate w --to 2   # moves runs
flowmail serve
flowmail worker --drain
```
"""


def test_console_blocks_become_commands_with_output_and_statuses() -> None:
    steps = parse_readme(SAMPLE)
    assert [type(s).__name__ for s in steps] == [
        "SaveFile",
        "Command",
        "Command",
        "Command",
        "Command",
        "SaveFile",
        "Command",
        "Command",
        "Command",
        "Command",
        "Command",
    ]
    hello, check, echo, listed = (s for s in steps[1:5] if isinstance(s, Command))
    assert (hello.line, hello.text, hello.shown, hello.expect) == (
        12,
        "python hello.py",
        [(13, "hello")],
        0,
    )
    assert check.text == "tool check \\\n    --strict bad.yaml"
    assert check.shown == [(16, "✗ bad.yaml: wrong")]
    assert check.expect == 1, "the status `echo $?` shows"
    assert echo.expect == 0
    assert listed.expect is None, "output starting with error: means a non-zero status"
    assert next(s.section for s in steps if isinstance(s, Command)) == "Start"


def test_files_are_saved_from_what_the_prose_says() -> None:
    files = [s for s in parse_readme(SAMPLE) if isinstance(s, SaveFile)]
    assert [(f.path, f.text) for f in files] == [
        ("hello.py", 'print("hello")\n'),
        ("conf/a.yaml", "a: 1\n"),
    ]
    marked = parse_readme("<!-- test: file x.json -->\n```json\n{}\n```\n")
    assert marked == [SaveFile(2, "x.json", "{}\n", "")]
    unnamed = parse_readme("Look at this:\n\n```python\nprint(1)\n```\n")
    assert unnamed == []


def test_markers_add_hidden_commands_and_exit_statuses() -> None:
    steps = parse_readme(SAMPLE)
    made, heredoc, migrate, serve, drain = (s for s in steps[6:] if isinstance(s, Command))
    assert made.hidden and made.text == "printf 'x\\n' > made.txt"
    assert made.line == SAMPLE.splitlines().index("$ printf 'x\\n' > made.txt") + 1
    assert heredoc.hidden and heredoc.text == "cat > b.txt <<'EOF'\ntwo\nEOF"
    assert not migrate.hidden and migrate.expect == 3 and migrate.shown is None
    assert serve.expect == 0 and long_running(serve) is not None
    assert long_running(drain) is None
    listed, pwd = parse_readme("Text.\n\n<!-- test:\n$ ls\n-->\n```sh\npwd\n```\n")
    assert isinstance(listed, Command) and (listed.line, listed.text, listed.hidden) == (
        4,
        "ls",
        True,
    )
    assert isinstance(pwd, Command) and (pwd.line, pwd.hidden) == (7, False)
    with pytest.raises(ValueError, match="unknown test marker"):
        parse_readme("<!-- test: skip -->\n```sh\nls\n```\n")
    with pytest.raises(ValueError, match="names no command"):
        parse_readme("<!-- test: exit 1 nothing -->\n```sh\nls\n```\n")
    with pytest.raises(ValueError, match="no block after it"):
        parse_readme("```sh\nls\n```\n<!-- test: exit 1 -->\n")


def test_shown_output_is_compared_loosely_and_teaches_the_real_ids() -> None:
    real = (
        "fm_0123456789abcdef_RealSecretRealSecretReal\n"
        "key 0123456789abcdef (admin, workspace default): shown only this once\n"
        "───────── 2 run(s) ─────────\n"
        "│ Hi Ana      │\n"
        "2026-01-02T03:04:05.678Z  sent  tries 1\n"
        '[{"id":"20260102T030405678000Z-0a1b2c3d"}] in /tmp/pytest-7/work/mailbox\n'
    )
    shown = [
        (1, "fm_6cd62fe3b99130dc_KWM_Yz-JTPDdva3qTfEzP7fhoT2Jxo5gi0Wn111qE80"),
        (2, "key 6cd62fe3b99130dc (admin, workspace default): shown only this once"),
        (3, "...".center(9)),
        (4, "──── 2 run(s) ──────────────────"),
        (5, "│ Hi Ana                          │"),
        (6, "2025-11-25T19:12:40.408410Z  sent     tries ..."),
        (7, "2025-11-25T19:12:40Z  sent  tries 2"),
        (8, '[{"id":"20261125T235218487351Z-5f7ad88b"}] in /home/me/flowmail/mailbox'),
    ]
    learned: dict[str, str] = {}
    missing = match_output(shown, real, learned)
    assert missing == [(7, "2025-11-25T19:12:40Z  sent  tries 2")]
    assert learned == {
        "fm_6cd62fe3b99130dc_KWM_Yz-JTPDdva3qTfEzP7fhoT2Jxo5gi0Wn111qE80": (
            "fm_0123456789abcdef_RealSecretRealSecretReal"
        ),
        "6cd62fe3b99130dc": "0123456789abcdef",
        "20261125T235218487351Z-5f7ad88b": "20260102T030405678000Z-0a1b2c3d",
    }
    assert match_output([(1, "in /home/me/flowmail/outbox")], real, {}) == [
        (1, "in /home/me/flowmail/outbox")
    ]


def test_a_run_keeps_variables_statuses_and_real_keys(tmp_path: Path) -> None:
    """Real bash, on a small README: variables carry over, ``$?`` is the previous
    status, a made-up key shown is replaced by the real one printed in its place."""
    readme = """\
```console
$ printf 'fm_0123456789abcdef_RealSecretRealSecretReal\\n'
fm_6cd62fe3b99130dc_KWM_Yz-JTPDdva3qTfEzP7fhoT2Jxo5gi0Wn111qE80
$ KEY=fm_6cd62fe3b99130dc_KWM_Yz-JTPDdva3qTfEzP7fhoT2Jxo5gi0Wn111qE80
$ export GREETING="hi there"
$ false
$ echo $?
1
$ echo "$KEY $GREETING on 8025" "$FLOWMAIL_API_PORT"
fm_6cd62fe3b99130dc_KWM_Yz-JTPDdva3qTfEzP7fhoT2Jxo5gi0Wn111qE80 hi there on 8025 8025
$ echo wrong
right
$ ls no-such-file
```
"""
    steps = parse_readme(readme)
    with ReadmeRun(tmp_path, ROOT, {8025: 4321}, []) as run:
        for step in steps:
            run.run(step)
    assert [o.status for o in run.outcomes] == [0, 0, 0, 1, 0, 0, 0, 2]
    assert len(run.problems) == 2, run.problems
    wrong, ls = run.problems
    assert wrong.startswith("README.md:11 (): command `echo wrong`\n")
    assert "README.md:12: right" in wrong and "| wrong" in wrong
    assert ls.startswith("README.md:13 (): command `ls no-such-file`\n  exit status 2, expected 0")


def test_a_server_runs_in_the_background_until_the_end(tmp_path: Path) -> None:
    """A long-running command starts in the background on our port, later commands talk
    to it, and what the README shows after ``^C`` is checked once it is stopped."""
    readme = """\
```console
$ flowmail sink --port 1025 --dir mailbox
SMTP sink on 127.0.0.1:1025, keeping emails in /home/me/flowmail/mailbox
^C
stopped after 1 email(s)
$ python -c "import smtplib; smtplib.SMTP('127.0.0.1', 1025).sendmail('a@x.org', 'b@x.org', 'Hi')"
$ ls mailbox | wc -l
1
```
"""
    ports = {1025: free_port_like(1025, set())}
    with ReadmeRun(tmp_path, ROOT, ports, []) as run:
        for step in parse_readme(readme):
            run.run(step)
        sink = run.background[0]
        assert sink.process.poll() is None, "the sink stopped before the end"
        assert sink.ports == {ports[1025]}
        assert run.problems == []
    assert sink.process.returncode == 0
    assert run.problems == []
    assert "stopped after 1 email(s)" in sink.log.read_text()


def test_allow_listed_commands_are_not_run_nor_what_depends_on_them(tmp_path: Path) -> None:
    readme = """\
```console
$ export DB=remote
$ echo $DB
remote
```

```sh
touch not-run
echo still
```
"""
    cannot = [
        CannotRun(r"export DB=", "no remote database", whole_block=True),
        CannotRun(r"touch ", "not here"),
    ]
    with ReadmeRun(tmp_path, ROOT, {}, cannot) as run:
        for step in parse_readme(readme):
            run.run(step)
    assert [(o.command.line, o.skipped, o.status) for o in run.outcomes] == [
        (2, "no remote database", None),
        (3, "after an allow-listed command", None),
        (8, "not here", None),
        (9, "", 0),
    ]
    assert run.problems == []
    assert not (run.folder / "not-run").exists()
