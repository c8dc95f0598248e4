"""Generated JSON Schemas and AsyncAPI: committed, fresh, valid, and only ever
changed compatibly within a major."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from contracts import Envelope, RouteConfigured, TenantRequested, registered_events
from contracts.compat import SCHEMAS_DIR, check_compatibility
from contracts.compat import main as compat_main
from contracts.generate import (
    ASYNCAPI_FILE,
    CONTRACTS_DIR,
    envelope_schema,
    rendered,
    schema_file,
    stale_files,
    write,
)
from contracts.generate import main as generate_main
from tests.support.events import sample

# --- generation ---------------------------------------------------------------------


def test_committed_files_are_not_stale():
    assert stale_files(CONTRACTS_DIR) == [], "run `python -m contracts.generate` and commit"
    assert generate_main(["--check"]) == 0


def test_check_names_stale_and_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert len(write(tmp_path)) == len(registered_events()) + 1
    assert write(tmp_path) == [], "a second run changes nothing"
    edited = tmp_path / schema_file(RouteConfigured)
    edited.write_text(edited.read_text().replace('"hosts"', '"hostnames"'))
    (tmp_path / ASYNCAPI_FILE).unlink()

    assert generate_main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "RouteConfigured/1.1.json" in err and ASYNCAPI_FILE in err


def test_output_is_byte_stable():
    first = rendered()
    assert first == rendered()
    assert all(text.endswith("}\n") for text in first.values())


def test_schema_describes_the_whole_envelope():
    schema = envelope_schema(RouteConfigured)
    assert schema["$id"] == "urn:hostplane:event:RouteConfigured:1.1"
    assert schema["properties"]["event_type"]["const"] == "RouteConfigured"
    assert schema["properties"]["data"] == {"$ref": "#/$defs/RouteConfigured"}
    assert {"event_id", "tenant_id", "correlation_id", "producer", "data"} <= set(schema["required"])


def _committed(model: Any) -> dict[str, Any]:
    return json.loads((CONTRACTS_DIR / schema_file(model)).read_text())


@pytest.mark.parametrize("model", registered_events(), ids=lambda m: m.event_type)
def test_committed_schema_accepts_what_the_model_writes(model: Any):
    """A consumer in another language validating with the schema agrees with pydantic."""
    import jsonschema

    detail = json.loads(Envelope.new(sample(model), tenant_id="acme", producer=model.producers[0]).to_detail())
    validator = jsonschema.Draft202012Validator(_committed(model), format_checker=jsonschema.FormatChecker())
    validator.validate(detail)

    newer = copy.deepcopy(detail)
    newer["schema_version"] = "1.7"
    newer["data"]["added_later"] = True
    validator.validate(newer)

    for bad in ({"event_type": "Other"}, {"schema_version": "2.0"}, {"tenant_id": "api"}):
        assert not validator.is_valid({**detail, **bad}), bad


def test_every_committed_predecessor_accepts_what_the_model_writes_now():
    """An old reader in another language (validating with the schema it was built with)
    takes today's payload: a minor's new fields are optional and extra keys are allowed."""
    import jsonschema

    for model in registered_events():
        detail = json.loads(Envelope.new(sample(model), tenant_id="acme", producer=model.producers[0]).to_detail())
        for path in sorted((SCHEMAS_DIR / model.event_type).glob(f"{model.major()}.*.json")):
            jsonschema.Draft202012Validator(json.loads(path.read_text())).validate(detail)


def test_tenant_requested_1_2_schema_offers_exactly_the_two_edges():
    import jsonschema

    validator = jsonschema.Draft202012Validator(_committed(TenantRequested))
    detail = json.loads(Envelope.new(sample(TenantRequested), tenant_id="acme", producer="api").to_detail())
    for edge in ("pooled", "dedicated", None):
        validator.validate({**detail, "data": {**detail["data"], "edge": edge}})
    for bad in ("shared", "Pooled", 1):
        assert not validator.is_valid({**detail, "data": {**detail["data"], "edge": bad}}), bad
    older = {**detail, "schema_version": "1.1", "data": {k: v for k, v in detail["data"].items() if k != "edge"}}
    validator.validate(older)


def test_asyncapi_has_a_channel_per_event_and_send_per_producer():
    doc = json.loads((CONTRACTS_DIR / ASYNCAPI_FILE).read_text())
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]) == {m.event_type for m in registered_events()}

    def resolve(ref: str) -> Any:
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    for model in registered_events():
        channel = doc["channels"][model.event_type]
        assert channel["address"] == model.event_type
        assert channel["x-eventbridge"]["bus"] == "hostplane"
        message = resolve(channel["messages"][f"{model.event_type}.{model.schema_version}"]["$ref"])
        assert (CONTRACTS_DIR / message["payload"]["$ref"]).is_file()
        for producer in model.producers:
            op = doc["operations"][f"{producer}.send.{model.event_type}"]
            assert op["action"] == "send" and resolve(op["channel"]["$ref"]) is channel
            assert all(resolve(m["$ref"]) for m in op["messages"])
        for consumer in model.consumers:
            assert doc["operations"][f"{consumer}.receive.{model.event_type}"]["action"] == "receive"


# --- compatibility ------------------------------------------------------------------


def test_committed_schemas_are_compatible():
    assert check_compatibility(SCHEMAS_DIR) == []
    assert compat_main([]) == 0


def publish(root: Path, version: str, schema: dict[str, Any], event_type: str = "RouteConfigured") -> None:
    path = root / event_type / f"{version}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema))


def data_def(schema: dict[str, Any]) -> dict[str, Any]:
    return schema["$defs"]["RouteConfigured"]


def successor(change) -> dict[str, Any]:
    schema = copy.deepcopy(envelope_schema(RouteConfigured))
    change(data_def(schema))
    return schema


def _remove_upstream(d: dict[str, Any]) -> None:
    del d["properties"]["upstream"]
    d["required"].remove("upstream")


def _retype_route_id(d: dict[str, Any]) -> None:
    d["properties"]["route_id"] = {"type": "integer", "title": "Route Id"}


def _add_required_port(d: dict[str, Any]) -> None:
    d["properties"]["port"] = {"type": "integer", "minimum": 1}
    d["required"].append("port")


def _host_list_becomes_nullable(d: dict[str, Any]) -> None:
    d["properties"]["hosts"] = {"anyOf": [d["properties"]["hosts"], {"type": "null"}]}


def _host_items_lose_pattern(d: dict[str, Any]) -> None:
    del d["properties"]["hosts"]["items"]["pattern"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_remove_upstream, "data.upstream: property removed"),
        (_retype_route_id, "data.route_id: type changed from string to integer"),
        (_add_required_port, "data.port: new required property"),
        (_host_list_becomes_nullable, "data.hosts: type changed from array to anyOf[array, null]"),
        (_host_items_lose_pattern, "data.hosts[]: 'pattern' changed"),
    ],
    ids=["removed", "retyped", "new-required", "anyof", "constraint"],
)
def test_compat_catches_breaking_minor(tmp_path: Path, change, expected: str):
    publish(tmp_path, "1.0", envelope_schema(RouteConfigured))
    publish(tmp_path, "1.1", successor(lambda d: d["properties"].update(weight={"type": "integer"})))
    publish(tmp_path, "1.2", successor(change))
    problems = check_compatibility(tmp_path)
    assert problems, "a breaking change went unnoticed"
    assert all(p.startswith("RouteConfigured 1.2 vs 1.") for p in problems), problems
    assert any(expected in p for p in problems), problems
    assert any(" vs 1.0: " in p for p in problems) and any(" vs 1.1: " in p for p in problems), \
        "every predecessor is compared, not only the previous one"


def with_tls(mode_enum: list[str], orphan_type: str) -> dict[str, Any]:
    schema = copy.deepcopy(envelope_schema(RouteConfigured))
    data_def(schema)["properties"]["tls"] = {"$ref": "#/$defs/Tls"}
    schema["$defs"]["Tls"] = {
        "type": "object",
        "properties": {"mode": {"type": "string", "enum": mode_enum}},
        "required": ["mode"],
    }
    schema["$defs"]["Orphan"] = {"type": "object", "properties": {"x": {"type": orphan_type}}}
    return schema


def test_compat_follows_refs_into_nested_definitions(tmp_path: Path):
    publish(tmp_path, "1.0", with_tls(["auto", "off"], "string"))
    publish(tmp_path, "1.1", with_tls(["auto", "off", "manual"], "integer"))
    problems = check_compatibility(tmp_path)
    assert any("1.1 vs 1.0: data.tls.mode: 'enum' changed" in p for p in problems), problems
    assert any("1.1 vs 1.0: $defs.Orphan.x: type changed from string to integer" in p for p in problems)


def test_compat_accepts_a_new_optional_field(tmp_path: Path):
    publish(tmp_path, "1.0", envelope_schema(RouteConfigured))
    publish(tmp_path, "1.1", successor(lambda d: d["properties"].update(weight={"type": "integer"})))
    assert check_compatibility(tmp_path) == []


def test_compat_does_not_compare_majors(tmp_path: Path):
    publish(tmp_path, "1.0", envelope_schema(RouteConfigured))
    publish(tmp_path, "2.0", successor(_remove_upstream))
    publish(tmp_path, "2.1", successor(_remove_upstream))
    assert check_compatibility(tmp_path) == []


def test_compat_cli_fails_with_the_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    publish(tmp_path, "1.0", envelope_schema(RouteConfigured))
    publish(tmp_path, "1.1", successor(_add_required_port))
    (tmp_path / "RouteConfigured" / "latest.json").write_text("{}")
    assert compat_main(["--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "data.port: new required property" in err
    assert "latest.json is not named MAJOR.MINOR.json" in err
