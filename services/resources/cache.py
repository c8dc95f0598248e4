"""A tenant's Valkey ACL user and the keys under its prefix, on the shared Valkey.

The user may touch keys `<tenant>:*` and channels `<tenant>:*` only, in database 0
only (where the server has per-database ACLs), and none of the commands that reach
beyond a prefix or the tenant's own connection. Its password is set as a SHA-256 hash,
and the server keeps users in an aclfile (`ACL SAVE`), so they survive a restart.
Keys are found with SCAN and removed with UNLINK, never KEYS (it blocks the server).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aredis
import structlog
from pydantic import SecretStr
from redis.exceptions import ResponseError

from contracts.tenant import TenantNames
from services.resources.base import Ensured, Outcome, PermanentError, ref
from services.resources.passwords import new_password, valkey_hash

log = structlog.get_logger(__name__)

CACHE_USER_PREFIX = "t-"  # tenant_names() gives cache users this prefix
# Everything, minus what reaches beyond the tenant's prefix or its own connection.
# @dangerous already holds most named ones; naming them keeps the intent readable and
# survives a server whose categories differ. scan/randomkey list other tenants' keys.
COMMAND_RULES = (
    "+@all", "-@dangerous", "-@scripting", "-keys", "-flushall", "-flushdb", "-config", "-debug",
    "-shutdown", "-monitor", "-scan", "-randomkey", "-select", "-move", "-swapdb", "-migrate",
)
SCAN_BATCH = 500


def _permanent(exc: ResponseError, doing: str) -> PermanentError:
    # Only the error's first word (ERR, NOPERM, ...): the rest may quote our arguments.
    code = (str(exc).split() or ["ERR"])[0]
    return PermanentError(f"Valkey refused to {doing}: {code}")


class TenantCache:
    """Ensure/remove a tenant's ACL user and keys through an admin connection."""

    def __init__(self, client: aredis.Redis, *, url: str | None = None) -> None:
        self.client = client
        self.url = url  # to reach databases other than the client's when sweeping keys
        self._db_acls: bool | None = None

    async def _supports_db_acls(self) -> bool:
        """Valkey 9 restricts users to databases (`db=0`); older servers do not know it."""
        if self._db_acls is None:
            default = await self.client.execute_command("ACL", "GETUSER", "default")
            self._db_acls = "databases" in _as_dict(default)
        return self._db_acls

    async def _desired(self, names: TenantNames, password: SecretStr) -> tuple[dict[str, Any], list[str]]:
        pattern = f"{names.cache_prefix}*"
        state = {"flags": ["on"], "passwords": [valkey_hash(password)], "commands": " ".join(COMMAND_RULES),
                 "keys": f"~{pattern}", "channels": f"&{pattern}", "selectors": []}
        rules = ["reset", "on", f"#{valkey_hash(password)}", f"~{pattern}", f"&{pattern}"]
        if await self._supports_db_acls():
            state["databases"] = "db=0"
            rules += ["resetdbs", "db=0"]
        return state, rules + list(COMMAND_RULES)

    async def ensure(self, names: TenantNames, password: SecretStr | None) -> Ensured[SecretStr]:
        """`password`: the one in the tenant's secret (None: set a new one)."""
        password = password or new_password()
        try:
            current = await self._getuser(names.cache_user)
            desired, rules = await self._desired(names, password)
            if current != desired:
                await self.client.execute_command("ACL", "SETUSER", names.cache_user, *rules)
            # Always: a previous run may have set the user and died before saving it.
            await self.client.execute_command("ACL", "SAVE")
        except ResponseError as exc:
            raise _permanent(exc, f"set ACL user {names.cache_user}") from None
        return Ensured(Outcome.of(current is None, current != desired), password)

    async def _getuser(self, user: str) -> dict[str, Any] | None:
        raw = await self.client.execute_command("ACL", "GETUSER", user)
        if raw is None:
            return None
        got = _as_dict(raw)
        return {k: got.get(k) for k in ("flags", "passwords", "commands", "keys", "channels", "selectors",
                                         *(["databases"] if "databases" in got else []))}

    async def remove_user(self, names: TenantNames) -> list[str]:
        """Deleting the user also disconnects every client logged in as it."""
        try:
            removed = await self.client.execute_command("ACL", "DELUSER", names.cache_user)
            await self.client.execute_command("ACL", "SAVE")
        except ResponseError as exc:
            raise _permanent(exc, f"delete ACL user {names.cache_user}") from None
        return [ref("cache_user", names.cache_user)] if int(removed) else []

    async def remove_keys(self, names: TenantNames) -> list[str]:
        """UNLINK every `<tenant>:*` key in every database that holds keys."""
        total = 0
        for client in await self._databases():
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{names.cache_prefix}*", count=SCAN_BATCH):
                batch.append(key)
                if len(batch) >= SCAN_BATCH:
                    total += await client.unlink(*batch)
                    batch = []
            if batch:
                total += await client.unlink(*batch)
            if client is not self.client:
                await client.aclose()
        if total:
            log.info("cache.keys_removed", prefix=names.cache_prefix, keys=total)
        return [ref("cache_keys", f"{names.cache_prefix}*")] if total else []

    async def existing(self, names: TenantNames) -> list[str]:
        found = []
        if await self.client.execute_command("ACL", "GETUSER", names.cache_user) is not None:
            found.append(ref("cache_user", names.cache_user))
        if names.cache_prefix in await self.key_prefixes():
            found.append(ref("cache_keys", f"{names.cache_prefix}*"))
        return found

    async def tenant_like_users(self) -> list[str]:
        users = await self.client.execute_command("ACL", "USERS")
        return sorted(u for u in map(_text, users) if u.startswith(CACHE_USER_PREFIX))

    async def key_prefixes(self) -> dict[str, int]:
        """'<prefix>:' → number of keys, over every database (what the doctor reads)."""
        counts: dict[str, int] = {}
        for client in await self._databases():
            async for key in client.scan_iter(count=SCAN_BATCH):
                head, sep, _ = _text(key).partition(":")
                if sep:
                    counts[f"{head}:"] = counts.get(f"{head}:", 0) + 1
            if client is not self.client:
                await client.aclose()
        return counts

    async def _databases(self) -> list[aredis.Redis]:
        """A client per database holding keys: the main one for db 0, new ones for others."""
        keyspace = await self.client.info("keyspace")
        numbers = sorted(int(name[2:]) for name in keyspace if name.startswith("db"))
        clients = [self.client]
        for n in numbers:
            if n != 0 and self.url:
                clients.append(aredis.Redis.from_url(self.url, db=n))
        return clients


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_dict(raw: Any) -> dict[str, Any]:
    """ACL GETUSER answers a flat list (RESP2) or a map (RESP3); values as text."""
    if isinstance(raw, dict):
        items = list(raw.items())
    else:
        items = list(zip(raw[::2], raw[1::2], strict=True))

    def norm(v: Any) -> Any:
        return [norm(x) for x in v] if isinstance(v, list) else _text(v)

    return {_text(k): norm(v) for k, v in items}
