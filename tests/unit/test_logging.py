from core.logging import redact


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


def test_every_aws_client_keeps_secret_values_out_of_botocore_debug_logs():
    import asyncio
    import logging

    from core.aws import aws_client
    from core.settings import Settings

    async def make() -> None:
        async with aws_client("secretsmanager", Settings(aws_endpoint_url="http://127.0.0.1:9")):
            pass

    asyncio.run(make())
    logger = logging.getLogger("botocore.parsers")
    leaky = logging.LogRecord("botocore.parsers", logging.DEBUG, __file__, 1,
                              'Response body: {"SecretString": "%s"}', ("p4ssw0rd-value",), None)
    plain = logging.LogRecord("botocore.parsers", logging.DEBUG, __file__, 1, "Response headers: %s", ("{}",), None)
    assert not logger.filter(leaky) and logger.filter(plain)
