"""In-memory stand-ins for every tenant-resource adapter and the records: the fakes the
handlers' unit tests run against (cosmicpython's FakeRepository), with the same ensure
semantics as the real adapters, a journal of every change, and injectable faults
(`Faults.arm("database.ensure", exc, when="after")` = crash after the work was done)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from contracts.tenant import TenantNames
from services.resources.base import NO_OPTIONS, Ensured, Outcome, PermanentError, TenantOptions, ref
from services.resources.passwords import new_password
from services.resources.records import LIVE_STATES
from services.resources.secret import Endpoints, TenantCredentials
from services.resources.wiring import TenantResources


class Faults:
    def __init__(self) -> None:
        self._armed: dict[str, tuple[BaseException, str]] = {}

    def arm(self, op: str, exc: BaseException, when: str = "before") -> None:
        self._armed[op] = (exc, when)

    def check(self, op: str, when: str) -> None:
        if op in self._armed and self._armed[op][1] == when:
            raise self._armed.pop(op)[0]


class _Adapter:
    kind = ""

    def __init__(self, journal: list[str], faults: Faults) -> None:
        self.journal, self.faults = journal, faults

    def note(self, change: str) -> None:
        self.journal.append(f"{self.kind}.{change}")

    @contextlib.asynccontextmanager
    async def op(self, name: str) -> AsyncIterator[None]:
        self.faults.check(f"{self.kind}.{name}", "before")
        yield
        self.faults.check(f"{self.kind}.{name}", "after")


class MemoryDatabase(_Adapter):
    kind = "database"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.roles: dict[str, str] = {}  # role → password (a server keeps a verifier)
        self.databases: set[str] = set()

    async def ensure(self, names: TenantNames, password: SecretStr | None) -> Ensured[SecretStr]:
        password = password or new_password()
        async with self.op("ensure"):
            created = changed = False
            if names.db_role not in self.roles:
                self.note(f"create_role:{names.db_role}")
                created = True
            elif self.roles[names.db_role] != password.get_secret_value():
                self.note(f"set_password:{names.db_role}")
                changed = True
            self.roles[names.db_role] = password.get_secret_value()
            if names.database not in self.databases:
                self.note(f"create_database:{names.database}")
                self.databases.add(names.database)
                created = True
        return Ensured(Outcome.of(created, changed), password)

    async def remove_database(self, names: TenantNames) -> list[str]:
        async with self.op("remove_database"):
            if names.database not in self.databases:
                return []
            self.databases.discard(names.database)
            self.note(f"drop_database:{names.database}")
        return [ref("database", names.database)]

    async def remove_role(self, names: TenantNames) -> list[str]:
        async with self.op("remove_role"):
            if self.roles.pop(names.db_role, None) is None:
                return []
            self.note(f"drop_role:{names.db_role}")
        return [ref("role", names.db_role)]

    async def existing(self, names: TenantNames) -> list[str]:
        return ([ref("database", names.database)] if names.database in self.databases else []) + (
            [ref("role", names.db_role)] if names.db_role in self.roles else [])


class MemoryCache(_Adapter):
    kind = "cache"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.users: dict[str, str] = {}
        self.keys: dict[str, bytes] = {}

    async def ensure(self, names: TenantNames, password: SecretStr | None) -> Ensured[SecretStr]:
        password = password or new_password()
        async with self.op("ensure"):
            current = self.users.get(names.cache_user)
            if current != password.get_secret_value():
                self.note(f"{'create_user' if current is None else 'set_password'}:{names.cache_user}")
                self.users[names.cache_user] = password.get_secret_value()
        return Ensured(Outcome.of(current is None, current != password.get_secret_value()), password)

    async def remove_user(self, names: TenantNames) -> list[str]:
        async with self.op("remove_user"):
            if self.users.pop(names.cache_user, None) is None:
                return []
            self.note(f"deluser:{names.cache_user}")
        return [ref("cache_user", names.cache_user)]

    async def remove_keys(self, names: TenantNames) -> list[str]:
        async with self.op("remove_keys"):
            doomed = [k for k in self.keys if k.startswith(names.cache_prefix)]
            for key in doomed:
                del self.keys[key]
            if doomed:
                self.note(f"unlink:{names.cache_prefix}*")
        return [ref("cache_keys", f"{names.cache_prefix}*")] if doomed else []

    async def existing(self, names: TenantNames) -> list[str]:
        found = [ref("cache_user", names.cache_user)] if names.cache_user in self.users else []
        if any(k.startswith(names.cache_prefix) for k in self.keys):
            found.append(ref("cache_keys", f"{names.cache_prefix}*"))
        return found


class MemorySecrets(_Adapter):
    kind = "secret"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.values: dict[str, dict[str, str]] = {}

    async def read(self, names: TenantNames) -> TenantCredentials | None:
        async with self.op("read"):
            value = self.values.get(names.secret)
        return TenantCredentials.from_env(value) if value is not None else None

    async def ensure(self, names: TenantNames, creds: TenantCredentials) -> Ensured[str]:
        arn = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{names.secret}-AbCdEf"
        async with self.op("ensure"):
            current = self.values.get(names.secret)
            if current != creds.env():
                self.note(f"{'create' if current is None else 'put'}:{names.secret}")
                self.values[names.secret] = creds.env()
        return Ensured(Outcome.of(current is None, current != creds.env()), arn)

    async def remove(self, names: TenantNames) -> list[str]:
        async with self.op("remove"):
            if self.values.pop(names.secret, None) is None:
                return []
            self.note(f"delete:{names.secret}")
        return [ref("secret", names.secret)]

    async def existing(self, names: TenantNames) -> list[str]:
        return [ref("secret", names.secret)] if names.secret in self.values else []


class MemoryBucket(_Adapter):
    kind = "bucket"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.buckets: dict[str, dict[str, Any]] = {}
        self.options: dict[str, TenantOptions] = {}  # tenant → the options its last ensure was given

    async def ensure(self, names: TenantNames, options: TenantOptions = NO_OPTIONS) -> Ensured[str]:
        async with self.op("ensure"):
            self.options[names.tenant_id] = options
            bucket = self.buckets.get(names.bucket)
            changed = bucket is not None and not bucket["private"]
            if bucket is None:
                self.note(f"create:{names.bucket}")
                self.buckets[names.bucket] = {"private": True, "objects": {}}
            elif changed:
                self.note(f"make_private:{names.bucket}")
                bucket["private"] = True
        return Ensured(Outcome.of(bucket is None, changed), names.bucket)

    async def remove(self, names: TenantNames) -> list[str]:
        async with self.op("remove"):
            if self.buckets.pop(names.bucket, None) is None:
                return []
            self.note(f"delete:{names.bucket}")
        return [ref("bucket", names.bucket)]

    async def existing(self, names: TenantNames) -> list[str]:
        return [ref("bucket", names.bucket)] if names.bucket in self.buckets else []


class MemoryRuntime(_Adapter):
    kind = "runtime"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.services: dict[str, str] = {}  # tenant → env_ref
        self.options: dict[str, TenantOptions] = {}  # tenant → the options its last register was given

    async def register(self, names: TenantNames, env_ref: str, options: TenantOptions = NO_OPTIONS) -> Ensured[str]:
        async with self.op("register"):
            self.options[names.tenant_id] = options
            current = self.services.get(names.tenant_id)
            if current != env_ref:
                self.note(f"register:{names.runtime_service}")
                self.services[names.tenant_id] = env_ref
        return Ensured(Outcome.of(current is None, current not in (None, env_ref)), names.runtime_service)

    async def set_idle_after(self, names: TenantNames, idle_after_s: int | None) -> Ensured[str]:
        async with self.op("set_idle_after"):
            if names.tenant_id not in self.services:
                raise PermanentError(f"tenant {names.tenant_id!r} has no registered runtime")
            before = self.options.get(names.tenant_id, NO_OPTIONS)
            if before.idle_after_s != idle_after_s:
                self.note(f"set_idle_after:{names.runtime_service}={idle_after_s}")
                self.options[names.tenant_id] = replace(before, idle_after_s=idle_after_s)
        return Ensured(Outcome.of(False, before.idle_after_s != idle_after_s), names.runtime_service)

    async def deregister(self, names: TenantNames) -> list[str]:
        async with self.op("deregister"):
            if self.services.pop(names.tenant_id, None) is None:
                return []
            self.note(f"deregister:{names.runtime_service}")
        return [ref("runtime", names.runtime_service)]

    async def existing(self, names: TenantNames) -> list[str]:
        return [ref("runtime", names.runtime_service)] if names.tenant_id in self.services else []


class MemoryArtifacts(_Adapter):
    kind = "artifacts"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.folders: set[str] = set()

    async def remove(self, names: TenantNames) -> list[str]:
        async with self.op("remove"):
            if names.artifact_dir not in self.folders:
                return []
            self.folders.discard(names.artifact_dir)
            self.note(f"remove:{names.artifact_dir}")
        return [ref("artifacts", names.artifact_dir)]

    async def existing(self, names: TenantNames) -> list[str]:
        return [ref("artifacts", names.artifact_dir)] if names.artifact_dir in self.folders else []


class MemoryRecords:
    """services.resources.records.ProvisioningRecords without a database."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.tenants: dict[str, dict[str, Any]] = {}
        self.step_rows: dict[str, dict[str, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def holding(self, tenant_id: str) -> AsyncIterator[None]:
        async with self._locks.setdefault(tenant_id, asyncio.Lock()):
            yield

    async def start_provisioning(self, tenant_id: str, at: datetime, correlation_id: uuid.UUID) -> bool:
        row = self.tenants.setdefault(tenant_id, {"requested_at": None, "deletion_requested_at": None})
        if row["deletion_requested_at"] and row["deletion_requested_at"] >= at:
            return False
        row.update(state="provisioning", requested_at=max(filter(None, (row["requested_at"], at))),
                   failed_stage=None, error=None)
        return True

    async def start_deprovisioning(self, tenant_id: str, at: datetime, correlation_id: uuid.UUID) -> bool:
        row = self.tenants.setdefault(tenant_id, {"requested_at": None, "deletion_requested_at": None})
        if row["requested_at"] and row["requested_at"] > at:
            return False
        row.update(state="deprovisioning", deletion_requested_at=max(filter(None, (row["deletion_requested_at"], at))),
                   failed_stage=None, error=None)
        return True

    async def step_started(self, tenant_id: str, step: str) -> None:
        row = self.step_rows.setdefault(tenant_id, {}).setdefault(step, {"attempts": 0})
        row.update(status="started", attempts=row["attempts"] + 1, outcome=None, error=None)

    async def step_finished(self, tenant_id: str, step: str, outcome: str | None, error: str | None = None) -> None:
        self.step_rows[tenant_id][step].update(status="failed" if error else "done", outcome=outcome, error=error)

    async def finish(self, tenant_id: str, state: str, stage: str | None = None, error: str | None = None) -> None:
        self.faults.check("records.finish", "before")
        self.tenants[tenant_id].update(state=state, failed_stage=stage, error=error)
        if state == "deprovisioned":
            self.step_rows.pop(tenant_id, None)

    async def steps(self, tenant_id: str) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.step_rows.get(tenant_id, {}).items()}

    async def state(self, tenant_id: str) -> str | None:
        return self.tenants.get(tenant_id, {}).get("state")

    async def live_tenants(self) -> set[str]:
        return {t for t, row in self.tenants.items() if row.get("state") in LIVE_STATES}


class MemoryRequests:
    """events.recorded.RecordedRequests without the API's tables: the requests the API
    accepted, in order (`accept`); an envelope of none of them has nothing to compare."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, uuid.UUID, str]] = []  # (tenant, correlation id, kind), oldest first

    def accept(self, envelope: Any, kind: str) -> Any:
        self.accepted.append((envelope.tenant_id, envelope.correlation_id, kind))
        return envelope

    async def superseded(self, envelope: Any, kinds: tuple[str, ...]) -> str | None:
        keys = [(tenant, correlation) for tenant, correlation, _ in self.accepted]
        if (envelope.tenant_id, envelope.correlation_id) not in keys:
            return None
        after = self.accepted[keys.index((envelope.tenant_id, envelope.correlation_id)) + 1:]
        newer = [kind for tenant, _, kind in after if tenant == envelope.tenant_id and kind in kinds]
        return newer[-1] if newer else None


def memory_resources(prefix: str = "hostplane") -> TenantResources:
    """Every adapter in memory, sharing one journal and one fault plan
    (`res.journal`, `res.faults`)."""
    journal: list[str] = []
    faults = Faults()
    res = TenantResources(
        prefix=prefix,
        endpoints=Endpoints(db_host="127.0.0.1", db_port=5432, cache_host="127.0.0.1", cache_port=6379,
                            region="us-east-1"),
        records=MemoryRecords(faults),  # type: ignore[arg-type]
        database=MemoryDatabase(journal, faults),  # type: ignore[arg-type]
        cache=MemoryCache(journal, faults),  # type: ignore[arg-type]
        secrets=MemorySecrets(journal, faults),  # type: ignore[arg-type]
        bucket=MemoryBucket(journal, faults),  # type: ignore[arg-type]
        runtime=MemoryRuntime(journal, faults),  # type: ignore[arg-type]
        artifacts=MemoryArtifacts(journal, faults),  # type: ignore[arg-type]
        recorded=MemoryRequests(),
    )
    res.journal, res.faults = journal, faults  # type: ignore[attr-defined]
    return res
