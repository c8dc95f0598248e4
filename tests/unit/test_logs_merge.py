"""`hostplane logs`: parsing, merging in time order, filtering, pretty output."""

import json

from typer.testing import CliRunner

from hostplane.cli_logs import matches, merge, parse_line, read_file, render


def _line(ts: str, **kw) -> str:
    return json.dumps({"timestamp": ts, "level": "info", "event": kw.pop("event", "x"), **kw})


def test_lines_from_several_files_merge_in_time_order(tmp_path):
    (tmp_path / "api.log").write_text(_line("2026-01-01T00:00:01Z", event="a1", service="api") + "\n"
                                      + "plain text from a server\n"
                                      + _line("2026-01-01T00:00:03Z", event="a3", service="api") + "\n")
    (tmp_path / "builder.log").write_text(_line("2026-01-01T00:00:02.5Z", event="b2") + "\n"
                                          + _line("2026-01-01T00:00:04Z", event="partial"))  # no newline yet
    groups = [read_file(tmp_path / name)[0] for name in ("api.log", "builder.log")]
    merged = merge(groups)
    assert [line.record["event"] for line in merged] == ["a1", "b2", "a3"]
    assert merged[1].record["service"] == "builder"  # from the file name when the line has none


def test_read_file_resumes_after_the_last_complete_line(tmp_path):
    path = tmp_path / "api.log"
    path.write_text(_line("2026-01-01T00:00:01Z", event="one") + "\n" + '{"timestamp": "2026-01-01T00:0')
    lines, offset = read_file(path)
    assert [line.record["event"] for line in lines] == ["one"]
    with path.open("a") as fh:
        fh.write('0:02Z", "event": "two"}\n')
    more, _ = read_file(path, offset)
    assert [line.record["event"] for line in more] == ["two"]


def test_filters_by_tenant_correlation_and_service():
    line = parse_line("provisioner", _line("2026-01-01T00:00:01Z", tenant_id="acme",
                                           correlation_id="1234abcd-0000", service="provisioner"))
    assert matches(line, "acme", None, None) and not matches(line, "other", None, None)
    assert matches(line, None, "1234", None) and not matches(line, None, "9999", None)
    assert matches(line, None, None, "provisioner") and not matches(line, None, None, "api")


def test_reloader_files_name_their_tenant_and_caddy_times_are_read():
    line = parse_line("runtime-acme", _line("2026-01-01T00:00:01Z", event="swap.done"))
    assert line.record["service"] == "reloader" and line.record["tenant_id"] == "acme"
    caddy = parse_line("caddy", json.dumps({"ts": 1767225601.5, "level": "info", "msg": "started"}))
    assert caddy.record["event"] == "started" and caddy.at.year == 2026
    assert parse_line("api", "not json") is None and parse_line("api", '{"no": "time"}') is None


def test_pretty_output_shows_context():
    line = parse_line("api", _line("2026-01-01T12:00:01.250Z", event="message.handled", tenant_id="acme",
                                   event_type="TenantRequested", correlation_id="abcdef12-3456", receive_count=1))
    text = render(line).plain
    assert text.startswith("12:00:01.250 api") and "message.handled" in text
    assert "tenant=acme" in text and "event=TenantRequested" in text and "correlation=abcdef12" in text
    assert "receive_count=1" in text


def test_the_command_merges_and_filters(tmp_path, monkeypatch):
    from core import settings as settings_mod
    from hostplane.cli import app

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "api.log").write_text(_line("2026-01-01T00:00:02Z", event="two", tenant_id="acme") + "\n")
    (tmp_path / "logs" / "builder.log").write_text(
        _line("2026-01-01T00:00:01Z", event="one", tenant_id="acme") + "\n"
        + _line("2026-01-01T00:00:03Z", event="other", tenant_id="zeta") + "\n")
    monkeypatch.setenv("HOSTPLANE_HOME", str(tmp_path))
    settings_mod.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["logs", "--tenant", "acme", "--json"])
    finally:
        settings_mod.get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["event"] for x in result.output.splitlines()] == ["one", "two"]
