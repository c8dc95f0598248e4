"""The agent's reading of a tenant's report file: only the tenant's own runtime events go
out, from where the last round stopped, across rotation, truncation and hostile files."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from contracts.envelope import Envelope
from contracts.events_v1 import ReleaseActivated, TenantDeletionRequested
from hostplane.local.agent import reports
from hostplane.local.agent.reports import Cursor, read
from reloader import reporting

SHA = "a" * 64


def activated(version: int = 1) -> ReleaseActivated:
    return ReleaseActivated(version=version, sha256=SHA, swap_ms=5, health_ms=3)


def reported(version: int = 1) -> reporting.Report:
    """`activated(version)` as the reloader reports it."""
    return reporting.Report("ReleaseActivated", version=version, sha256=SHA, swap_ms=5, health_ms=3)


def line(env: Envelope) -> str:
    return env.to_detail() + "\n"


def write(folder: Path, *lines: str, name: str = reports.EVENTS_FILE) -> None:
    with open(folder / name, "a") as fh:
        fh.write("".join(lines))


def test_the_tenants_own_reports_go_out_once_and_the_cursor_moves_past_them(tmp_path):
    reporter = reporting.FileReporter("acme", tmp_path / reports.EVENTS_FILE)
    asyncio.run(reporter.report(reported(1)))
    first = read(tmp_path, "acme", Cursor())
    assert [e.data.version for e in first.envelopes] == [1] and first.refused == []
    assert first.envelopes[0].source == "hostplane.runtime.acme"
    asyncio.run(reporter.report(reported(2)))
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
    asyncio.run(reporter.report(reported(1)))
    cursor = read(tmp_path, "acme", Cursor()).cursor
    asyncio.run(reporter.report(reported(2)))  # written to the old file? no: rotated first
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


# What the runtime reports, in every shape it takes (reloader.runtime): long errors and output
# are clipped, optional fields absent or set.
REPORTS = [
    ("ReleaseActivated", {"version": 3, "sha256": SHA, "swap_ms": 420, "health_ms": 31}),
    ("ReleaseFailed", {"version": 4, "stage": "start", "reason": "health_check", "error": "é" * 5000,
                       "retryable": False, "last_log_lines": [f"line {i} ✓ \x1b" + "y" * 600 for i in range(80)]}),
    ("ReleaseFailed", {"version": 4, "stage": "artifact", "reason": "digest_mismatch", "error": "bad digest",
                       "retryable": False, "last_log_lines": []}),
    ("AppCrashed", {"version": 2, "reason": "memory_limit", "exit_code": -9, "uptime_ms": 1200,
                    "crashes_in_a_row": 2, "restart_in_ms": 1000, "last_log_lines": ["a", "b"]}),
    ("AppCrashed", {"version": 2, "reason": "crashed", "exit_code": None, "uptime_ms": 0, "crashes_in_a_row": 1,
                    "restart_in_ms": 500}),
]


def test_the_reloader_reports_every_runtime_event_the_contracts_declare_at_their_versions():
    from contracts import fields
    from contracts.registry import registered_events

    declared = {m.event_type: m.schema_version for m in registered_events()
                if reporting.PRODUCER in m.producers and m.event_type not in reports.AGENT_ONLY}
    assert reporting.SCHEMA_VERSIONS == declared
    assert {t for t, _ in REPORTS} == set(declared)
    assert (reporting.MAX_ERROR_CHARS, reporting.MAX_LOG_LINES, reporting.MAX_LOG_LINE_CHARS) == (
        fields.MAX_ERROR_CHARS, fields.MAX_LOG_LINES, fields.MAX_LOG_LINE_CHARS)


@pytest.mark.parametrize(("event_type", "data"), REPORTS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(REPORTS)])
def test_a_plain_report_line_is_the_envelope_pydantic_would_build(event_type, data):
    """The reloader writes its envelopes without pydantic (reloader.reporting.detail): what it
    writes must read back as exactly what Envelope.new builds from the model."""
    from contracts.registry import event_model, parse_envelope

    corr = "4b8d9c1e-0000-4000-8000-000000000001"
    model = event_model(event_type, reporting.SCHEMA_VERSIONS[event_type])
    text = reporting.detail("acme", reporting.Report(event_type, **data), corr)
    plain = parse_envelope(text)
    built = Envelope.new(model(**data), tenant_id="acme", producer="reloader", correlation_id=uuid.UUID(corr))
    same = {"event_id", "occurred_at"}  # new for each envelope
    assert plain.model_dump(exclude=same) == built.model_dump(exclude=same)
    assert type(plain.data) is model and plain.occurred_at.utcoffset() == timedelta(0)
    written, serialised = json.loads(text), json.loads(plain.to_detail())
    assert written.pop("data").items() <= serialised.pop("data").items()  # fields left out take their defaults
    assert written == serialised, "every envelope field written as the model serialises it"
    assert isinstance(reports.check(text.encode(), "acme"), Envelope), "and the agent publishes it"
    assert len(text.encode()) < reports.MAX_LINE


def test_a_report_without_a_correlation_gets_its_own():
    text = reporting.detail("acme", reported(), "not-a-uuid")
    assert uuid.UUID(json.loads(text)["correlation_id"]).version == 4
    with pytest.raises(ValueError):
        reporting.Report("RuntimeSlept", idle_s=1)  # the agent's to state, never the reloader's


def test_pending_names_only_the_tenants_whose_file_grew_since_the_cursor(tmp_path):
    runtime = tmp_path / "runtime"
    for tenant in ("acme", "beta", "gamma"):
        (runtime / tenant).mkdir(parents=True)
    write(runtime / "acme", line(Envelope.new(activated(), tenant_id="acme", producer="reloader")))
    (runtime / "gamma" / reports.EVENTS_FILE).symlink_to(tmp_path / "elsewhere")
    cursors: dict = {}
    assert reports.pending(runtime, ["acme", "beta", "gamma", "gone"], cursors) == ["acme"]

    async def up(envelopes):
        pass

    asyncio.run(reports.relay(runtime, ["acme"], cursors, up))
    assert reports.pending(runtime, ["acme"], cursors) == [], "all read: nothing to ask for"
    write(runtime / "acme", line(Envelope.new(activated(2), tenant_id="acme", producer="reloader")))
    assert reports.pending(runtime, ["acme"], cursors) == ["acme"]
    os.replace(runtime / "acme" / reports.EVENTS_FILE, runtime / "acme" / (reports.EVENTS_FILE + ".1"))
    write(runtime / "acme", line(Envelope.new(activated(3), tenant_id="acme", producer="reloader")))
    assert reports.pending(runtime, ["acme"], cursors) == ["acme"], "a rotated file is a new inode"
