"""Identifiers outside the contracts are matched whole too: `re.match` with `$` accepts a
trailing newline ("name\n"), which then reaches SQL, an environment or a log line."""

from __future__ import annotations

import pytest

from reloader.config import parse_tenant_env
from services.api.dashboard.session import _ACTOR


@pytest.mark.parametrize("name", ["t_shop\n", "t_shop\nDROP"])
def test_a_sql_identifier_with_a_newline_is_refused(name):
    from services.resources.base import PermanentError
    from services.resources.postgres import ident

    assert ident("t_shop") == '"t_shop"'
    with pytest.raises(PermanentError):
        ident(name)


def test_a_dashboard_actor_with_a_trailing_newline_is_refused():
    assert _ACTOR.fullmatch("ops") and not _ACTOR.fullmatch("ops\n")


def test_a_tenant_env_name_with_a_trailing_newline_is_refused():
    assert parse_tenant_env(b'{"DATABASE_URL": "x"}', "test") == {"DATABASE_URL": "x"}
    with pytest.raises(ValueError):
        parse_tenant_env(b'{"DATABASE_URL\\n": "x"}', "test")
