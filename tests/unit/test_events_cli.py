"""`hostplane events` / `hostplane dlq` when the platform is not there, and bad input."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hostplane.cli_events import dlq_app, events_app
from core.settings import get_settings


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv("HOSTPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HOSTPLANE_AWS_ENDPOINT_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("app", "args"),
    [(events_app, ["list"]), (events_app, ["replay", "--tenant", "acme"]), (dlq_app, ["list"]), (dlq_app, ["redrive"])],
)
def test_not_running_is_a_clear_error_with_exit_2(nowhere, app, args):
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2
    text = " ".join(done.output.split())  # rich wraps long paths at the terminal width
    assert "not running" in text and "hostplane up" in text


def test_replay_refuses_to_replay_everything_by_accident(nowhere):
    done = CliRunner().invoke(events_app, ["replay"])
    assert done.exit_code == 2 and "--all" in done.output


def test_since_must_be_iso(nowhere):
    done = CliRunner().invoke(events_app, ["replay", "--tenant", "acme", "--since", "yesterday"])
    assert done.exit_code == 2 and "ISO 8601" in done.output
