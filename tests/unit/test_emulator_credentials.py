"""Which key the one AWS client factory signs emulator requests with (core.aws)."""

from __future__ import annotations

import json

from core.aws import LOCALSTACK_CREDENTIALS, emulator_credentials
from core.state import new_access_key_id
from hostplane.local.emulator import EDGE_AUTH
from core.state import PlatformState, load_or_create_credentials, save_state
from core.settings import Settings
from services.router_config.lookup import EMULATOR_AUTH


def _state(home, emulator: str) -> None:
    save_state(home, PlatformState(
        emulator=emulator, aws_endpoint="http://127.0.0.1:1", host="127.0.0.1", edge_url="http://localhost:2",
        postgres_port=3, valkey_port=4, caddy_admin_url="http://127.0.0.1:5"))


def test_moto_gets_the_platform_key_from_credentials_json(tmp_path):
    _state(tmp_path, "moto")
    creds = load_or_create_credentials(tmp_path)
    got = emulator_credentials(Settings(home=tmp_path))
    assert got == {"aws_access_key_id": creds.emulator_key_id, "aws_secret_access_key": creds.emulator_secret}
    assert creds.emulator_key_id.startswith("AKIA") and len(creds.emulator_key_id) == 20
    assert creds.emulator_secret not in repr(creds)


def test_localstack_keeps_its_dummy_key(tmp_path):
    _state(tmp_path, "localstack")
    load_or_create_credentials(tmp_path)
    assert emulator_credentials(Settings(home=tmp_path)) == LOCALSTACK_CREDENTIALS


def test_without_a_readable_key_the_factory_has_none_to_give(tmp_path):
    _state(tmp_path, "moto")
    assert emulator_credentials(Settings(home=tmp_path)) == LOCALSTACK_CREDENTIALS  # refused by moto
    (tmp_path / "credentials.json").write_text("{not json")
    assert emulator_credentials(Settings(home=tmp_path)) == LOCALSTACK_CREDENTIALS


def test_an_older_credentials_file_gains_a_key_and_keeps_the_rest(tmp_path):
    (tmp_path / "credentials.json").write_text(json.dumps(
        {"postgres_password": "p", "valkey_password": "v", "api_token": "a"}))
    creds = load_or_create_credentials(tmp_path)
    assert (creds.postgres_password, creds.api_token) == ("p", "a") and creds.emulator_key_id
    assert load_or_create_credentials(tmp_path).emulator_key_id == creds.emulator_key_id
    assert new_access_key_id() != creds.emulator_key_id


def test_the_emulator_recognises_exactly_what_the_edge_presents():
    assert EDGE_AUTH == EMULATOR_AUTH
