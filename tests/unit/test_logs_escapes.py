"""`hostplane logs` prints lines tenant code wrote: their terminal control sequences show as
escapes (pretty output, on a terminal or not) and stay JSON-escaped with --json."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from hostplane import cli_logs
from hostplane.cli_logs import parse_line, printable, render

CLEAR = "\x1b[2J\x1b[H"  # CSI: clear the screen, cursor home
TITLE = "\x1b]0;pwned\x07"  # OSC: set the window title
LINK = "\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\"  # OSC 8 hyperlink
C1_CSI = "\x9b31m"  # the one-byte CSI
OTHER = "\r\b\x7f\x00\x0b\x0c\u202e"  # carriage return, backspace, DEL, NUL, VT, FF, right-to-left override
HOSTILE = "a" + CLEAR + TITLE + LINK + C1_CSI + OTHER + "z"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_printable_escapes_control_characters_and_keeps_the_rest():
    assert printable(CLEAR) == "\\x1b[2J\\x1b[H"
    assert printable(C1_CSI) == "\\x9b31m"
    assert printable(OTHER) == "\\x0d\\x08\\x7f\\x00\\x0b\\x0c\\u202e"
    assert printable("tab\tnew\nline é 漢字 \U0001f600 \\x1b") == "tab\tnew\nline é 漢字 \U0001f600 \\x1b"
    assert not CONTROL.search(printable(HOSTILE))


def _record(**extra) -> str:
    return json.dumps({"timestamp": "2026-01-01T00:00:01Z", "level": "info", **extra})


def test_every_part_of_a_pretty_line_is_neutralised():
    line = parse_line("runtime-acme", _record(event=HOSTILE, tenant_id="acme" + CLEAR, event_type=TITLE,
                                              correlation_id="\x1b[1m", level="info\x1b[5m",
                                              **{"key" + TITLE: HOSTILE, "nested": {"v": HOSTILE}}))
    text = render(line).plain
    assert not CONTROL.search(text), repr(text)
    assert "\\x1b[2J" in text and "\\x1b]0;pwned\\x07" in text and "\\x9b31m" in text


@pytest.fixture
def logs_home(tmp_path, monkeypatch):
    """A home whose reloader log holds one line of hostile app output."""
    from core import settings as settings_mod

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "runtime-acme.log").write_text(
        _record(event="app.output", line=HOSTILE, tenant_id="acme") + "\n", encoding="utf-8")
    monkeypatch.setenv("HOSTPLANE_HOME", str(tmp_path))
    settings_mod.get_settings.cache_clear()
    yield tmp_path
    settings_mod.get_settings.cache_clear()


def test_on_a_terminal_only_the_consoles_own_styles_are_sequences(logs_home, monkeypatch):
    from hostplane.cli import app

    screen = io.StringIO()
    monkeypatch.setattr(cli_logs, "console", Console(file=screen, force_terminal=True, color_system="truecolor",
                                                     highlight=False, soft_wrap=True))
    result = CliRunner().invoke(app, ["logs"])
    assert result.exit_code == 0, result.output
    out = screen.getvalue()
    assert "\x1b[3" in out or "\x1b[1" in out, "the console styled its own output"
    styles_removed = re.sub(r"\x1b\[[0-9;]*m", "", out)  # SGR colours the console itself wrote
    assert not CONTROL.search(styles_removed.replace("\n", "")), repr(styles_removed)
    assert "\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07" in styles_removed and "\\x9b31m" in styles_removed


def test_plain_output_has_no_control_characters(logs_home):
    from hostplane.cli import app

    result = CliRunner().invoke(app, ["logs"])
    assert result.exit_code == 0, result.output
    assert "app.output" in result.output and not CONTROL.search(result.output.replace("\n", ""))


def test_json_output_stays_json_escaped_and_exact(logs_home):
    from hostplane.cli import app

    result = CliRunner().invoke(app, ["logs", "--json"])
    assert result.exit_code == 0, result.output
    assert not CONTROL.search(result.output.replace("\n", ""))
    [record] = [json.loads(raw) for raw in result.output.splitlines()]
    assert record["line"] == HOSTILE  # the value itself, unchanged, for whoever reads the JSON
