"""AWS drivers with the local drivers' interface (services/resources/*.py), so the
provisioner and deprovisioner handlers run unchanged with HOSTPLANE_TARGET=aws.

What moves into the tenant stack: the bucket, the cache user (ElastiCache refuses
`ACL SETUSER`; users are ElastiCache resources), the runtime, the edge. What stays a
direct call: the database and role (SQL on the shared Aurora cluster) and the secret
(Secrets Manager), exactly as locally, and removing a tenant's cache keys (SCAN+UNLINK
as the admin user).

The bucket step and the runtime step both converge the one stack; the second reuses
the first's result when it is fresh (the same handler run), instead of a second `up`.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import SecretStr

from contracts.tenant import TenantNames
from services.resources.aws.stacks import StackResult, TenantStacks
from services.resources.base import NO_OPTIONS, Ensured, Outcome, PermanentError, TenantOptions, ref
from services.resources.passwords import new_password

FRESH_S = 120.0


class TenantStackConvergence:
    """Converge a tenant's stack at most once per handler run."""

    def __init__(self, stacks: TenantStacks, fresh_s: float = FRESH_S) -> None:
        self.stacks, self.fresh_s = stacks, fresh_s
        self._recent: dict[str, tuple[float, TenantOptions, StackResult]] = {}

    async def ensure(self, names: TenantNames, options: TenantOptions = NO_OPTIONS) -> tuple[StackResult, bool]:
        """(result, ran): `ran` is False when a fresh result of the same options was reused."""
        seen = self._recent.get(names.tenant_id)
        if seen and seen[1] == options and time.monotonic() - seen[0] < self.fresh_s:
            return seen[2], False
        result = await self.stacks.converge(names, options)
        self._check(names, result)
        self._recent[names.tenant_id] = (time.monotonic(), options, result)
        return result, True

    async def set_idle_after(self, names: TenantNames, idle_after_s: int | None) -> StackResult:
        """`TenantStacks.set_idle_after`; PermanentError when the tenant has no stack."""
        self._recent.pop(names.tenant_id, None)  # the stack changed: the next ensure runs again
        result = await self.stacks.set_idle_after(names, idle_after_s)
        if result is None:
            raise PermanentError(f"tenant {names.tenant_id!r} has no runtime stack: it was deleted, or its "
                                 "provisioning never finished")
        self._check(names, result)
        return result

    async def destroy(self, names: TenantNames) -> bool:
        self._recent.pop(names.tenant_id, None)
        return await self.stacks.destroy(names)

    @staticmethod
    def _check(names: TenantNames, result: StackResult) -> None:
        """The stack's outputs are the references the events carry: they must be the names."""
        expected = {"bucket": names.bucket, "runtimeService": names.runtime_service, "cacheUser": names.cache_user}
        drift = sorted(k for k, v in expected.items() if result.outputs.get(k) != v)
        if drift:
            raise PermanentError(f"tenant stack outputs differ from the tenant's names: {', '.join(drift)}")


def _outcome(result: StackResult, ran: bool) -> Outcome:
    if not ran:
        return Outcome.UNCHANGED
    return Outcome.of(result.created, result.changed)


class StackBucket:
    """TenantBucket's interface; reads (orphan doctor) go to S3 through the local driver."""

    def __init__(self, stack: TenantStackConvergence, s3_bucket: Any) -> None:
        self.stack, self.s3 = stack, s3_bucket

    async def ensure(self, names: TenantNames, options: TenantOptions = NO_OPTIONS) -> Ensured[str]:
        result, ran = await self.stack.ensure(names, options)
        return Ensured(_outcome(result, ran), result.outputs["bucket"])

    async def remove(self, names: TenantNames) -> list[str]:
        existed = await self.s3.existing(names)
        await self.stack.destroy(names)  # no-op when the runtime step destroyed it already
        leftover = await self.s3.remove(names)  # a bucket the stack no longer tracked
        return existed or leftover

    async def is_private(self, names: TenantNames) -> bool:
        return await self.s3.is_private(names)

    async def existing(self, names: TenantNames) -> list[str]:
        return await self.s3.existing(names)

    async def all_names(self) -> list[str]:
        return await self.s3.all_names()


class StackRuntime:
    """RuntimeRegistry's interface: the runtime is the tenant stack's ECS service."""

    def __init__(self, stack: TenantStackConvergence) -> None:
        self.stack = stack

    async def ensure_schema(self) -> None:
        """Nothing to prepare: the stacks are the registry."""

    async def register(self, names: TenantNames, env_ref: str, options: TenantOptions = NO_OPTIONS) -> Ensured[str]:
        if env_ref != names.secret:
            raise PermanentError("the runtime reads its environment from the tenant's own secret only")
        result, ran = await self.stack.ensure(names, options)
        return Ensured(_outcome(result, ran), result.outputs["runtimeService"])

    async def set_idle_after(self, names: TenantNames, idle_after_s: int | None) -> Ensured[str]:
        """The tenant's idle alarm (docs/scale-to-zero.md, On AWS) set to the new period."""
        result = await self.stack.set_idle_after(names, idle_after_s)
        return Ensured(_outcome(result, True), result.outputs["runtimeService"])

    async def deregister(self, names: TenantNames) -> list[str]:
        existed = await self.stack.destroy(names)
        return [ref("runtime", names.runtime_service)] if existed else []

    async def existing(self, names: TenantNames) -> list[str]:
        stacks = await self.stack.stacks.names()
        return [ref("runtime", names.runtime_service)] if names.runtime_service in stacks else []

    async def registered(self) -> set[str]:
        prefix = f"{self.stack.stacks.settings.prefix}-"
        return {s.split("/")[-1].removeprefix(prefix) for s in await self.stack.stacks.names()}


class StackEdge:
    """What the edge serves (the deprovisioner's `deps.edge`): the stack's `routed` output,
    which router-config's unroute sets false once no name leads to the tenant."""

    def __init__(self, stacks: TenantStacks) -> None:
        self.stacks = stacks

    async def serves(self, names: TenantNames) -> bool:
        outputs = await self.stacks.outputs(names)
        return bool(outputs and outputs.get("routed"))

    async def aclose(self) -> None:
        """The stacks are closed with the resources."""


class StackCache:
    """TenantCache's interface: the user is made by the stack from the password in the
    tenant's secret; keys are swept through the admin connection as locally."""

    def __init__(self, local_cache: Any) -> None:
        self.local = local_cache

    async def ensure(self, names: TenantNames, password: SecretStr | None) -> Ensured[SecretStr]:
        if password is not None:
            return Ensured(Outcome.UNCHANGED, password)
        return Ensured(Outcome.CREATED, new_password())

    async def remove_user(self, names: TenantNames) -> list[str]:
        return []  # the stack's destroy (runtime step, first) removed the ElastiCache user

    async def remove_keys(self, names: TenantNames) -> list[str]:
        return await self.local.remove_keys(names)

    async def existing(self, names: TenantNames) -> list[str]:
        return [r for r in [ref("cache_keys", f"{names.cache_prefix}*")]
                if names.cache_prefix in await self.local.key_prefixes()]

    async def tenant_like_users(self) -> list[str]:
        return []  # ElastiCache users belong to stacks; the stack list is the inventory

    async def key_prefixes(self) -> dict[str, int]:
        return await self.local.key_prefixes()
