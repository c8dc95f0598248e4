"""The route resolver's answers (pure) and its server on loopback, and the deprovisioner's
view of it (services.resources.edge): a tenant counts as served until Caddy's cached
answer has expired."""

from __future__ import annotations

import asyncio

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from contracts import edge as edge_names
from contracts.tenant import tenant_names
from core.ports import free_port
from services.resources.edge import EdgeRoutes
from services.router_config.resolver import Address, RouteResolver, answer, records
from services.router_config.routes import Route

pytestmark = pytest.mark.timeout(30)
EDGE, EMULATOR = Address("127.0.0.1", 8480), Address("127.0.0.1", 4580)


def route(tenant: str, *domains: str, port: int = 10001) -> Route:
    names = tenant_names(tenant)
    return Route(tenant, names.route_id, (names.host, *domains), f"127.0.0.1:{port}", names.bucket)


def ask(table, name: str, rdtype: str = "SRV") -> dns.message.Message:
    return dns.message.from_wire(answer(dns.message.make_query(name, rdtype).to_wire(), table))


def test_each_host_of_a_live_route_is_answered_with_the_runtime_and_nothing_else_is():
    table = records([route("acme", "shop.example.com"), route("beta", port=10002)], edge=EDGE, emulator=EMULATOR)
    reply = ask(table, edge_names.app_name("acme.localhost"))
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert [(r.port, r.target.to_text()) for r in reply.answer[0]] == [(10001, "acme.runtime.hostplane.internal.")]
    assert [(r.port) for r in ask(table, edge_names.app_name("SHOP.example.com")).answer[0]] == [10001]
    assert [r.address for r in ask(table, edge_names.runtime_target("acme"), "A").answer[0]] == ["127.0.0.1"]
    # own host: static files from the emulator; a custom domain: back to the edge as its own host
    assert [(r.port, r.target.to_text()) for r in ask(table, edge_names.static_name("acme.localhost")).answer[0]] == [
        (4580, "emulator.hostplane.internal.")]
    assert [(r.port, r.target.to_text()) for r in ask(table, edge_names.hop_name("shop.example.com")).answer[0]] == [
        (8480, "acme.edge.hostplane.internal.")]
    assert not ask(table, edge_names.static_name("shop.example.com")).answer
    for unknown in (edge_names.app_name("gamma.localhost"), edge_names.hop_name("acme.localhost"), "acme.localhost",
                    "example.org", edge_names.ZONE, edge_names.app_name("acme.localhost") + ".example.org"):
        assert ask(table, unknown).rcode() == dns.rcode.NXDOMAIN, unknown
    # a known name asked for another type: no data, no error (Go then stops asking)
    aaaa = ask(table, edge_names.runtime_target("acme"), "AAAA")
    assert aaaa.rcode() == dns.rcode.NOERROR and not aaaa.answer


def test_without_an_emulator_there_is_no_static_name_and_garbage_is_refused():
    table = records([route("acme", "shop.example.com")], edge=EDGE, emulator=None)
    assert ask(table, edge_names.static_name("acme.localhost")).rcode() == dns.rcode.NXDOMAIN
    assert ask(table, edge_names.hop_name("shop.example.com")).rcode() == dns.rcode.NXDOMAIN
    with pytest.raises(ValueError):
        answer(b"\x00\x01garbage", table)
    two = dns.message.make_query(edge_names.app_name("acme.localhost"), "SRV")
    two.question.append(two.question[0])
    assert dns.message.from_wire(answer(two.to_wire(), table)).rcode() == dns.rcode.FORMERR


def test_a_route_with_an_unusable_upstream_is_left_out():
    table = records([Route("acme", "tenant-acme", ("acme.localhost",), "", "b")], edge=EDGE, emulator=None)
    assert len(table) == 0


async def test_the_server_listens_on_loopback_only_and_answers_over_tcp():
    resolver = RouteResolver(edge=EDGE, emulator=EMULATOR)
    with pytest.raises(ValueError, match="loopback only"):
        await resolver.serve("0.0.0.0", 0)
    port = free_port()
    server = await resolver.serve("127.0.0.1", port)
    edge = EdgeRoutes("127.0.0.1", port)
    names = tenant_names("acme")
    try:
        assert not await edge.answered(names)
        resolver.load([route("acme")])
        assert await edge.answered(names) and await edge.serves(names)
        query = dns.message.make_query(edge_names.app_name("acme.localhost"), dns.rdatatype.SRV)
        reply = await dns.asyncquery.tcp(query, "127.0.0.1", port=port, timeout=3)
        assert reply.answer[0][0].port == 10001
        # gone from the table: still "served" while Caddy may hold its cached answer
        resolver.load([])
        assert not await edge.answered(names)
        assert await edge.serves(names)
        await asyncio.sleep(edge_names.REFRESH_S + 0.3)
        assert not await edge.serves(names)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_resolver_that_cannot_be_reached_answers_nothing():
    assert not await EdgeRoutes("127.0.0.1", free_port()).answered(tenant_names("acme"))


def test_a_repeated_question_is_answered_from_the_cache_until_the_table_is_read_again(monkeypatch):
    from services.router_config import resolver as resolver_module

    resolver = RouteResolver(edge=EDGE, emulator=EMULATOR)
    resolver.load([route("acme"), route("beta", port=10002)])
    name = edge_names.app_name("acme.localhost")
    first, second = (dns.message.make_query(name, "SRV", id=i) for i in (7, 4242))
    assert resolver.reply(first.to_wire()) == answer(first.to_wire(), resolver.table)
    assert list(resolver.replies) == [first.to_wire()[2:]]
    cached = resolver.reply(second.to_wire())
    assert cached == answer(second.to_wire(), resolver.table) and dns.message.from_wire(cached).id == 4242
    # names nobody routes are not kept: a flood of them cannot fill the cache
    for i in range(20):
        resolver.reply(dns.message.make_query(edge_names.app_name(f"nobody{i}.localhost"), "SRV").to_wire())
    assert len(resolver.replies) == 1
    # the table read again (a route removed): the old answer is gone with it
    resolver.load([route("beta", port=10002)])
    assert dns.message.from_wire(resolver.reply(second.to_wire())).rcode() == dns.rcode.NXDOMAIN
    monkeypatch.setattr(resolver_module, "MAX_CACHED", 2)
    for i in range(5):
        resolver.reply(dns.message.make_query(edge_names.app_name("beta.localhost"), "SRV", id=i,
                                              use_edns=i).to_wire())  # five ways to ask, two kept
    assert len(resolver.replies) == 2
