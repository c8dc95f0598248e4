"""`hostplane logs --follow`: after the first page, only the lines written since, of every
log file (new ones too), filtered like the first page, until Ctrl-C.

The poll loop is driven one poll at a time (`next`), so nothing waits on the clock."""

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from hostplane import cli_logs
from hostplane.cli_logs import follow, log_files, matches, read_file

pytestmark = pytest.mark.timeout(10)


def _line(ts: str, event: str, **kw) -> str:
    return json.dumps({"timestamp": f"2026-01-01T00:00:{ts}Z", "level": "info", "event": event, **kw}) + "\n"


def _append(path, text: str) -> None:
    with path.open("a") as fh:
        fh.write(text)


def _start(home, tenant=None, correlation=None, as_json=True):
    """Following as the command does: offsets from the first read, then poll every 10 ms."""
    offsets = {path: read_file(path)[1] for path in log_files(home)}
    return follow(home, offsets, lambda line: matches(line, tenant, correlation, None), as_json, interval=0.01)


def _printed(capsys) -> list[dict]:
    return [json.loads(raw) for raw in capsys.readouterr().out.splitlines()]  # each line valid JSON


@pytest.fixture
def home(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "api.log").write_text(_line("01", "api.old", tenant_id="acme"))
    return tmp_path


def test_follow_prints_only_new_matching_lines_of_old_and_new_files(home, capsys):
    api = home / "logs" / "api.log"
    polls = _start(home, tenant="acme")
    next(polls)
    assert capsys.readouterr().out == "", "lines read before following are not printed again"

    _append(api, _line("04", "api.new", tenant_id="acme") + _line("05", "api.zeta", tenant_id="zeta")
            + "plain text from a server\n" + _line("06", "api.late", tenant_id="acme")[:30])  # half-written
    (home / "logs" / "builder.log").write_text(_line("03", "builder.new", tenant_id="acme"))  # appeared since
    next(polls)
    printed = _printed(capsys)
    assert [r["event"] for r in printed] == ["builder.new", "api.new"]  # one poll, in time order
    assert printed[0]["service"] == "builder"

    _append(api, _line("06", "api.late", tenant_id="acme")[30:])
    next(polls)
    assert [r["event"] for r in _printed(capsys)] == ["api.late"]  # once complete, and only it
    next(polls)
    assert capsys.readouterr().out == ""
    polls.close()  # the command's Ctrl-C: the generator ends without error


def test_follow_reads_a_file_anew_when_it_was_truncated_or_replaced(home, capsys):
    api = home / "logs" / "api.log"
    _append(api, "".join(_line(f"{s:02}", "api.padding", tenant_id="acme") for s in range(2, 9)))
    polls = _start(home, as_json=False)
    next(polls)
    assert capsys.readouterr().out == ""

    api.rename(home / "logs" / "api.log.1")  # rotated away: no longer a *.log, never read again
    api.write_text(_line("10", "api.restarted", tenant_id="acme"))  # a new, shorter file at the same path
    next(polls)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("00:00:10.000 api") and "api.restarted tenant=acme" in out[0]

    api.write_text("")  # truncated in place, then written again
    next(polls)
    _append(api, _line("11", "api.after_truncate"))
    next(polls)
    assert "api.after_truncate" in capsys.readouterr().out
    polls.close()


@pytest.mark.parametrize("flag", ["--follow", "-f"])
def test_the_command_follows_with_its_filters_until_interrupted(home, monkeypatch, flag):
    from core import settings as settings_mod
    from hostplane.cli import app

    logs = home / "logs"
    abc = {"tenant_id": "acme", "correlation_id": "abc12345-0000"}
    _append(logs / "api.log", _line("02", "api.first_page", **abc))

    def more_api_lines():
        _append(logs / "api.log", _line("03", "api.followed", **abc)
                + _line("04", "api.other_request", tenant_id="acme", correlation_id="ffff0000-0000")
                + _line("05", "api.other_tenant", tenant_id="zeta", correlation_id="abc12345-0000"))

    def a_reloader_starts():  # runtime-<tenant>.log: the tenant comes from the file name
        (logs / "runtime-acme.log").write_text(_line("06", "swap.done", correlation_id="abc12345-0000"))

    steps = [more_api_lines, a_reloader_starts]
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # between polls: write the next lines, then Ctrl-C
        waits.append(seconds)
        if not steps:
            raise KeyboardInterrupt
        steps.pop(0)()

    monkeypatch.setattr(cli_logs, "time", SimpleNamespace(sleep=sleep))
    monkeypatch.setenv("HOSTPLANE_HOME", str(home))
    settings_mod.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["logs", flag, "--tenant", "acme", "--correlation", "abc1", "--json",
                                          "-n", "1"])
    finally:
        settings_mod.get_settings.cache_clear()
    assert result.exit_code == 0, result.output  # Ctrl-C ends it cleanly
    records = [json.loads(raw) for raw in result.stdout.splitlines()]
    assert [(r["event"], r["service"]) for r in records] == [
        ("api.first_page", "api"), ("api.followed", "api"), ("swap.done", "reloader")]
    assert waits == [0.5, 0.5, 0.5]  # three polls after the first page, half a second apart
