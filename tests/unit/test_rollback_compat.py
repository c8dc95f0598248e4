"""Which rollbacks the data model allows: the old code must fit today's schema."""

from __future__ import annotations

from spec.load import load_app_spec
from spec.model import relational_model
from spec.plan import check_rollback

V1 = open("examples/tasks.yaml").read()
V2 = V1.replace("      done:", "      notes:    {type: text}\n      done:", 1)  # an optional field added


def model(text: str):
    return relational_model(load_app_spec(text))


def test_additive_migrations_since_allow_the_rollback():
    assert "notes" in V2
    assert check_rollback(model(V1), model(V2)) == []
    assert check_rollback(model(V1), model(V1)) == []


def test_a_dropped_field_since_blocks_it_and_is_named():
    dropped = V2.replace("      done:     {type: boolean, default: false}\n", "", 1)
    assert dropped != V2
    problems = check_rollback(model(V2), model(dropped))
    assert problems and "drop column task.done" in problems[0] and "entities.task.fields.done" in problems[0]


def test_a_changed_type_since_blocks_it():
    retyped = V2.replace("notes:    {type: text}", "notes:    {type: integer}", 1)
    assert any("change task.notes" in p for p in check_rollback(model(V2), model(retyped)))
