"""The route resolver: a DNS responder on loopback that answers the edge's lookups from
router-config's `routes` table (the local stand-in for Cloud Map; names in contracts/edge.py).

It answers only names of live routes in its own zone (anything else: NXDOMAIN), only over
TCP on a loopback address: tenant code may open any loopback port, but Landlock keeps it
from binding TCP ports (docs/security.md), so nobody can stand in for the resolver while
it restarts. It reads the table at start, again on each `NOTIFY hostplane_routes` that
router-config sends with every write, and every `POLL_S` in case a notification was lost
(the connection dropped); when the database is away it keeps answering from the last
table it read. Its own process, so a stopped router-config never stops the edge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import structlog

from contracts import edge as edge_names
from contracts.tenant import tenant_names
from services.router_config import lookup
from services.router_config.routes import Route
from services.router_config.store import NOTIFY_CHANNEL, RouteStore

log = structlog.get_logger(__name__)

POLL_S = 5.0
MAX_QUERY = 512  # a question for one of our names is far smaller
# Positive answers kept until the table is next read (RouteResolver.reply): a name of each live
# route, asked in the few ways Caddy asks it. Bounded: a client on loopback can vary a query.
MAX_CACHED = 4096


@dataclass(frozen=True)
class Address:
    ip: str
    port: int

    @classmethod
    def parse(cls, hostport: str) -> Address:
        host, _, port = hostport.rpartition(":")
        return cls(_ip(host.strip("[]")), int(port))


def _ip(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return socket.gethostbyname(host)


@dataclass(frozen=True)
class Records:
    """Every name the resolver answers: SRV (port, target) and A (address)."""

    srv: dict[str, tuple[int, str]] = field(default_factory=dict)
    a: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.srv)


def records(routes: Iterable[Route], *, edge: Address,
            emulator: Address | None, base_domain: str = "localhost") -> Records:
    """From the live routes (upstream `host:port`): the resolver's records."""
    srv: dict[str, tuple[int, str]] = {}
    a: dict[str, str] = {}
    if emulator is not None:
        a[edge_names.EMULATOR_TARGET] = emulator.ip
    for route in routes:
        tenant = route.tenant_id
        try:
            runtime = Address.parse(route.upstream)
        except (ValueError, OSError):
            log.warning("resolver.bad_upstream", tenant=tenant)
            continue
        own = tenant_names(tenant, base_domain=base_domain).host
        a[edge_names.runtime_target(tenant)] = runtime.ip
        for host in route.hosts:
            host = host.lower()
            srv[edge_names.app_name(host)] = (runtime.port, edge_names.runtime_target(tenant))
            if emulator is None:
                continue
            if host == own:
                srv[edge_names.static_name(host)] = (emulator.port, edge_names.EMULATOR_TARGET)
            else:
                srv[edge_names.hop_name(host)] = (edge.port, edge_names.edge_target(tenant))
                a[edge_names.edge_target(tenant)] = edge.ip
    return Records(srv, a)


def answer(query: bytes, table: Records) -> bytes:
    """The wire response to one DNS query (one question, class IN)."""
    try:
        msg = dns.message.from_wire(query)
    except Exception:  # not DNS at all: no answer (the caller closes the connection)
        raise ValueError("not a DNS query") from None
    resp = dns.message.make_response(msg)
    resp.flags |= dns.flags.AA
    resp.flags &= ~dns.flags.RA
    if len(msg.question) != 1:
        resp.set_rcode(dns.rcode.FORMERR)
        return resp.to_wire()
    question = msg.question[0]
    name = question.name.to_text(omit_final_dot=True).lower()
    if question.rdtype == dns.rdatatype.SRV and name in table.srv:
        port, target = table.srv[name]
        resp.answer.append(dns.rrset.from_text(question.name, 0, "IN", "SRV", f"0 0 {port} {target}."))
    elif question.rdtype == dns.rdatatype.A and name in table.a:
        resp.answer.append(dns.rrset.from_text(question.name, 0, "IN", "A", table.a[name]))
    elif name not in table.srv and name not in table.a:
        resp.set_rcode(dns.rcode.NXDOMAIN)
    # else: a name we know, asked for another type (AAAA): no data, no error
    return resp.to_wire()


class RouteResolver:
    """The table as last read, and the TCP server that answers from it."""

    def __init__(self, *, edge: Address, emulator: Address | None, base_domain: str = "localhost") -> None:
        self.edge, self.emulator, self.base_domain = edge, emulator, base_domain
        self.table = Records()
        self.replies: dict[bytes, bytes] = {}  # a query less its ID → the answer less its ID

    def load(self, routes: Iterable[Route]) -> None:
        self.table = records(routes, edge=self.edge, emulator=self.emulator, base_domain=self.base_domain)
        self.replies = {}

    def reply(self, query: bytes) -> bytes:
        """`answer(query, self.table)`, a positive one from the cache when the same question was
        asked since the table was read. Caddy asks each live host again every REFRESH_S, and
        parsing the query and rendering the answer with dnspython was most of a lookup (≈ 0.6
        CPU-ms at the edge, bench/density.py). Only positive answers are kept, so names nobody
        routes cannot fill it; a reply differs from its query's only in the ID it echoes."""
        key = query[2:]
        if (cached := self.replies.get(key)) is not None:
            return query[:2] + cached
        reply = answer(query, self.table)
        if len(self.replies) < MAX_CACHED and reply[3] & 0x0F == dns.rcode.NOERROR and reply[6:8] != b"\0\0":
            self.replies[key] = reply[2:]
        return reply

    async def serve(self, host: str, port: int) -> asyncio.Server:
        if not ipaddress.ip_address(_ip(host)).is_loopback:
            raise ValueError(f"the route resolver listens on loopback only, not {host}")
        return await asyncio.start_server(self._client, host, port, reuse_address=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 10))
                if size > MAX_QUERY:
                    break
                reply = self.reply(await asyncio.wait_for(reader.readexactly(size), 10))
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def follow_table(resolver: RouteResolver, dsn: str, *, poll: float = POLL_S) -> None:
    """Keep `resolver.table` equal to the live rows of `routes`, for as long as it runs."""
    import asyncpg

    changed = asyncio.Event()
    while True:
        conn = None
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: changed.set())
            while True:
                changed.clear()
                if await conn.fetchval("SELECT to_regclass('routes') IS NOT NULL"):
                    resolver.load(await RouteStore(conn).live_routes())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), poll)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database away: keep the last table, try again
            log.warning("resolver.reload_failed", error=type(exc).__name__)
            await asyncio.sleep(1.0)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()


async def _main(args: argparse.Namespace) -> None:
    from core.aws import endpoint_url
    from core.logging import configure_logging
    from core.settings import get_settings
    from services.runner import control_dsn

    settings = get_settings()
    configure_logging(json_output=True, service="route-resolver")
    origin = lookup.static_origin(endpoint_url(settings))
    resolver = RouteResolver(edge=Address(_ip(settings.host), settings.edge_port),
                             emulator=Address.parse(origin) if origin else None)
    follower = asyncio.create_task(follow_table(resolver, control_dsn(settings)))
    server = await resolver.serve(settings.host, settings.resolver_port)
    if ready := os.environ.get("HOSTPLANE_READY_FILE"):  # for `hostplane up` (hostplane.local.services)
        Path(ready).write_text(str(os.getpid()))
    log.info("resolver.ready", port=settings.resolver_port)
    async with server:
        try:
            await server.serve_forever()
        finally:
            follower.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
