"""The releases read model's pure parts: which release holds the database's schema, and
the listed view (live, retained, ISO times)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.api.releases import schema_version, view

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def row(version: int, *, migrated: bool = True, rollback_of: int | None = None) -> dict:
    return {"version": version, "sha256": "ab" * 32, "spec_sha256": "cd" * 32, "size": 10, "built_at": AT,
            "migrated_at": AT if migrated else None, "activated_at": None, "requested_by": "alice",
            "rollback_of": rollback_of}


def test_the_schema_is_the_newest_migrated_release_that_is_not_a_rollback():
    newest_first = [row(5, migrated=False), row(4, rollback_of=1), row(3), row(2), row(1)]
    assert schema_version(newest_first)["version"] == 3
    assert schema_version([row(2, rollback_of=1), row(1, migrated=False)]) is None


def test_view_marks_live_and_retained_and_writes_times_as_iso():
    out = view(row(3), live=3, retained={2, 3})
    assert (out["live"], out["retained"], out["built_at"]) == (True, True, "2026-05-01T12:00:00+00:00")
    assert view(row(1), live=3, retained={2, 3})["retained"] is False
    assert view(row(1), live=None, retained=None)["retained"] is None
