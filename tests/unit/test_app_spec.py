"""The app spec contract: what is accepted, and for what is not, exactly which path is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from contracts.app_spec import RESERVED_NAMES, SCHEMA_FILE, digest_of_ref, json_schema, main, rendered_schema, spec_ref
from spec.load import MAX_SPEC_BYTES, load_app_spec
from spec.problems import InvalidAppSpec
from tests.support.specs import BAD_SPECS, spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
TASKS = (REPO / "examples" / "tasks.yaml").read_text()


def problems(source) -> list[str]:
    with pytest.raises(InvalidAppSpec) as info:
        load_app_spec(source)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid_for_the_model_and_the_json_schema(path: Path):
    text = path.read_text()
    assert load_app_spec(text).entities
    data = json.loads(json.dumps(yaml.safe_load(text), default=str))
    jsonschema.Draft202012Validator(json_schema()).validate(data)


def test_yaml_json_and_object_forms_have_one_digest():
    from_yaml = load_app_spec(TASKS)
    as_json = json.dumps(json.loads(from_yaml.canonical_json()), indent=4)
    reindented = TASKS.replace("{type: boolean, default: false}", "{type: boolean, default: false, required: false}")
    assert load_app_spec(as_json).digest() == from_yaml.digest()
    assert load_app_spec(json.loads(as_json)).digest() == from_yaml.digest()
    assert load_app_spec(reindented).digest() == from_yaml.digest(), "explicit defaults change nothing"
    assert load_app_spec(TASKS.replace("Tasks", "Tasks 2")).digest() != from_yaml.digest()


def test_canonical_json_keeps_the_order_of_fields():
    parsed = json.loads(load_app_spec(TASKS).canonical_json())
    assert list(parsed["entities"]["task"]["fields"]) == ["title", "done", "due", "priority", "owner"]


def test_spec_ref_round_trip():
    digest = load_app_spec(TASKS).digest()
    assert digest_of_ref(spec_ref(digest)) == digest
    with pytest.raises(ValueError):
        digest_of_ref("file:/etc/passwd")


@pytest.mark.parametrize("source, expected", BAD_SPECS, ids=[f"bad{i}" for i in range(len(BAD_SPECS))])
def test_bad_spec_names_the_path_and_what_is_wrong(source, expected):
    found = problems(source)
    assert expected in found, found


def test_every_problem_is_reported_at_once():
    found = problems(spec("Bad: {type: string}\nn: {type: integer, min: 3, max: 1}\nr: {type: strin}"))
    assert [p.split(":")[0] for p in found] == [
        "entities.task.fields.Bad", "entities.task.fields.n.min", "entities.task.fields.r.type"]


def test_yaml_billion_laughs_is_refused_before_expansion():
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i, prev in zip("bcdefghi", "abcdefgh", strict=True):
        bomb += f"{i}: &{i} [{', '.join(['*' + prev] * 9)}]\n"
    assert problems(bomb)[0].startswith("spec: YAML aliases (*name) are not accepted")


def test_ten_megabyte_spec_is_refused_by_size():
    assert problems(b"x" * 10_000_000) == [f"spec: is 10000000 bytes; the limit is {MAX_SPEC_BYTES}"]


def test_every_field_type_is_accepted():
    ok = load_app_spec(spec("""
        s: {type: string, min_length: 1, max_length: 10, default: abc, label: Name}
        t: {type: text, max_length: 5000}
        i: {type: integer, min: -3, max: 3, default: 0, required: true}
        n: {type: number, min: 0, max: 1.5, default: 0.25}
        b: {type: boolean, default: true}
        d: {type: date, default: 2026-01-31}
        dt: {type: datetime, default: "2026-01-31T12:00:00Z"}
        e: {type: enum, values: [low, high], default: low}
        r: {type: reference, to: task}
    """, "pages:\n  - {path: /tasks/all, title: All, shows: task}\nstatic: static/\n"))
    assert [f.type for f in ok.entities["task"].fields.values()] == [
        "string", "text", "integer", "number", "boolean", "date", "datetime", "enum", "reference"]


def test_reserved_words_cover_postgres_reserved_keywords():
    assert {"select", "user", "order", "group", "table", "from", "where", "limit", "offset", "check",
            "default", "analyse", "collation", "similar", "verbose"} <= RESERVED_NAMES
    assert not {"name", "role", "title", "owner", "priority", "done", "due"} & RESERVED_NAMES


def test_json_schema_is_committed_and_fresh():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == rendered_schema(), "run `python -m contracts.app_spec`"
    assert main(["--check"]) == 0


def test_json_schema_refuses_what_the_model_refuses():
    validator = jsonschema.Draft202012Validator(json_schema())
    good = json.loads(load_app_spec(TASKS).canonical_json())
    assert validator.is_valid(good)
    bad_name = {**good, "entities": {"Bad": good["entities"]["task"]}}
    reserved = {**good, "entities": {"select": good["entities"]["task"]}}
    bad_type = json.loads(json.dumps(good))
    bad_type["entities"]["task"]["fields"]["due"]["type"] = "dat"
    for doc in (bad_name, reserved, bad_type, {**good, "theme": "dark"}):
        assert not validator.is_valid(doc)


def test_oversize_is_its_own_kind_of_refusal():
    from spec.problems import SpecTooLarge

    with pytest.raises(SpecTooLarge):
        load_app_spec(b" " * (MAX_SPEC_BYTES + 1))
    with pytest.raises(InvalidAppSpec) as info:
        load_app_spec("app: T\n")
    assert not isinstance(info.value, SpecTooLarge)
