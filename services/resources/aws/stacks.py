"""One Pulumi stack per tenant, driven by the Automation API.

`converge` = create_or_select_stack + set config + up; `destroy` = destroy + remove_stack.
State lives in an S3 backend, secrets are encrypted with a KMS secrets provider.

Two services write a tenant's stack: the provisioner its make-up (`config_for`: image,
names, the edge mode the tenant chose), router-config its route (`ROUTE_KEYS`: the custom
domain, whether the edge serves the tenant). With an S3 backend a stack's config file
lives only in the task that last ran it, so every `up` sets the whole config: the
writer's own keys, and the others read back from the stack's last outputs (`CARRIED`,
kept in the state backend), so neither writer undoes the other, across restarts. The
backend lock serialises their `up`s; each attempt re-reads. The deprovisioner reads the
`routed` output before it tears down.

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
from services.resources.base import NO_OPTIONS, TenantOptions

log = structlog.get_logger(__name__)

TENANT_PROGRAM = Path(__file__).resolve().parents[3] / "infra" / "tenant"
CONCURRENT_RETRIES = 5
CONCURRENT_BACKOFF_S = 15.0
ROUTE_KEYS = ("customDomain", "customDomainReady", "routed")
# Config keys the program also exports under the same name. `idleAfter`: the tenant's own idle
# period ("": the installation's, `idleAfterDefault` in base_config, set on every `up`).
CARRIED = ("edge", "idleAfter", *ROUTE_KEYS)
UNSET = {"customDomain": "", "customDomainReady": "false", "routed": "false"}  # a new stack: not routed until router-config says


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
    def outputs(self, stack: str) -> dict[str, Any] | None: ...


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


def carried(outputs: Mapping[str, Any] | None) -> dict[str, str]:
    """The CARRIED settings of a deployed stack, from its outputs, as config values."""
    found = {k: (outputs or {}).get(k) for k in CARRIED}
    return {k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in found.items() if v is not None}


def converge(ws: Workspace, stack: str, config: Mapping[str, str], *, retries: int = CONCURRENT_RETRIES,
             backoff_s: float = CONCURRENT_BACKOFF_S, sleep: Callable[[float], None] = time.sleep,
             create: bool = True, defaults: Mapping[str, str] | None = None) -> StackResult | None:
    """Create (or, `create=False`, only select) the stack, set its whole config — the
    caller's keys over what the stack carries over `defaults` — and `up`. Safe to repeat.
    None: `create=False` and there is no such stack."""
    from pulumi.automation import ConfigValue

    if create:
        handle, created = ws.create_or_select(stack)
    else:
        found = ws.select(stack)
        if found is None:
            return None
        handle, created = found, False

    def attempt() -> Any:
        whole = {**UNSET, **(defaults or {}), **({} if created else carried(ws.outputs(stack))), **config}
        handle.set_all_config({f"hostplane:{k}": ConfigValue(value=v) for k, v in sorted(whole.items())})
        return handle.up(on_output=_quiet)

    result = _retrying(attempt, stack, retries=retries, backoff_s=backoff_s, sleep=sleep)
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
    """`Workspace` over the real Automation API (needs the Pulumi CLI on PATH).

    The tenant program runs with this process's interpreter: inside a virtualenv Pulumi is
    told to use it (`virtualenv: <sys.prefix>`), otherwise the `python` on PATH (the image's,
    where the service's own packages are). The Automation API writes these project settings
    into the program's Pulumi.yaml, so they are passed only when that file says otherwise
    (the checkout's `../../.venv` is this interpreter when `make` built it: left untouched).
    """

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self._project = self._project_settings()

    @staticmethod
    def runtime_options(prefix: str, base_prefix: str) -> dict[str, str]:
        """Pulumi's python runtime options for the interpreter at `prefix` (sys.prefix)."""
        return {"virtualenv": prefix} if prefix != base_prefix else {}

    @staticmethod
    def runtime_differs(project: Mapping[str, Any], work_dir: str, wanted: Mapping[str, str]) -> bool:
        """Whether a Pulumi.yaml (`project`, parsed) runs another interpreter than `wanted`."""
        runtime = project.get("runtime")
        options = dict(runtime.get("options") or {}) if isinstance(runtime, Mapping) else {}
        name = runtime.get("name") if isinstance(runtime, Mapping) else runtime

        def venv(opts: Mapping[str, Any]) -> Path | None:
            return (Path(work_dir) / opts["virtualenv"]).resolve() if opts.get("virtualenv") else None

        others = {k: v for k, v in options.items() if k != "virtualenv"}
        return name != "python" or bool(others) or venv(options) != venv(wanted)

    def _project_settings(self) -> Any | None:
        import sys

        import yaml
        from pulumi.automation import ProjectRuntimeInfo, ProjectSettings

        project = yaml.safe_load((Path(self.settings.work_dir) / "Pulumi.yaml").read_text()) or {}
        wanted = self.runtime_options(sys.prefix, sys.base_prefix)
        if not self.runtime_differs(project, self.settings.work_dir, wanted):
            return None
        return ProjectSettings(name=project["name"], description=project.get("description"),
                               runtime=ProjectRuntimeInfo("python", wanted or None))

    def _kw(self) -> dict[str, Any]:
        return {"work_dir": self.settings.work_dir, "secrets_provider": self.settings.secrets_provider,
                "project_settings": self._project,
                # secrets_provider reaches only `stack init`; a fresh task selecting an existing stack
                # has no Pulumi.<stack>.yaml, so the CLI must take the provider recorded in state.
                "env_vars": {"PULUMI_BACKEND_URL": self.settings.backend_url, "AWS_REGION": self.settings.region,
                             "PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER": "true"}}

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

    def outputs(self, stack: str) -> dict[str, Any] | None:
        """The last deployment's plain outputs, read from the state backend (secret ones left out)."""
        handle = self.select(stack)
        if handle is None:
            return None
        return {k: v.value for k, v in handle.outputs().items() if not v.secret}


def defaults_of(settings: StackSettings) -> dict[str, str]:
    """What a stack gets when neither the writer nor the stack says: the installation's edge."""
    return {"edge": settings.base_config["edge"]} if "edge" in settings.base_config else {}


def _job(kind: str, settings: StackSettings, stack: str, config: Mapping[str, str] | None) -> Any:
    """Runs in the worker process."""
    ws = AutomationWorkspace(settings)
    if kind in ("up", "route"):
        return converge(ws, stack, config or {}, create=kind == "up", defaults=defaults_of(settings))
    if kind == "destroy":
        return destroy(ws, stack)
    if kind == "outputs":
        return ws.outputs(stack)
    return ws.list()


class TenantStacks:
    """The async face the adapters use. `workspace` (tests: a fake) runs jobs in a thread
    of this process; without it, jobs run in a spawned worker process on the real API."""

    def __init__(self, settings: StackSettings, *, workspace: Workspace | None = None,
                 executor: Executor | None = None, backoff_s: float = CONCURRENT_BACKOFF_S) -> None:
        self.settings, self.workspace, self.backoff_s = settings, workspace, backoff_s
        self._executor = executor
        self._locks: dict[str, asyncio.Lock] = {}

    def config_for(self, names: TenantNames, options: TenantOptions = NO_OPTIONS) -> dict[str, str]:
        """The provisioner's keys (never a ROUTE_KEYS one; the edge and the idle period only when
        chosen: otherwise what the stack carries, or for a new one the installation's)."""
        base = {k: v for k, v in self.settings.base_config.items() if k not in ("edge", "idleAfter")}
        config = {**base, "tenantId": names.tenant_id, "prefix": self.settings.prefix,
                  "platformStack": self.settings.platform_stack, "secretName": names.secret}
        if options.edge is not None:
            config["edge"] = options.edge
        if options.idle_after_s is not None:
            config["idleAfter"] = str(options.idle_after_s)
        return config

    async def _run(self, kind: str, stack: str, config: Mapping[str, str] | None = None) -> Any:
        # One job per stack at a time from this process; other processes meet the backend lock.
        async with self._locks.setdefault(stack, asyncio.Lock()):
            if self.workspace is not None:
                ws = self.workspace
                fn: Callable[[], Any] = {
                    "up": lambda: converge(ws, stack, config or {}, backoff_s=self.backoff_s,
                                           defaults=defaults_of(self.settings)),
                    "route": lambda: converge(ws, stack, config or {}, backoff_s=self.backoff_s, create=False,
                                              defaults=defaults_of(self.settings)),
                    "destroy": lambda: destroy(ws, stack, backoff_s=self.backoff_s),
                    "list": ws.list,
                    "outputs": lambda: ws.outputs(stack),
                }[kind]
                return await asyncio.to_thread(fn)
            if self._executor is None:
                self._executor = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(_job, kind, self.settings, stack, config))

    async def converge(self, names: TenantNames, options: TenantOptions = NO_OPTIONS) -> StackResult:
        stack = stack_name(names)
        result: StackResult = await self._run("up", stack, self.config_for(names, options))
        log.info("stack.up", stack=stack, created=result.created, changes=result.changes)
        return result

    async def route(self, names: TenantNames, *, custom_domain: str | None, routed: bool,
                    domain_ready: bool = False) -> StackResult | None:
        """Router-config's keys: serve the tenant (with its custom domain, attached once its
        certificate is issued: `domain_ready`) or stop serving it.
        None: the tenant has no stack (not provisioned yet, or already destroyed)."""
        stack = stack_name(names)
        config = {**self.config_for(names), "customDomain": custom_domain or "",
                  "customDomainReady": "true" if custom_domain and domain_ready else "false",
                  "routed": "true" if routed else "false"}
        result: StackResult | None = await self._run("route", stack, config)
        if result is not None:
            log.info("stack.routed" if routed else "stack.unrouted", stack=stack, changes=result.changes)
        return result

    async def set_idle_after(self, names: TenantNames, idle_after_s: int | None) -> StackResult | None:
        """The provisioner's change of the tenant's idle period (None: the installation's again,
        `idleAfter` ""; 0: always on, no alarm). Everything else as the stack carries it (its
        edge, its route). None: the tenant has no stack. An `up` of the existing stack: a
        TenantOptions cannot say it, since its None means "no choice, keep what is carried"."""
        stack = stack_name(names)
        config = {**self.config_for(names), "idleAfter": "" if idle_after_s is None else str(idle_after_s)}
        result: StackResult | None = await self._run("route", stack, config)  # an existing stack only
        if result is not None:
            log.info("stack.idle_after", stack=stack, idle_after_s=idle_after_s, changes=result.changes)
        return result

    async def destroy(self, names: TenantNames) -> bool:
        existed: bool = await self._run("destroy", stack_name(names))
        log.info("stack.destroyed" if existed else "stack.absent", stack=stack_name(names))
        return existed

    async def outputs(self, names: TenantNames) -> dict[str, Any] | None:
        """The deployed stack's plain outputs; None: no stack."""
        return await self._run("outputs", stack_name(names))

    async def names(self) -> list[str]:
        return await self._run("list", "*")

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
