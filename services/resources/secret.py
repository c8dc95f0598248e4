"""The tenant's secret: the only place its passwords live.

Its value is a JSON object of environment variables (names to strings), so the same
document is what `hostplane tenant env` prints and what the tenant's runtime hands its
app (reloader.config reads exactly this shape):

    DATABASE_URL  postgresql://<role>:<password>@<host>:<port>/<database>
    DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD
    REDIS_URL     redis://<user>:<password>@<host>:<port>/0
    CACHE_USER CACHE_PASSWORD CACHE_PREFIX
    BUCKET AWS_REGION [AWS_ENDPOINT_URL, local emulator only]

Events carry the secret's name and ARN, never its value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, SecretStr

from contracts.tenant import TenantNames
from services.resources.base import Ensured, Outcome, PermanentError, ref

TENANT_TAG = "hostplane:tenant"
_MISSING = ("ResourceNotFoundException",)
_PERMANENT = ("AccessDeniedException", "AccessDenied", "ValidationException", "InvalidParameterException",
              "LimitExceededException", "EncryptionFailure", "MalformedPolicyDocumentException")


@dataclass(frozen=True)
class Endpoints:
    """Where tenants reach the shared servers (written into their secret)."""

    db_host: str
    db_port: int
    cache_host: str
    cache_port: int
    region: str
    aws_endpoint: str | None = None
    cache_scheme: str = "redis"


class TenantCredentials(BaseModel):
    """The secret's value. Passwords are SecretStr: repr, str and logs show asterisks."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    DATABASE_URL: SecretStr
    DB_HOST: str
    DB_PORT: str
    DB_NAME: str
    DB_USER: str
    DB_PASSWORD: SecretStr
    REDIS_URL: SecretStr
    CACHE_USER: str
    CACHE_PASSWORD: SecretStr
    CACHE_PREFIX: str
    BUCKET: str
    AWS_REGION: str
    AWS_ENDPOINT_URL: str | None = None

    @classmethod
    def build(cls, names: TenantNames, at: Endpoints, db_password: SecretStr,
              cache_password: SecretStr) -> TenantCredentials:
        db_pw, cache_pw = db_password.get_secret_value(), cache_password.get_secret_value()
        return cls(
            DATABASE_URL=SecretStr(f"postgresql://{names.db_role}:{db_pw}@{at.db_host}:{at.db_port}/{names.database}"),
            DB_HOST=at.db_host, DB_PORT=str(at.db_port), DB_NAME=names.database, DB_USER=names.db_role,
            DB_PASSWORD=db_password,
            REDIS_URL=SecretStr(f"{at.cache_scheme}://{names.cache_user}:{cache_pw}@{at.cache_host}:{at.cache_port}/0"),
            CACHE_USER=names.cache_user, CACHE_PASSWORD=cache_password, CACHE_PREFIX=names.cache_prefix,
            BUCKET=names.bucket, AWS_REGION=at.region, AWS_ENDPOINT_URL=at.aws_endpoint,
        )

    def env(self) -> dict[str, str]:
        """The variables with their values revealed: for the secret store and the app only."""
        out = {}
        for key, value in self:
            if value is not None:
                out[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return out

    @classmethod
    def from_env(cls, env: dict[str, Any]) -> TenantCredentials:
        return cls.model_validate(env)


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _permanent(exc: ClientError, doing: str) -> Exception:
    code = _code(exc)
    return PermanentError(f"Secrets Manager refused to {doing}: {code}") if code in _PERMANENT else exc


class TenantSecrets:
    """Ensure/read/remove `names.secret` through a Secrets Manager client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def read(self, names: TenantNames) -> TenantCredentials | None:
        """The stored credentials; None when there is no (readable, well-formed) secret."""
        try:
            value = await self.client.get_secret_value(SecretId=names.secret)
        except ClientError as exc:
            if _code(exc) in (*_MISSING, "InvalidRequestException"):  # absent or being deleted
                return None
            raise _permanent(exc, f"read secret {names.secret}") from None
        try:
            return TenantCredentials.from_env(json.loads(value["SecretString"]))
        except ValueError:  # not ours or damaged: rewrite it (never echo the content)
            return None

    async def ensure(self, names: TenantNames, creds: TenantCredentials) -> Ensured[str]:
        """Create, restore or update the secret to hold `creds`; returns its ARN."""
        body = json.dumps(creds.env(), sort_keys=True)
        try:
            meta = await self._describe(names)
            if meta is None:
                made = await self.client.create_secret(
                    Name=names.secret, SecretString=body, Description=f"hostplane tenant {names.tenant_id}",
                    Tags=[{"Key": TENANT_TAG, "Value": names.tenant_id}],
                )
                return Ensured(Outcome.CREATED, made["ARN"])
            changed = False
            if meta.get("DeletedDate"):  # scheduled for deletion: bring it back
                await self.client.restore_secret(SecretId=names.secret)
                changed = True
            current = await self.read(names)
            if current is None or current.env() != creds.env():
                await self.client.put_secret_value(SecretId=names.secret, SecretString=body)
                changed = True
        except ClientError as exc:
            raise _permanent(exc, f"write secret {names.secret}") from None
        return Ensured(Outcome.of(False, changed), meta["ARN"])

    async def _describe(self, names: TenantNames) -> dict[str, Any] | None:
        try:
            return await self.client.describe_secret(SecretId=names.secret)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise

    async def remove(self, names: TenantNames) -> list[str]:
        """Delete at once, without the recovery window: nothing of the tenant may linger."""
        try:
            if await self._describe(names) is None:
                return []
            await self.client.delete_secret(SecretId=names.secret, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return []
            raise _permanent(exc, f"delete secret {names.secret}") from None
        return [ref("secret", names.secret)]

    async def existing(self, names: TenantNames) -> list[str]:
        meta = await self._describe(names)
        return [ref("secret", names.secret)] if meta is not None else []

    async def names_under(self, prefix: str) -> list[str]:
        """Secret names starting with `prefix` (what the doctor reads)."""
        found: list[str] = []
        paginator = self.client.get_paginator("list_secrets")
        async for page in paginator.paginate(Filters=[{"Key": "name", "Values": [prefix]}]):
            found += [s["Name"] for s in page.get("SecretList", []) if s["Name"].startswith(prefix)]
        return sorted(found)
