"""Event models, envelope and tenant ids: what every service relies on when it
reads or writes the bus."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import contracts
from contracts import (
    BuildFailed,
    DeprovisioningFailed,
    Envelope,
    Event,
    Failure,
    InvalidTenantId,
    MigrationFailed,
    ProvisioningFailed,
    ReleaseActivated,
    ReleaseFailed,
    RouteConfigured,
    RouteRemoved,
    TenantChanged,
    TenantDeletionRequested,
    TenantProvisioned,
    TenantRequested,
    UnknownEvent,
    parse_envelope,
    registered_events,
    tenant_names,
)
from contracts.catalog import SERVICES, consumed_types, consumers_of, producers_of
from contracts.tenant import validate_tenant_id
from tests.support.events import DIGEST, SAMPLES, sample




def test_every_registered_event_has_a_sample():
    assert sorted(type(s).event_type for s in SAMPLES) == [e.event_type for e in registered_events()]


# --- envelope --------------------------------------------------------------------------


@pytest.mark.parametrize("data", SAMPLES, ids=lambda s: s.event_type)
def test_envelope_round_trip_gives_the_typed_payload(data: Event):
    env = Envelope.new(data, tenant_id="acme", producer=data.producers[0])
    parsed = parse_envelope(env.to_detail())
    assert type(parsed.data) is type(data)
    assert parsed.data == data
    assert parsed.event_id == env.event_id
    assert parsed.event_type == data.event_type and parsed.schema_version == type(data).schema_version
    producer = data.producers[0]
    assert parsed.source == ("hostplane.runtime.acme" if producer == "reloader" else f"hostplane.{producer}")


def test_parse_envelope_accepts_dict_and_bytes():
    env = Envelope.new(sample(RouteRemoved), tenant_id="acme", producer="router-config")
    assert parse_envelope(env.to_detail().encode()).data == env.data
    assert parse_envelope(json.loads(env.to_detail())).data == env.data


def test_caused_event_carries_correlation_and_names_its_cause():
    first = Envelope.new(sample(TenantRequested), tenant_id="acme", producer="api")
    second = Envelope.new(sample(TenantProvisioned), tenant_id="acme", producer="provisioner", cause=first)
    assert second.correlation_id == first.correlation_id
    assert second.causation_id == first.event_id
    assert second.event_id != first.event_id


def _detail(**changes: Any) -> dict[str, Any]:
    env = Envelope.new(sample(ReleaseActivated), tenant_id="acme", producer="reloader")
    detail = json.loads(env.to_detail())
    detail.update(changes)
    return detail


@pytest.mark.parametrize(
    "changes",
    [{"event_type": "TenantTeleported"}, {"schema_version": "2.0"}],
    ids=["unknown-type", "unknown-major"],
)
def test_unknown_event_is_refused(changes: dict[str, Any]):
    with pytest.raises(UnknownEvent):
        parse_envelope(_detail(**changes))


def test_reader_of_1_0_reads_a_1_1_payload_with_an_extra_field():
    detail = _detail(schema_version="1.1")
    detail["data"]["rollout_region"] = "eu-west-1"  # added optionally by a future 1.1 producer
    parsed = parse_envelope(detail)
    assert type(parsed.data) is ReleaseActivated
    assert parsed.data == sample(ReleaseActivated)
    assert parsed.schema_version == "1.1"


def test_tenant_requested_1_3_carries_edge_and_idle_period_and_older_payloads_still_read():
    env = Envelope.new(sample(TenantRequested), tenant_id="acme", producer="api")
    detail = json.loads(env.to_detail())
    assert detail["schema_version"] == "1.3" and detail["data"]["edge"] == "dedicated"
    assert detail["data"]["idle_after_s"] == 600
    assert parse_envelope(detail).data.edge == "dedicated"

    v12 = detail | {"schema_version": "1.2",
                    "data": {k: v for k, v in detail["data"].items() if k != "idle_after_s"}}
    assert parse_envelope(v12).data.idle_after_s is None, "None: the platform's default"
    with pytest.raises(Exception):
        parse_envelope(detail | {"data": detail["data"] | {"idle_after_s": -1}})

    older = detail | {"schema_version": "1.1", "data": {k: v for k, v in detail["data"].items() if k != "edge"}}
    parsed = parse_envelope(older)
    assert parsed.schema_version == "1.1" and parsed.data.edge is None, "None: the installation's default"
    assert parsed.data.model_dump(exclude={"edge"}) == sample(TenantRequested).model_dump(exclude={"edge"})


def test_invalid_payload_is_refused():
    detail = _detail()
    detail["data"]["sha256"] = DIGEST.upper()
    with pytest.raises(ValidationError):
        parse_envelope(detail)


def test_replay_is_a_new_delivery_of_the_same_event():
    env = Envelope.new(sample(TenantDeletionRequested), tenant_id="acme", producer="api")
    replay = env.as_replay()
    assert replay.event_id == env.event_id and replay.dedup_key != env.dedup_key


# --- payload rules --------------------------------------------------------------------


def test_failures_share_stage_error_retryable():
    for model in (ProvisioningFailed, BuildFailed, MigrationFailed, ReleaseFailed, DeprovisioningFailed):
        assert issubclass(model, Failure)
        assert {"stage", "error", "retryable"} <= set(model.model_fields)
        assert model.lifecycle_stage


def test_long_error_and_logs_are_clipped_not_refused():
    failed = ReleaseFailed(stage="health_check", error="x" * 10_000, retryable=False, version=1,
                           reason="crash_loop", last_log_lines=[f"line {i}" for i in range(200)])
    assert len(failed.error) == 2000
    assert failed.last_log_lines[0] == "line 150" and len(failed.last_log_lines) == 50


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (TenantChanged, "sha256", "abc"),
        (TenantChanged, "version", 0),
        (TenantChanged, "size", -1),
        (TenantChanged, "artifact_path", "/etc/passwd"),
        (TenantChanged, "artifact_path", "acme/releases/2/../../../x"),
        (TenantChanged, "artifact_path", "acme/releases/2/.."),
        (ReleaseActivated, "swap_ms", -5),
        (RouteConfigured, "hosts", []),
        (RouteConfigured, "hosts", ["Bad_Host"]),
        (TenantRequested, "custom_domain", "localhost"),
        (TenantRequested, "edge", "shared"),
        (TenantRequested, "edge", "Pooled"),
        (TenantProvisioned, "secret_arn", "hunter2"),
    ],
)
def test_constrained_fields_refuse_bad_values(model: type[Event], field: str, value: Any):
    fields = sample(model).model_dump()
    fields[field] = value
    with pytest.raises(ValidationError):
        model(**fields)


def test_a_password_handed_to_an_event_is_never_carried():
    fields = sample(TenantProvisioned).model_dump()
    event = TenantProvisioned(**fields, db_password="hunter2")
    assert "hunter2" not in event.model_dump_json()


SECRET_WORDS = ("password", "token", "secret_value", "secret_string")


def secret_like_properties(schema: Any, path: str = "") -> list[str]:
    """Every property name anywhere in a JSON schema (incl. $defs) that looks like a secret."""
    found: list[str] = []
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            if any(word in name.lower() for word in SECRET_WORDS):
                found.append(f"{path}.{name}")
        for key, sub in schema.items():
            found += secret_like_properties(sub, f"{path}.{key}")
    elif isinstance(schema, list):
        for i, sub in enumerate(schema):
            found += secret_like_properties(sub, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("model", registered_events(), ids=lambda m: m.event_type)
def test_no_event_has_a_secret_field(model: type[Event]):
    assert secret_like_properties(Envelope[model].model_json_schema()) == []


def test_secret_field_check_would_catch_one():
    class Leaky(BaseModel):
        database: str
        db_password: str
        nested: dict[str, list[TenantChanged]]

    class Sneaky(BaseModel):
        inner: Leaky
        api_token: str | None = None

    assert sorted(secret_like_properties(Sneaky.model_json_schema())) == [
        ".$defs.Leaky.db_password", ".api_token"
    ]


# --- who emits and consumes -----------------------------------------------------------


def test_every_event_names_known_producers_and_consumers():
    for model in registered_events():
        assert model.producers, model
        assert set(model.producers) | set(model.consumers) <= set(SERVICES), model
        assert "api" in model.consumers, f"{model.event_type}: the status projection reads every event"


@pytest.mark.parametrize(
    ("service", "types"),
    [
        ("provisioner", ["IdleAfterChangeRequested", "TenantRequested"]),
        ("builder", ["AppUpdateRequested", "RollbackRequested", "TenantProvisioned"]),
        ("migrator", ["TenantChanged"]),
        ("router-config", ["DomainChangeRequested", "TenantDeletionRequested", "TenantProvisioned"]),
        ("deprovisioner", ["TenantDeletionRequested"]),
        ("reloader", []),
    ],
)
def test_consumers_follow_the_design_table(service: str, types: list[str]):
    assert consumed_types(service) == types
    assert [m.event_type for m in consumers_of(service)] == types


def test_api_consumes_everything_and_emits_the_requests():
    assert consumers_of("api") == registered_events()
    assert {m.event_type for m in producers_of("api")} == {
        "TenantRequested", "AppUpdateRequested", "TenantDeletionRequested", "DomainChangeRequested",
        "RollbackRequested", "IdleAfterChangeRequested",
    }
    assert {m.event_type for m in producers_of("reloader")} == {"ReleaseActivated", "ReleaseFailed", "AppCrashed",
                                                               "RuntimeSlept", "RuntimeWoke", "RuntimeFailed"}
    with pytest.raises(ValueError):
        consumers_of("billing")


# --- tenant ids ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["Acme", "1acme", "acme-", "api", "a" * 32, "a", "", "my--shop", "my_shop", "acme.io", " acme"],
)
def test_invalid_tenant_ids_are_refused(bad: str):
    with pytest.raises(InvalidTenantId):
        validate_tenant_id(bad)
    with pytest.raises(ValidationError):
        Envelope.new(sample(TenantDeletionRequested), tenant_id=bad, producer="api")
    with pytest.raises(InvalidTenantId):
        tenant_names(bad)


@pytest.mark.parametrize("good", ["acme", "a1", "my-shop", "a" * 31, "shop-2024"])
def test_valid_tenant_ids_are_accepted(good: str):
    assert validate_tenant_id(good) == good
    assert Envelope.new(sample(TenantDeletionRequested), tenant_id=good, producer="api").tenant_id == good


def test_tenant_names_are_stable():
    """Live resources carry these names: changing one orphans every existing tenant."""
    names = tenant_names("my-shop")
    assert names == tenant_names("my-shop")
    assert (names.database, names.db_role, names.cache_user, names.cache_prefix) == (
        "t_my_shop", "t_my_shop", "t-my-shop", "my-shop:"
    )
    assert (names.bucket, names.secret, names.route_id, names.runtime_service) == (
        "hostplane-my-shop-static", "hostplane/tenants/my-shop", "tenant-my-shop", "hostplane-my-shop"
    )
    assert tenant_names("my-shop", prefix="ci7").bucket == "ci7-my-shop-static"


def test_tenant_names_fit_the_event_fields():
    """What the provisioner puts in TenantProvisioned comes from tenant_names()."""
    n = tenant_names("a" * 31)
    TenantProvisioned(
        database=n.database, db_role=n.db_role, cache_user=n.cache_user, cache_prefix=n.cache_prefix,
        bucket=n.bucket, secret_name=n.secret, runtime_service=n.runtime_service,
        spec_ref="specs/x.json", spec_sha256=DIGEST,
    )
    RouteRemoved(route_id=n.route_id, hosts=[n.host])


def test_package_reexports():
    for name in ("Envelope", "Event", "parse_envelope", "tenant_names", "TenantId", "TenantRequested"):
        assert hasattr(contracts, name)
