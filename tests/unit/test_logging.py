from hostplane.logging import redact


def test_secret_keys_and_url_passwords_are_redacted():
    out = redact(None, "info", {
        "password": "hunter2",
        "api_token": "abc",
        "dsn": "postgresql://u:p@h/db",
        "url": "redis://default:s3cret@127.0.0.1:6390/0",
        "tenant_id": "acme",
    })
    assert out["password"] == out["api_token"] == out["dsn"] == "<redacted>"
    assert "s3cret" not in out["url"] and out["url"].startswith("redis://default:<redacted>@")
    assert out["tenant_id"] == "acme"
