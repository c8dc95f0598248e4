"""A tenant's environment as the runtime agent reads it before starting the runtime: a
local JSON file or the tenant's secret (its value never appears in an error)."""

from __future__ import annotations

from pathlib import Path

from reloader.config import parse_tenant_env


class EnvUnavailable(RuntimeError):
    """The tenant's environment could not be read; its runtime is not started without it."""


async def resolve_env(env_ref: str | None, settings) -> dict[str, str]:
    """`file:<path>` (local JSON) or a secret name/ARN (`secret:` optional) whose value is a
    JSON object of environment variables. Errors never carry the value."""
    if not env_ref:
        return {}
    if env_ref.startswith("file:"):
        path = Path(env_ref[5:])
        try:
            return parse_tenant_env(path.read_bytes(), env_ref)
        except (OSError, ValueError) as exc:
            raise EnvUnavailable(f"{env_ref}: {type(exc).__name__}: {exc}") from None
    from core.aws import aws_client

    secret_id = env_ref.removeprefix("secret:")
    try:
        async with aws_client("secretsmanager", settings) as sm:
            value = await sm.get_secret_value(SecretId=secret_id)
        return parse_tenant_env(value.get("SecretString") or "", f"secret {secret_id}")
    except Exception as exc:  # botocore errors, bad JSON: the message names the secret only
        raise EnvUnavailable(f"secret {secret_id}: {type(exc).__name__}") from None
