"""DLQ helpers: choosing queues by name, reading what a dead letter carries."""

from __future__ import annotations

import json

import pytest

from events.dlq import _dead_letter, select_queues
from events.topology import topology


def test_queue_is_chosen_by_service_queue_or_dlq_name():
    topo = topology("hp")
    assert [q.service for q in select_queues(topo, None)] == [q.service for q in topo.queues]
    for name in ("builder", "hp-builder", "hp-builder-dlq"):
        assert [q.service for q in select_queues(topo, name)] == ["builder"]
    with pytest.raises(KeyError, match="no queue 'nope'"):
        select_queues(topo, "nope")


def test_dead_letter_shows_the_envelope_identity_or_question_marks():
    detail = {"event_type": "TenantRequested", "tenant_id": "acme", "event_id": "e1", "replay_id": None}
    msg = {"MessageId": "m", "Body": json.dumps({"detail": detail}), "Attributes": {"ApproximateReceiveCount": "6"}}
    dl = _dead_letter(msg)
    assert (dl.event_type, dl.tenant_id, dl.event_id, dl.receive_count) == ("TenantRequested", "acme", "e1", 6)
    garbage = _dead_letter({"MessageId": "g", "Body": "not json"})
    assert (garbage.event_type, garbage.receive_count) == (None, 0)
