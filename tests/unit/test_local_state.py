"""Local credentials and state files: private, stable, never shown."""

from __future__ import annotations

import stat

import pytest

from core.ports import free_port
from core.process import PortInUse, require_free
from core.state import (
    CONTROL_ROLE,
    PlatformState,
    connection_info,
    ensure_control_password,
    load_or_create_credentials,
    load_state,
    save_state,
)


def test_credentials_are_generated_once_and_owner_only(tmp_path):
    first = load_or_create_credentials(tmp_path)
    again = load_or_create_credentials(tmp_path)
    assert first == again
    mode = stat.S_IMODE((tmp_path / "credentials.json").stat().st_mode)
    assert mode == 0o600
    assert first.postgres_password not in repr(first) and first.api_token not in str(first)


def _state(home, admin="unix:///run/caddy-admin.sock"):
    save_state(home, PlatformState(
        emulator="moto", aws_endpoint="http://127.0.0.1:1", host="127.0.0.1", edge_url="http://localhost:2",
        postgres_port=3, valkey_port=4, caddy_admin_url=admin,
    ))


def test_connection_info_never_renders_its_secrets(tmp_path):
    _state(tmp_path)
    creds = ensure_control_password(tmp_path)
    info = connection_info(tmp_path)
    assert creds.postgres_control_password in info.control_dsn  # usable by code...
    assert creds.postgres_control_password not in repr(info) and creds.valkey_password not in str(info)  # ...not shown


def test_the_control_dsn_is_the_control_role_never_the_superuser(tmp_path):
    _state(tmp_path)
    creds = ensure_control_password(tmp_path)
    dsn = connection_info(tmp_path).control_dsn
    assert dsn.startswith(f"postgresql://{CONTROL_ROLE}:") and "postgres:" not in dsn.split("@")[0]
    assert creds.postgres_password not in dsn
    assert ensure_control_password(tmp_path) == creds, "generated once, then kept"
    assert stat.S_IMODE((tmp_path / "credentials.json").stat().st_mode) == 0o600


def test_a_home_from_before_the_control_role_says_to_run_up(tmp_path):
    _state(tmp_path)
    load_or_create_credentials(tmp_path)  # what an older `up` wrote: no control role password
    with pytest.raises(RuntimeError, match="run `hostplane up` once"):
        connection_info(tmp_path)


def test_the_admin_socket_is_read_from_the_recorded_address(tmp_path):
    _state(tmp_path, "unix:///h/run/caddy-admin.sock")
    assert load_state(tmp_path).caddy_admin_socket == "/h/run/caddy-admin.sock"
    _state(tmp_path, "http://127.0.0.1:2099")  # the docker-compose stack's Caddy container
    assert load_state(tmp_path).caddy_admin_socket is None


def test_connection_info_without_a_platform_says_how_to_start_one(tmp_path):
    with pytest.raises(RuntimeError, match="hostplane up"):
        connection_info(tmp_path)


def test_a_busy_port_is_named_with_the_variable_that_moves_it():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        with pytest.raises(PortInUse, match=f"port {port}.*HOSTPLANE_X_PORT"):
            require_free("127.0.0.1", port, "x", "HOSTPLANE_X_PORT")
    require_free("127.0.0.1", port, "x", "HOSTPLANE_X_PORT")
