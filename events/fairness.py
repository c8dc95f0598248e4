"""Fairness between tenants in one consumer (events.consumer): at most `cap` messages of
one tenant are worked on at a time, so one tenant's backlog cannot fill every slot."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any


class TenantSlots:
    """At most `cap` holders per tenant. A message is `claim`ed when received (so the
    receive loop knows at once whether it takes a slot or waits), takes its turn in `slot`
    (asyncio's semaphores wake waiters in order, so a tenant's messages keep theirs), and
    is `release`d when its task ends, whatever happened."""

    def __init__(self, cap: int) -> None:
        self.cap = max(1, cap)
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}

    @property
    def waiting(self) -> int:
        """Messages in hand that wait for their tenant's turn (they take no slot)."""
        return sum(max(0, n - self.cap) for n in self._users.values())

    def claim(self, tenant: str | None) -> None:
        if tenant is not None:
            self._users[tenant] = self._users.get(tenant, 0) + 1
            self._sems.setdefault(tenant, asyncio.Semaphore(self.cap))

    def release(self, tenant: str | None) -> None:
        if tenant is not None and tenant in self._users:
            self._users[tenant] -= 1
            if not self._users[tenant]:
                del self._users[tenant], self._sems[tenant]

    @contextlib.asynccontextmanager
    async def slot(self, tenant: str | None):  # type: ignore[no-untyped-def]
        if tenant is None or tenant not in self._sems:  # unreadable: refused at once anyway
            yield
            return
        async with self._sems[tenant]:
            yield

    def busy(self, tenant: str) -> int:
        """Messages of `tenant` in hand, working or waiting (for tests and metrics)."""
        return self._users.get(tenant, 0)


def tenant_of(msg: dict[str, Any]) -> str | None:
    """The envelope's tenant id, read loosely (None when unreadable; `_read` says why)."""
    try:
        detail = json.loads(msg["Body"])["detail"]
        if isinstance(detail, str):
            detail = json.loads(detail)
        tenant = detail.get("tenant_id")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return tenant[:128] if isinstance(tenant, str) else None
