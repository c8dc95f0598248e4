"""The topology declaration: every consumer gets a queue, a DLQ and exactly its event types."""

from __future__ import annotations

import json

import contracts  # noqa: F401
from contracts.registry import registered_events
from events.topology import MAX_RECEIVES, PRODUCERS, topology


def test_every_service_queue_has_a_dlq_after_five_receives():
    topo = topology("hostplane")
    assert {q.service for q in topo.queues} == {
        "api", "provisioner", "builder", "migrator", "router-config", "deprovisioner"
    }
    for q in topo.queues:
        assert q.dlq_name == f"{q.name}-dlq"
        assert q.max_receives == MAX_RECEIVES == 5
        assert q.dlq_retention_s > q.retention_s


def test_rules_match_only_source_and_detail_type_lists():
    for rule in topology().rules:
        pattern = json.loads(rule.pattern())
        assert set(pattern) == {"source", "detail-type"}
        assert all(isinstance(v, list) and v for v in pattern.values())
        control = [f"hostplane.{p}" for p in PRODUCERS]
        runtime = [{"prefix": "hostplane.runtime."}] if rule.service == "api" else []
        assert pattern["source"] == control + runtime
        assert "reloader" not in PRODUCERS  # runtime events come from hostplane.runtime.<tenant>


def test_archive_keeps_control_and_runtime_events():
    sources = json.loads(topology().archive_pattern())["source"]
    assert "hostplane.api" in sources and {"prefix": "hostplane.runtime."} in sources


def test_each_event_reaches_exactly_its_declared_consumers():
    topo = topology()
    routed: dict[str, set[str]] = {}
    for rule in topo.rules:
        for t in rule.detail_types:
            routed.setdefault(t, set()).add(rule.service)
    for event in registered_events():
        assert routed.get(event.event_type, set()) == set(event.consumers), event.event_type


def test_api_projection_sees_every_event_type():
    api_rule = next(r for r in topology().rules if r.service == "api")
    assert set(api_rule.detail_types) == {e.event_type for e in registered_events()}


def test_prefix_separates_installations():
    a, b = topology("blue"), topology("green")
    assert {q.name for q in a.queues}.isdisjoint({q.name for q in b.queues})
    assert a.bus_name != b.bus_name
