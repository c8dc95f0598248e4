"""Scale to zero, the agent's half: it owns every tenant's listening socket.

The agent binds each tenant's registered app port itself and hands the socket to the
tenant's reloader (`--listen-fd`), keeping its own copy. The socket therefore outlives
every runtime: when a tenant has served no request for its idle period the agent stops
the runtime (it drains as on any stop) and nothing of the tenant is left but that
socket. Connections arriving then wait in the socket's backlog, where the kernel queues
them without any process (up to `BACKLOG`); the agent sees the socket become readable,
starts the runtime with the same socket, and the new app accepts what waited. Nothing
is refused at any point: not while the runtime drains (its copy closes, ours keeps the
queue), not while it starts.

`Listeners` holds the sockets and watches the sleeping ones; `IdleClock` says how long a
tenant has gone without a request, from the running total its runtime reports on
/runtime/healthz (`requests_served`), so an open connection that completes no request
does not keep a tenant awake.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable

BACKLOG = 1024


class PortTaken(OSError):
    """Someone else listens on the tenant's registered port."""


class Listeners:
    def __init__(self, host: str) -> None:
        self.host = host
        self.sockets: dict[str, socket.socket] = {}
        self.watched: set[str] = set()

    def held(self, tenant: str) -> socket.socket | None:
        return self.sockets.get(tenant)

    def ensure(self, tenant: str, port: int) -> socket.socket:
        """The tenant's listening socket on `port`, bound now if we do not hold it yet."""
        sock = self.sockets.get(tenant)
        if sock is not None and sock.getsockname()[1] == port:
            return sock
        if sock is not None:  # the registered port changed
            self.close(tenant)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # despite TIME_WAIT; never REUSEPORT
            sock.bind((self.host, port))
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(errno.EADDRINUSE, f"port {port} is taken") from None
            raise
        sock.set_inheritable(False)  # handed to one runtime at a time, explicitly (pass_fds)
        self.sockets[tenant] = sock
        return sock

    def watch(self, tenant: str, on_connection: Callable[[str], None]) -> None:
        """Call `on_connection(tenant)` once, when a connection waits on the sleeping tenant's socket."""
        sock = self.sockets[tenant]
        if tenant in self.watched:
            return
        loop = asyncio.get_running_loop()

        def ready() -> None:
            self.unwatch(tenant)
            on_connection(tenant)

        loop.add_reader(sock.fileno(), ready)
        self.watched.add(tenant)

    def unwatch(self, tenant: str) -> None:
        if tenant in self.watched:
            self.watched.discard(tenant)
            sock = self.sockets.get(tenant)
            if sock is not None:
                asyncio.get_running_loop().remove_reader(sock.fileno())

    def close(self, tenant: str) -> None:
        self.unwatch(tenant)
        if (sock := self.sockets.pop(tenant, None)) is not None:
            sock.close()

    def close_all(self) -> None:
        for tenant in list(self.sockets):
            self.close(tenant)


class IdleClock:
    """Seconds since each tenant last served a request (or was deployed to, or woke)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seen: dict[str, tuple[int | None, float]] = {}

    def active(self, tenant: str) -> None:
        total = self.seen.get(tenant, (None, 0.0))[0]
        self.seen[tenant] = (total, self.clock())

    def observe(self, tenant: str, served: int | None) -> float:
        """Record the runtime's running total; the idle time so far. A total that changed,
        or went down (a new runtime counts from zero), is activity."""
        now = self.clock()
        total, since = self.seen.get(tenant, (None, now))
        if served is not None and served != total:
            total, since = served, now
        self.seen[tenant] = (total, since)
        return now - since

    def idle_for(self, tenant: str) -> float:
        """The idle time so far, as last observed (0 for a tenant not observed yet)."""
        seen = self.seen.get(tenant)
        return 0.0 if seen is None else self.clock() - seen[1]

    def forget(self, tenant: str) -> None:
        self.seen.pop(tenant, None)
