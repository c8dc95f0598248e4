"""Where the API listens: on loopback, unless HOSTPLANE_HOST says otherwise (the AWS task
says 0.0.0.0: infra/platform/control_plane.py, tested in test_infra_platform.py)."""

from __future__ import annotations

import os

import pytest

from core.settings import Settings
from services.api import server


class Stop(Exception):
    """Raised by the stand-in `bind`: bootstrap goes no further than choosing its address."""


@pytest.fixture
def env(monkeypatch):
    for name in [n for n in os.environ if n.startswith("HOSTPLANE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOSTPLANE_API_TOKEN", "t" * 40)
    return monkeypatch


async def listen_address(monkeypatch, settings: Settings) -> tuple[str, int]:
    """The (host, port) bootstrap binds its socket to, with no database behind it."""
    class Pool:
        async def close(self) -> None:
            pass

    async def create_pool(*args, **kwargs) -> Pool:
        return Pool()

    async def no_schema(pool) -> None:
        pass

    asked: list[tuple[str, int]] = []

    def bind(host: str, port: int):
        asked.append((host, port))
        raise Stop

    monkeypatch.setattr(server.asyncpg, "create_pool", create_pool)
    monkeypatch.setattr(server.store, "ensure_schema", no_schema)
    monkeypatch.setattr(server.audit, "ensure_schema", no_schema)
    monkeypatch.setattr(server, "bind", bind)
    with pytest.raises(Stop):
        await server.bootstrap(settings, None, dsn="postgresql://unused")
    (address,) = asked
    return address


async def test_locally_the_api_listens_on_loopback(env):
    assert await listen_address(env, Settings()) == ("127.0.0.1", 8400)


async def test_the_api_listens_where_the_setting_says(env):
    env.setenv("HOSTPLANE_HOST", "0.0.0.0")
    env.setenv("HOSTPLANE_API_PORT", "8401")
    assert await listen_address(env, Settings()) == ("0.0.0.0", 8401)


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_bind_listens_on_exactly_that_host(host):
    sock = server.bind(host, 0)
    try:
        assert sock.getsockname()[0] == host
    finally:
        sock.close()
