"""The relational mapping (the contract with the migrator) in a few checks that could fail."""

from spec.load import load_app_spec
from spec.model import Model, constraint_name, relational_model

SPEC = """
app: All types
entities:
  person:
    fields:
      name: {type: string, required: true, min_length: 2, max_length: 20, default: "Ann"}
  thing:
    fields:
      note: {type: text, max_length: 100}
      count: {type: integer, min: 0, max: 9}
      ratio: {type: number, default: 0.5}
      ok: {type: boolean, default: true}
      day: {type: date, default: 2024-01-02}
      at: {type: datetime}
      kind: {type: enum, values: [a, "b'c"]}
      owner: {type: reference, to: person, required: true}
"""


def test_types_constraints_and_defaults():
    model = relational_model(load_app_spec(SPEC))
    thing = model.tables["thing"]
    assert {c: col.type for c, col in thing.columns.items()} == {
        "note": "text", "count": "bigint", "ratio": "double precision", "ok": "boolean", "day": "date",
        "at": "timestamptz", "kind": "text", "owner": "bigint"}
    assert thing.columns["owner"].not_null and thing.columns["owner"].references == "person"
    assert thing.columns["ok"].default == "TRUE"
    assert thing.columns["day"].default == "'2024-01-02'::date"
    assert thing.constraints["thing_kind_values"] == "CHECK (\"kind\" IN ('a', 'b''c'))"
    assert thing.constraints["thing_owner_fkey"].endswith('REFERENCES "person" ("id") ON DELETE RESTRICT')
    person = model.tables["person"]
    assert person.columns["name"].default == "'Ann'" and person.columns["name"].not_null
    assert set(person.constraints) == {"person_name_min_length", "person_name_max_length"}


def test_round_trips_as_json_and_names_stay_short():
    model = relational_model(load_app_spec(SPEC))
    assert Model.from_json(model.to_json()) == model
    long = constraint_name("t" * 40, "c" * 40, "max_length")
    assert len(long) == 63 and long != constraint_name("t" * 40, "c" * 41, "max_length")
