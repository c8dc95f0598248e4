"""`hostplane up / status / down`: start, inspect and stop the local platform.

`up` is idempotent: what runs and is healthy is reported, what is missing is started,
then the messaging topology and the control-plane schema are converged. A failed `up`
stops what it started. `down` stops everything recorded in state.json, including
processes later stages registered there, and waits until their ports are closed.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit
import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from core import process
from hostplane.local.components import Component, LocalStack, Moto
from hostplane.local.datastores import Postgres, Valkey
from hostplane.local.edge import Caddy
from hostplane.local.services import ServiceProcess, service_components
from core.state import (
    ComponentState,
    Credentials,
    PlatformState,
    clear_state,
    connection_info,
    ensure_control_password,
    load_or_create_credentials,
    load_state,
    save_state,
)
from core.settings import Emulator, Settings

log = structlog.get_logger(__name__)
PORT_FIELDS = ("moto_port", "localstack_port", "postgres_port", "valkey_port", "edge_port", "resolver_port",
               "api_port")


class PlatformError(RuntimeError):
    """`up`/`down` cannot do what was asked; the message says why and what to do."""


@dataclass
class UpReport:
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)


def components(settings: Settings, creds: Credentials, emulator: Emulator) -> list[Component]:
    """The servers, then the control-plane services, in start order (stopped in reverse)."""
    emu: Component = (
        Moto("moto", settings.moto_port, settings, creds, "HOSTPLANE_MOTO_PORT")
        if emulator == "moto"
        else LocalStack("localstack", settings.localstack_port, settings, creds, "HOSTPLANE_LOCALSTACK_PORT")
    )
    caddy = Caddy("caddy", settings.edge_port, settings, creds, "HOSTPLANE_EDGE_PORT")  # admin: a unix socket
    caddy.origin = urlsplit(emu.url).netloc  # the buckets the edge serves /static/ from
    servers = [
        emu,
        Postgres("postgres", settings.postgres_port, settings, creds, "HOSTPLANE_POSTGRES_PORT"),
        Valkey("valkey", settings.valkey_port, settings, creds, "HOSTPLANE_VALKEY_PORT"),
        caddy,
    ]
    return servers + service_components(settings, creds, emulator)


@contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.home_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _effective(settings: Settings, state: PlatformState | None) -> Settings:
    """While a platform runs, its recorded ports win over the current configuration."""
    if state is None:
        return settings
    return settings.model_copy(update={k: v for k, v in state.ports.items() if k in PORT_FIELDS})


def compile_source() -> None:
    """Write the bytecode of the platform's own packages next to their source. Tenant runtimes
    run with PYTHONDONTWRITEBYTECODE and see the source read-only, so without it every wake
    compiled the reloader again (≈ 25 ms of its start) and so did every service and CLI run.
    Only what changed since is compiled (≈ 0.75 s the first time, 50 ms after); a pyc older
    than its source is never used, so an edit costs speed at worst, never correctness."""
    import compileall

    root = Path(__file__).resolve().parents[2]
    for package in sorted(root.iterdir()):
        if (package / "__init__.py").exists() and package.name != "tests":
            compileall.compile_dir(package, quiet=2)  # a read-only tree: nothing written, nothing said


def up(settings: Settings, emulator: Emulator | None = None) -> UpReport:
    emulator = emulator or settings.emulator
    with _locked(settings):
        state = load_state(settings.home_dir)
        if state and state.emulator != emulator and _running(state, state.emulator):
            raise PlatformError(
                f"the platform runs with the {state.emulator} emulator; run `hostplane down` first "
                f"to switch to {emulator}"
            )
        settings = _effective(settings, state if state and state.emulator == emulator else None)
        compile_source()
        creds = ensure_control_password(settings.home_dir)
        comps = components(settings, creds, emulator)
        state = _new_state(settings, emulator, comps, state)
        report = UpReport()
        try:
            servers = [c for c in comps if not isinstance(c, ServiceProcess)]
            for comp in servers:
                _ensure_running(comp, state, settings, report)
            # A cluster from an older `up` trusted local connections: it reloads its pg_hba.
            hba_secured = next(c for c in servers if isinstance(c, Postgres)).secure_hba()
            # Services consume queues and write the control database: converge both first.
            asyncio.run(_converge_control_plane(settings, hba_secured=hba_secured))
            for comp in comps[len(servers):]:
                _ensure_running(comp, state, settings, report)
        except BaseException:
            for name in reversed(report.started):
                comp = next(c for c in comps if c.name == name)
                process.stop(state.components.pop(name).pid, sig=comp.stop_signal)
            save_state(settings.home_dir, state) if state.components else clear_state(settings.home_dir)
            raise
        return report


def _ensure_running(comp: Component, state: PlatformState, settings: Settings, report: UpReport) -> None:
    recorded = state.components.get(comp.name)
    if recorded and process.alive(recorded.pid) and _healthy_within(comp, 10.0):
        report.already_running.append(comp.name)
        return
    if recorded and process.alive(recorded.pid):
        # Alive but sick for 10 s: replace it (an emulator's in-memory state goes with it).
        log.warning("component.replaced", component=comp.name)
        process.stop(recorded.pid, sig=comp.stop_signal)
    pid = comp.start()
    state.components[comp.name] = ComponentState(
        name=comp.name, pid=pid, url=comp.url, port=comp.port, log=str(comp.log_path)
    )
    save_state(settings.home_dir, state)
    report.started.append(comp.name)
    log.info("component.started", component=comp.name, url=comp.url, pid=pid)


def _healthy_within(comp: Component, seconds: float) -> bool:
    """One slow probe is not a sick server: retry before declaring it so."""
    try:
        process.wait_until(comp.healthy, timeout=seconds, what=comp.name, interval=0.5)
    except process.StartFailed:
        return False
    return True


def _new_state(settings: Settings, emulator: Emulator, comps: list[Component],
               previous: PlatformState | None) -> PlatformState:
    caddy = next(c for c in comps if isinstance(c, Caddy))
    kept = previous.components if previous and previous.emulator == emulator else {}
    return PlatformState(
        emulator=emulator,
        aws_endpoint=comps[0].url,
        host=settings.host,
        edge_url=caddy.edge_url,
        api_url=next((c.url for c in comps if c.name == "api"), None),
        postgres_port=settings.postgres_port,
        valkey_port=settings.valkey_port,
        caddy_admin_url=caddy.admin,
        ports={k: getattr(settings, k) for k in PORT_FIELDS},
        components=dict(kept),
    )


async def _converge_control_plane(settings: Settings, *, hba_secured: bool = False) -> None:
    """PostgreSQL's control role and database (as the superuser: the only use of its
    password), the messaging topology, then the event tables as the control role."""
    import asyncpg

    from events.store import ensure_schema
    from events.topology import topology
    from events.topology_apply import apply_topology
    from hostplane.local.datastores import SUPERUSER, bootstrap_control_role

    creds = ensure_control_password(settings.home_dir)
    recorded = load_state(settings.home_dir)
    host, port = (recorded.host, recorded.postgres_port) if recorded else (settings.host, settings.postgres_port)
    await bootstrap_control_role(f"postgresql://{SUPERUSER}:{creds.postgres_password}@{host}:{port}/postgres",
                                 creds.postgres_control_password, hba_secured=hba_secured)
    await apply_topology(topology(settings.name_prefix), settings)
    conn = await asyncpg.connect(connection_info(settings.home_dir).control_dsn, timeout=10)
    try:
        await ensure_schema(conn)
    finally:
        await conn.close()


def _running(state: PlatformState, name: str) -> bool:
    rec = state.components.get(name)
    return bool(rec and process.alive(rec.pid))


def status(settings: Settings) -> dict[str, Any]:
    state = load_state(settings.home_dir)
    if state is None:
        return {"api": None, "edge": None, "emulator": None, "running": False, "components": {}}
    eff = _effective(settings, state)
    by_name = {c.name: c for c in components(eff, load_or_create_credentials(eff.home_dir), state.emulator)}
    comps: dict[str, Any] = {}
    for name, rec in state.components.items():
        comp = by_name.get(name)
        healthy = process.alive(rec.pid) and (comp.healthy() if comp else True)
        comps[name] = {"url": rec.url, "healthy": healthy, "pid": rec.pid}
        if (metrics := eff.home_dir / "run" / f"{name}.ready.metrics").exists():  # written by services.runner
            comps[name]["metrics"] = metrics.read_text().strip()
    return {
        "api": state.api_url,
        "edge": state.edge_url,
        "emulator": state.emulator,
        "running": any(v["healthy"] for v in comps.values()),
        "components": comps,
        "runtime": _agent_state(eff).get("tenants", {}),
        # How tenants are isolated: {"requested", "mode": "bwrap"|"off", "reason"} (docs/security.md).
        "sandbox": _agent_state(eff).get("agent", {}).get("sandbox"),
    }


def _agent_state(settings: Settings) -> dict[str, Any]:
    """The runtime agent's view: per tenant its reloader pid, ports, live version, health,
    sandbox and uid; the agent's own sandbox mode."""
    import json

    path = settings.home_dir / "runtime" / "agent.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def down(settings: Settings, *, purge: bool = False) -> list[str]:
    """Stop everything `up` (and later stages) recorded; returns the names stopped."""
    stopped: list[str] = []
    with _locked(settings):
        state = load_state(settings.home_dir)
        if state is not None:
            eff = _effective(settings, state)
            comps = components(eff, load_or_create_credentials(eff.home_dir), state.emulator)
            signals = {c.name: c.stop_signal for c in comps}
            ours = [c.name for c in comps]
            order = [n for n in state.components if n not in ours] + [n for n in reversed(ours)]
            for name in order:
                rec = state.components.get(name)
                if rec is None:
                    continue
                if process.alive(rec.pid):
                    process.stop(rec.pid, sig=signals.get(name, 15))
                    stopped.append(name)
            busy = _ports_still_open(eff, state)
            if busy:
                raise PlatformError(f"after stopping, ports still answer: {busy}")
            clear_state(settings.home_dir)
    if purge:
        shutil.rmtree(settings.home_dir, ignore_errors=True)
    return stopped


def _ports_still_open(settings: Settings, state: PlatformState, wait_s: float = 10.0) -> list[int]:
    ports = [rec.port for rec in state.components.values()] + [settings.edge_port]
    try:
        process.wait_until(lambda: not any(process.port_open(settings.host, p) for p in ports),
                           timeout=wait_s, what="ports to close")
    except process.StartFailed:
        return [p for p in ports if process.port_open(settings.host, p)]
    return []
