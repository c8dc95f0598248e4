"""List reads cached in the tenant's own Valkey prefix. Every key starts with
CACHE_PREFIX (the ACL refuses others). A write bumps the entity's generation counter,
and list keys include the generation (and the release), so a write is visible on the next list without
KEYS/SCAN (which the tenant's cache user may not run). A cache failure is a miss."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

log = logging.getLogger("app.cache")
TTL_SECONDS = 300
RELEASE = os.environ.get("APP_VERSION", "0")


class ListCache:
    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client  # redis.asyncio.Redis or None (no cache configured)
        self.prefix = prefix

    def _gen_key(self, entity: str) -> str:
        return f"{self.prefix}cache:{entity}:gen"

    async def _key(self, entity: str, query: Any) -> str:
        gen = await self.client.get(self._gen_key(entity))
        digest = hashlib.sha256(json.dumps(query, default=str, sort_keys=True).encode()).hexdigest()[:32]
        # The release is part of the key: after a migration the new release must not serve
        # lists cached by the old one (other columns, defaults not yet filled).
        return f"{self.prefix}cache:{entity}:list:v{RELEASE}:{int(gen or 0)}:{digest}"

    async def read(self, entity: str, query: Any, load) -> tuple[Any, bool]:
        """(value, hit): the cached list, or `await load()` stored for next time."""
        if self.client is None:
            return await load(), False
        try:
            key = await self._key(entity, query)
            raw = await self.client.get(key)
            if raw is not None:
                return json.loads(raw), True
        except Exception as exc:  # noqa: BLE001 (the database still answers)
            log.warning("cache read failed: %s", type(exc).__name__)
            return await load(), False
        value = await load()
        try:
            await self.client.set(key, json.dumps(value), ex=TTL_SECONDS)
        except Exception as exc:  # noqa: BLE001
            log.warning("cache write failed: %s", type(exc).__name__)
        return value, False

    async def invalidate(self, entity: str) -> None:
        if self.client is None:
            return
        try:
            await self.client.incr(self._gen_key(entity))
        except Exception as exc:  # noqa: BLE001
            # a stale list would outlive this write: say so loudly; keys expire after TTL_SECONDS
            log.error("cache invalidation failed for %s: %s", entity, type(exc).__name__)
