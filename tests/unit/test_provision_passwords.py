"""Passwords, verifiers and the credentials document: what servers see, what prints."""

from __future__ import annotations

import hashlib

from pydantic import SecretStr

from contracts.tenant import tenant_names
from services.resources.base import Ensured, Outcome, scrub
from services.resources.passwords import new_password, scram_matches, scram_verifier, valkey_hash
from services.resources.secret import Endpoints, TenantCredentials


def test_new_passwords_are_long_random_and_url_safe():
    made = {new_password().get_secret_value() for _ in range(50)}
    assert len(made) == 50
    assert all(len(p) >= 40 and p.replace("-", "").replace("_", "").isalnum() for p in made)


def test_scram_verifier_round_trip_and_refusal():
    pw = SecretStr("correct horse")
    verifier = scram_verifier(pw)
    assert verifier.startswith("SCRAM-SHA-256$4096:") and "correct horse" not in verifier
    assert scram_matches(verifier, pw)
    assert not scram_matches(verifier, SecretStr("wrong"))
    assert scram_verifier(pw) != verifier, "a fresh salt every time"
    for junk in (None, "", "md5abc", "SCRAM-SHA-256$x", "SCRAM-SHA-256$4096:!!$a:b"):
        assert not scram_matches(junk, pw)


def test_valkey_hash_is_sha256_hex():
    assert valkey_hash(SecretStr("pw")) == hashlib.sha256(b"pw").hexdigest()


def test_credentials_render_urls_and_hide_passwords():
    names = tenant_names("shop", prefix="hp")
    at = Endpoints(db_host="db.local", db_port=5433, cache_host="cache.local", cache_port=6380, region="eu-west-1",
                   aws_endpoint="http://127.0.0.1:4566")
    creds = TenantCredentials.build(names, at, SecretStr("dbpass123"), SecretStr("cachepass1"))
    env = creds.env()
    assert env["DATABASE_URL"] == "postgresql://t_shop:dbpass123@db.local:5433/t_shop"
    assert env["REDIS_URL"] == "redis://t-shop:cachepass1@cache.local:6380/0"
    assert (env["CACHE_PREFIX"], env["BUCKET"], env["DB_PORT"]) == ("shop:", "hp-shop-static", "5433")
    assert all(isinstance(v, str) for v in env.values()), "the secret is an environment: strings only"
    for shown in (repr(creds), str(creds), creds.model_dump_json()):
        assert "dbpass123" not in shown and "cachepass1" not in shown
    assert TenantCredentials.from_env(env) == creds


def test_scrub_and_ensured_repr_hide_values():
    assert scrub("x dbpass123 y", [SecretStr("dbpass123"), None]) == "x <redacted> y"
    assert "secret-value" not in repr(Ensured(Outcome.CREATED, SecretStr("secret-value")))
    assert "secret-value" not in repr(Ensured(Outcome.CREATED, "secret-value"))
