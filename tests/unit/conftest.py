"""Fixtures more than one unit-test module takes: the API's recording database (`db`) and
the envelopes a command put in the outbox (`published`), as test_api_edge and
test_api_public_domain run the API stack over them."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.envelope import Envelope
from tests.support.api_fakes import FakeDb


@pytest.fixture
def db() -> FakeDb:
    return FakeDb()


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[Envelope]:
    """The envelopes the create put in the outbox."""
    from services.api import commands  # here, not above: only the API tests load the API

    sent: list[Envelope] = []

    async def add_to_outbox(conn: Any, envelopes: Any) -> None:
        sent.extend(envelopes)

    monkeypatch.setattr(commands, "add_to_outbox", add_to_outbox)
    return sent
