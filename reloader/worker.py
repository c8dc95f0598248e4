"""The app worker: loads one release's ASGI app from its zipapp and serves it.

Platform code, run as `python -I -m reloader.worker` in the tenant's environment; the
artifact carries only generated code. Two phases, driven by the reloader over the
control channel (reloader.control):

1. start: import the app, run its lifespan start-up, serve it on a private Unix socket
   only the reloader uses (health + smoke), then report `started`;
2. `accept`: start accepting on the shared listening socket the reloader owns (the fd
   was inherited; this process listens on a dup so it can stop and start again).

`drain` stops accepting (connections still queued in the kernel go to the other
generation, since the socket itself stays open) and answers what it already accepted:
every response that starts from now on carries `Connection: close`, and a keep-alive
connection is closed only after it has been idle for `--idle-close` seconds, which
avoids closing it while the client is sending its next request. The process then
stays idle (probation: `accept` again reverts instantly) until `exit`, SIGTERM or EOF.

Responses completed on the shared socket are the tenant's traffic: each one is an integer
increment, and the running total goes to the reloader with every event, every
`--count-every` seconds while it changes, and once more on the way out (reloader.traffic).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import socket
import sys
import time

if __name__ == "__main__":  # a cold worker; the zygote imports this module with uvicorn and redis whole
    from reloader.lean import defer_inits

    defer_inits()  # before uvicorn below: its package init loads a command line the worker never runs

from uvicorn.config import Config  # noqa: E402
from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402
from uvicorn.server import Server  # noqa: E402

from reloader import control, hide_platform_packages  # noqa: E402


class Drain:
    active = False


class Served:
    total = 0  # responses completed on the shared socket, by this process


class IdleTrackingH11(H11Protocol):
    """uvicorn's h11 protocol, remembering since when a connection has been idle."""

    idle_since = 0.0
    public = False  # accepted on the shared socket (not the reloader's private health channel)

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.idle_since = time.monotonic()

    def data_received(self, data: bytes) -> None:
        self.idle_since = float("inf")  # a request is arriving: not idle
        super().data_received(data)

    def on_response_complete(self) -> None:
        if self.public:
            Served.total += 1
        self.idle_since = time.monotonic()
        super().on_response_complete()

    @property
    def busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete


STALL_S = 0.25  # a drain check (every 0.05 s) this late: the process, or the machine, stood still


def idle_to_close(connections, now: float, since_last_check: float, idle_close: float) -> list[IdleTrackingH11]:
    """The keep-alive connections idle for `idle_close` s, which a drain closes. Right after
    a stall nobody had a chance to send, so no connection counts as idle: every idle clock
    restarts instead. Otherwise a machine that stood still for `idle_close` (a burst of
    memory pressure) wakes clients and server together, and the server closes connections
    its clients are that moment sending on: requests lost, not refused."""
    due = []
    for conn in connections:
        if not isinstance(conn, IdleTrackingH11) or conn.busy:
            continue
        if since_last_check > STALL_S:
            conn.idle_since = max(conn.idle_since, now)
        elif now - conn.idle_since >= idle_close:
            due.append(conn)
    return due


def closing_while_draining(app):
    """ASGI wrapper: once draining, each response starting asks the client to reconnect."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_maybe_closing(message):
            if message["type"] == "http.response.start" and Drain.active:
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        return await app(scope, receive, send_maybe_closing)

    return wrapped


def load_app(pyz: str, entry: str):
    sys.path.insert(0, pyz)
    module_name, _, attr = entry.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr or "app")


class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.listen_fd: int | None = args.listen_fd
        self.shared: asyncio.base_events.Server | None = None
        self.private: asyncio.base_events.Server | None = None
        self.stopping = asyncio.Event()
        self.told = 0  # Served.total in the last event sent

    async def run(self) -> int:
        config = Config(closing_while_draining(load_app(self.args.app, self.args.entry)),
                        http=IdleTrackingH11, lifespan="auto", log_config=None, access_log=False,
                        server_header=False, timeout_keep_alive=5)
        config.load()
        self.server = Server(config)
        self.server.lifespan = config.lifespan_class(config)
        await self.server.lifespan.startup()
        if self.server.lifespan.should_exit:
            print("app lifespan start-up failed", file=sys.stderr)
            return 3
        self.server.server_state.default_headers = config.encoded_headers
        loop = asyncio.get_running_loop()
        self.private = await loop.create_unix_server(self._protocol, path=self.args.private)
        os.chmod(self.args.private, 0o600)
        ctrl = socket.socket(fileno=self.args.control_fd)
        reader, self.writer = await asyncio.open_unix_connection(sock=ctrl)
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        self._tell("started", pid=os.getpid())
        commands = asyncio.create_task(self._commands(reader))
        counts = asyncio.create_task(self._report_served())
        await self.stopping.wait()
        commands.cancel()
        await self._drain(self.args.grace)
        counts.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.lifespan.shutdown(), timeout=max(1.0, self.args.grace / 2))
        self._tell("stopped")  # the last total: nothing this process served goes unreported
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.drain(), timeout=1.0)
        return 0

    def _protocol(self, _loop=None):
        return IdleTrackingH11(config=self.server.config, server_state=self.server.server_state,
                               app_state=self.server.lifespan.state, _loop=_loop)

    def _public_protocol(self, _loop=None):
        protocol = self._protocol(_loop)
        protocol.public = True
        return protocol

    def _tell(self, event: str, **fields) -> None:
        self.told = Served.total
        with contextlib.suppress(Exception):
            self.writer.write(control.encode({"event": event, "served": Served.total, **fields}))

    async def _report_served(self) -> None:
        while True:
            await asyncio.sleep(self.args.count_every)
            if Served.total != self.told:
                self._tell("served")

    async def _commands(self, reader: asyncio.StreamReader) -> None:
        while (message := await control.receive(reader)) is not None:
            cmd = message.get("cmd")
            if cmd == "accept":
                await self._accept()
                self._tell("accepting")
            elif cmd == "drain":
                self._stop_accepting()
                self._tell("draining")
                asyncio.create_task(self._drain_and_report())
            elif cmd == "exit":
                self.args.grace = float(message.get("grace", self.args.grace))
                break
        self.stopping.set()  # `exit`, or EOF: the reloader is gone

    async def _accept(self) -> None:
        Drain.active = False
        if self.shared is None and self.listen_fd is not None:
            sock = socket.socket(fileno=os.dup(self.listen_fd))
            self.shared = await asyncio.get_running_loop().create_server(self._public_protocol, sock=sock,
                                                                         backlog=1024)

    def _stop_accepting(self) -> None:
        Drain.active = True
        if self.shared is not None:
            self.shared.close()  # closes our dup only: the reloader's fd keeps the queue alive
            self.shared = None

    async def _drain_and_report(self) -> None:
        if await self._drain(float("inf")):
            self._tell("drained")

    async def _drain(self, grace: float) -> bool:
        """Answer every accepted connection, close idle keep-alives politely; True when none is
        left. On the way out (`grace` finite) the inherited fd goes too, so the port frees."""
        self._stop_accepting()
        if grace != float("inf"):
            if self.listen_fd is not None:
                os.close(self.listen_fd)
                self.listen_fd = None
            if self.private is not None:
                self.private.close()
        deadline = time.monotonic() + grace
        await asyncio.sleep(0.05)  # let connections accepted a moment ago reach connection_made
        checked = time.monotonic()
        while time.monotonic() < deadline:
            connections = list(self.server.server_state.connections)
            if not connections:
                return True
            if not Drain.active:
                return False  # accepting again (probation revert): stop draining
            now = time.monotonic()
            for conn in idle_to_close(connections, now, now - checked, self.args.idle_close):
                conn.shutdown()
            checked = now
            await asyncio.sleep(0.05)
        for conn in list(self.server.server_state.connections):
            conn.shutdown()
            with contextlib.suppress(Exception):
                conn.transport.close()
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve one release of a tenant app (started by the reloader)")
    parser.add_argument("--app", required=True, help="local path of the verified zipapp")
    parser.add_argument("--entry", default="app:app")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--private", required=True, help="Unix socket path for health and smoke requests")
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--idle-close", type=float, default=0.5)
    parser.add_argument("--count-every", type=float, default=1.0, help="seconds between served-request reports")
    args = parser.parse_args(argv)
    hide_platform_packages()  # before the app imports redis
    control.name_process(control.WORKER_NAME)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # the reloader tags and forwards each line at once
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return asyncio.run(Worker(args).run())


if __name__ == "__main__":
    sys.exit(main())
