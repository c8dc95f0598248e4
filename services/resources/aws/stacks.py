"""One Pulumi stack per tenant, driven by the Automation API.

`converge` = create_or_select_stack + set config + up; `destroy` = destroy + remove_stack.
State lives in an S3 backend, secrets are encrypted with a KMS secrets provider.

Automation's `up` blocks for minutes and the CLI runs the program as a child process:
each job runs in a separate worker process (spawned, so no event loop or open connection
is inherited), and the service's event loop only awaits its future. Another update of
the same stack (a redelivery racing the first attempt, an operator) makes the CLI fail
with ConcurrentUpdateError: the job waits and retries a bounded number of times, then
raises so the consumer redelivers later. A lock left by a crashed process never clears
by itself: see "Stale stack lock" in infra/README.md.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from contracts.tenant import TenantNames

log = structlog.get_logger(__name__)

TENANT_PROGRAM = Path(__file__).resolve().parents[3] / "infra" / "tenant"
CONCURRENT_RETRIES = 5
CONCURRENT_BACKOFF_S = 15.0


@dataclass(frozen=True)
class StackSettings:
    """Everything a worker process needs to reach the tenant stacks (picklable, no secrets:
    the KMS key and state bucket are names; credentials come from the task role)."""

    backend_url: str  # s3://<bucket>/<prefix>
    secrets_provider: str  # awskms://alias/hostplane?region=<region>
    platform_stack: str  # the platform stack's fully qualified name, for the StackReference
    region: str
    prefix: str = "hostplane"
    base_config: Mapping[str, str] = field(default_factory=dict)  # image, zoneId, baseDomain, edge...
    work_dir: str = str(TENANT_PROGRAM)


@dataclass(frozen=True)
class StackResult:
    created: bool
    changes: dict[str, int]
    outputs: dict[str, Any]

    @property
    def changed(self) -> bool:
        return any(op != "same" and n for op, n in self.changes.items())


class TenantStackHandle(Protocol):
    """The slice of `pulumi.automation.Stack` the lifecycle uses."""

    def set_all_config(self, config: dict[str, Any]) -> None: ...
    def up(self, **kw: Any) -> Any: ...
    def destroy(self, **kw: Any) -> Any: ...


class Workspace(Protocol):
    def create_or_select(self, stack: str) -> tuple[TenantStackHandle, bool]: ...
    def select(self, stack: str) -> TenantStackHandle | None: ...
    def remove(self, stack: str) -> None: ...
    def list(self) -> list[str]: ...


def stack_name(names: TenantNames) -> str:
    return names.runtime_service


def _is_concurrent_update(exc: BaseException) -> bool:
    from pulumi.automation import ConcurrentUpdateError

    return isinstance(exc, ConcurrentUpdateError)


def _retrying(action: Callable[[], Any], what: str, *, retries: int, backoff_s: float,
              sleep: Callable[[float], None]) -> Any:
    for attempt in range(1, retries + 2):
        try:
            return action()
        except Exception as exc:
            if not _is_concurrent_update(exc) or attempt > retries:
                raise
            log.warning("stack.concurrent_update", stack=what, attempt=attempt, retry_in_s=backoff_s * attempt)
            sleep(backoff_s * attempt)
    raise AssertionError("unreachable")


def converge(ws: Workspace, stack: str, config: Mapping[str, str], *, retries: int = CONCURRENT_RETRIES,
             backoff_s: float = CONCURRENT_BACKOFF_S, sleep: Callable[[float], None] = time.sleep) -> StackResult:
    """Create or select the stack, set its whole config, `up`. Safe to repeat."""
    from pulumi.automation import ConfigValue

    handle, created = ws.create_or_select(stack)
    handle.set_all_config({f"hostplane:{k}": ConfigValue(value=v) for k, v in sorted(config.items())})
    result = _retrying(lambda: handle.up(on_output=_quiet), stack, retries=retries, backoff_s=backoff_s, sleep=sleep)
    outputs = {k: v.value for k, v in (result.outputs or {}).items() if not getattr(v, "secret", False)}
    changes = dict(getattr(result.summary, "resource_changes", None) or {})
    return StackResult(created=created, changes=changes, outputs=outputs)


def destroy(ws: Workspace, stack: str, *, retries: int = CONCURRENT_RETRIES, backoff_s: float = CONCURRENT_BACKOFF_S,
            sleep: Callable[[float], None] = time.sleep) -> bool:
    """Destroy every resource of the stack, then remove the stack. False if there was none."""
    handle = ws.select(stack)
    if handle is None:
        return False
    _retrying(lambda: handle.destroy(on_output=_quiet), stack, retries=retries, backoff_s=backoff_s, sleep=sleep)
    ws.remove(stack)
    return True


def _quiet(line: str) -> None:
    """CLI output is not logged: a failing provider may print request bodies."""


class AutomationWorkspace:
    """`Workspace` over the real Automation API (needs the Pulumi CLI on PATH)."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings

    def _kw(self) -> dict[str, Any]:
        return {"work_dir": self.settings.work_dir, "secrets_provider": self.settings.secrets_provider,
                "env_vars": {"PULUMI_BACKEND_URL": self.settings.backend_url, "AWS_REGION": self.settings.region}}

    def _opts(self) -> Any:
        from pulumi.automation import LocalWorkspaceOptions

        return LocalWorkspaceOptions(**self._kw())

    def create_or_select(self, stack: str) -> tuple[Any, bool]:
        from pulumi import automation as auto

        try:
            return auto.create_stack(stack, work_dir=self.settings.work_dir, opts=self._opts()), True
        except auto.StackAlreadyExistsError:
            return auto.select_stack(stack, work_dir=self.settings.work_dir, opts=self._opts()), False

    def select(self, stack: str) -> Any | None:
        from pulumi import automation as auto

        try:
            return auto.select_stack(stack, work_dir=self.settings.work_dir, opts=self._opts())
        except auto.StackNotFoundError:
            return None

    def remove(self, stack: str) -> None:
        from pulumi import automation as auto

        auto.LocalWorkspace(**self._kw()).remove_stack(stack)

    def list(self) -> list[str]:
        from pulumi import automation as auto

        return [s.name for s in auto.LocalWorkspace(**self._kw()).list_stacks()]


def _job(kind: str, settings: StackSettings, stack: str, config: Mapping[str, str] | None) -> Any:
    """Runs in the worker process."""
    ws = AutomationWorkspace(settings)
    if kind == "up":
        return converge(ws, stack, config or {})
    if kind == "destroy":
        return destroy(ws, stack)
    return ws.list()


class TenantStacks:
    """The async face the adapters use. `workspace` (tests: a fake) runs jobs in a thread
    of this process; without it, jobs run in a spawned worker process on the real API."""

    def __init__(self, settings: StackSettings, *, workspace: Workspace | None = None,
                 executor: Executor | None = None, backoff_s: float = CONCURRENT_BACKOFF_S) -> None:
        self.settings, self.workspace, self.backoff_s = settings, workspace, backoff_s
        self._executor = executor
        self._locks: dict[str, asyncio.Lock] = {}

    def config_for(self, names: TenantNames, **extra: str) -> dict[str, str]:
        return {**self.settings.base_config, "tenantId": names.tenant_id, "prefix": self.settings.prefix,
                "platformStack": self.settings.platform_stack, "secretName": names.secret, **extra}

    async def _run(self, kind: str, stack: str, config: Mapping[str, str] | None = None) -> Any:
        # One job per stack at a time from this process; other processes meet the backend lock.
        async with self._locks.setdefault(stack, asyncio.Lock()):
            if self.workspace is not None:
                ws = self.workspace
                fn: Callable[[], Any] = {
                    "up": lambda: converge(ws, stack, config or {}, backoff_s=self.backoff_s),
                    "destroy": lambda: destroy(ws, stack, backoff_s=self.backoff_s),
                    "list": ws.list,
                }[kind]
                return await asyncio.to_thread(fn)
            if self._executor is None:
                self._executor = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(_job, kind, self.settings, stack, config))

    async def converge(self, names: TenantNames, **extra: str) -> StackResult:
        stack = stack_name(names)
        result: StackResult = await self._run("up", stack, self.config_for(names, **extra))
        log.info("stack.up", stack=stack, created=result.created, changes=result.changes)
        return result

    async def destroy(self, names: TenantNames) -> bool:
        existed: bool = await self._run("destroy", stack_name(names))
        log.info("stack.destroyed" if existed else "stack.absent", stack=stack_name(names))
        return existed

    async def names(self) -> list[str]:
        return await self._run("list", "*")

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
