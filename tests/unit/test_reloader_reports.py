"""The agent's reading of a tenant's report file: only the tenant's own runtime events go
out, from where the last round stopped, across rotation, truncation and hostile files."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import structlog

from contracts.envelope import Envelope
from contracts.events_v1 import ReleaseActivated, TenantDeletionRequested
from hostplane.local.agent import reports
from hostplane.local.agent.reports import Cursor, read
from reloader import reporting

SHA = "a" * 64


def activated(version: int = 1) -> ReleaseActivated:
    return ReleaseActivated(version=version, sha256=SHA, swap_ms=5, health_ms=3)


def line(env: Envelope) -> str:
    return env.to_detail() + "\n"


def write(folder: Path, *lines: str, name: str = reports.EVENTS_FILE) -> None:
    with open(folder / name, "a") as fh:
        fh.write("".join(lines))


def test_the_tenants_own_reports_go_out_once_and_the_cursor_moves_past_them(tmp_path):
    reporter = reporting.FileReporter("acme", tmp_path / reports.EVENTS_FILE)
    asyncio.run(reporter.report(activated(1)))
    first = read(tmp_path, "acme", Cursor())
    assert [e.data.version for e in first.envelopes] == [1] and first.refused == []
    assert first.envelopes[0].source == "hostplane.runtime.acme"
    asyncio.run(reporter.report(activated(2)))
    second = read(tmp_path, "acme", first.cursor)
    assert [e.data.version for e in second.envelopes] == [2]
    assert read(tmp_path, "acme", second.cursor).envelopes == []
    assert Cursor.from_json(json.loads(json.dumps(second.cursor.to_json()))) == second.cursor  # kept across restarts


def test_everything_but_the_tenants_own_runtime_events_is_refused(tmp_path):
    own = Envelope.new(activated(), tenant_id="acme", producer="reloader")
    write(tmp_path,
          line(Envelope.new(activated(), tenant_id="victim", producer="reloader")),
          line(Envelope.new(TenantDeletionRequested(), tenant_id="acme", producer="reloader")),
          line(Envelope.new(activated(), tenant_id="acme", producer="api")),
          line(own.as_replay()),
          "not json\n", '{"event_type": "Nope"}\n', "\n",
          line(own))
    batch = read(tmp_path, "acme", Cursor())
    assert [e.event_id for e in batch.envelopes] == [own.event_id]
    assert [r for r, _ in batch.refused] == ["other_tenant", "not_a_runtime_event", "not_a_runtime_event", "replay",
                                             "not_a_known_event", "not_a_known_event"]
    assert ("not_a_runtime_event", "TenantDeletionRequested") in batch.refused


def test_a_half_written_line_waits_for_its_end(tmp_path):
    text = line(Envelope.new(activated(), tenant_id="acme", producer="reloader"))
    write(tmp_path, text[:40])
    batch = read(tmp_path, "acme", Cursor())
    assert batch.envelopes == [] and batch.cursor.offset == 0
    write(tmp_path, text[40:])
    assert len(read(tmp_path, "acme", batch.cursor).envelopes) == 1


def test_an_overlong_line_is_dropped_whole_and_reading_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(reports, "MAX_READ", 4096)
    monkeypatch.setattr(reports, "MAX_LINE", 1024)
    write(tmp_path, "x" * 10_000)
    cursor = Cursor()
    refused = []
    for _ in range(5):
        batch = read(tmp_path, "acme", cursor)
        refused += batch.refused
        cursor = batch.cursor
    assert refused == [("line_too_long", None)] and cursor.skipping
    write(tmp_path, "yyy\n", line(Envelope.new(activated(), tenant_id="acme", producer="reloader")))
    batch = read(tmp_path, "acme", cursor)
    assert len(batch.envelopes) == 1 and batch.refused == [] and not batch.cursor.skipping


def test_a_rotated_file_is_finished_before_the_new_one(tmp_path, monkeypatch):
    monkeypatch.setattr(reporting, "ROTATE_AT", 1)  # every report after the first rotates
    reporter = reporting.FileReporter("acme", tmp_path / reports.EVENTS_FILE)
    asyncio.run(reporter.report(activated(1)))
    cursor = read(tmp_path, "acme", Cursor()).cursor
    asyncio.run(reporter.report(activated(2)))  # written to the old file? no: rotated first
    assert (tmp_path / (reports.EVENTS_FILE + ".1")).exists()
    seen = []
    for _ in range(3):
        batch = read(tmp_path, "acme", cursor)
        seen += [e.data.version for e in batch.envelopes]
        cursor = batch.cursor
    assert seen == [2]


def test_unread_lines_of_a_rotated_file_are_not_lost(tmp_path):
    folder = tmp_path
    write(folder, line(Envelope.new(activated(1), tenant_id="acme", producer="reloader")))
    cursor = read(folder, "acme", Cursor()).cursor
    write(folder, line(Envelope.new(activated(2), tenant_id="acme", producer="reloader")))
    os.replace(folder / reports.EVENTS_FILE, folder / (reports.EVENTS_FILE + ".1"))
    write(folder, line(Envelope.new(activated(3), tenant_id="acme", producer="reloader")))
    seen = []
    for _ in range(3):
        batch = read(folder, "acme", cursor)
        seen += [e.data.version for e in batch.envelopes]
        cursor = batch.cursor
    assert seen == [2, 3]


def test_a_truncated_file_is_read_again_from_the_start(tmp_path):
    write(tmp_path, line(Envelope.new(activated(1), tenant_id="acme", producer="reloader")) * 3)
    cursor = read(tmp_path, "acme", Cursor()).cursor
    (tmp_path / reports.EVENTS_FILE).write_text(line(Envelope.new(activated(4), tenant_id="acme", producer="reloader")))
    assert [e.data.version for e in read(tmp_path, "acme", cursor).envelopes] == [4]


def test_a_symlink_or_a_fifo_is_never_read(tmp_path):
    secret = tmp_path / "credentials.json"
    secret.write_text(line(Envelope.new(activated(), tenant_id="acme", producer="reloader")))
    folder = tmp_path / "runtime"
    folder.mkdir()
    (folder / reports.EVENTS_FILE).symlink_to(secret)
    assert read(folder, "acme", Cursor()).envelopes == []
    (folder / reports.EVENTS_FILE).unlink()
    os.mkfifo(folder / reports.EVENTS_FILE)  # opening it for reading would block the agent
    assert read(folder, "acme", Cursor()).envelopes == []
    assert read(tmp_path / "missing", "acme", Cursor()).envelopes == []


def test_a_round_publishes_moves_the_cursor_and_counts_only_once_the_bus_took_it(tmp_path):
    runtime = tmp_path / "runtime"
    (runtime / "acme").mkdir(parents=True)
    write(runtime / "acme", line(Envelope.new(activated(), tenant_id="acme", producer="reloader")),
          line(Envelope.new(activated(), tenant_id="victim", producer="reloader")))
    cursors: dict = {}
    sent = []

    async def down(envelopes):
        raise ConnectionError("bus unreachable")

    async def up(envelopes):
        sent.extend(envelopes)

    asyncio.run(reports.relay(runtime, ["acme", "gone"], cursors, down))
    assert "acme" not in cursors and sent == []  # nothing moved: the same lines go again
    with structlog.testing.capture_logs() as logs:
        asyncio.run(reports.relay(runtime, ["acme", "gone"], cursors, up))
    assert [e.tenant_id for e in sent] == ["acme"]
    refused = [e for e in logs if e["event"] == "runtime.report_refused"]
    assert [(e["tenant_id"], e["count"], e["reasons"]) for e in refused] == [("acme", 1, {"other_tenant": 1})]
    assert (cursors["acme"]["published"], cursors["acme"]["refused"]) == (1, 1)
    asyncio.run(reports.relay(runtime, ["acme"], cursors, up))
    assert len(sent) == 1 and cursors["acme"]["published"] == 1


def test_a_flood_of_valid_reports_goes_out_at_a_bounded_pace(tmp_path):
    write(tmp_path, *(line(Envelope.new(activated(v), tenant_id="acme", producer="reloader")) for v in range(1, 26)))
    cursor, rounds = Cursor(), []
    for _ in range(4):
        batch = read(tmp_path, "acme", cursor)
        rounds.append([e.data.version for e in batch.envelopes])
        cursor = batch.cursor
    assert [len(r) for r in rounds] == [reports.MAX_EVENTS, reports.MAX_EVENTS, 5, 0]
    assert sum(rounds, []) == list(range(1, 26))
