"""The `hostplane` command (DESIGN.md, "Command surface")."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from core.process import PortInUse, StartFailed
from core.settings import Emulator, get_settings

app = typer.Typer(help="hostplane: isolated tenants on shared infrastructure.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


# Command groups that only talk to the HTTP API and print: nothing in them logs, so they do
# without structlog (≈ 55 ms of a start that scripts and `--wait` users pay on every run).
API_ONLY = frozenset({"tenant", "app", "audit"})


@app.callback()
def _main(ctx: typer.Context,
          verbose: bool = typer.Option(False, "--verbose", "-v", help="log at debug level")) -> None:
    if ctx.invoked_subcommand in API_ONLY and not verbose:
        return
    from core.logging import configure_logging

    configure_logging(verbose=verbose, quiet=True)


class _Platform:
    """hostplane.local.platform, imported on first use: it pulls in every server driver
    (~0.3 s), which the tenant commands, run often and by scripts, never need."""

    def __getattr__(self, name: str):
        from hostplane.local import platform as module

        return getattr(module, name)


platform = _Platform()


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _ensure_localstack_venv() -> None:
    """LocalStack runs from its own Python 3.13 venv, made on first use by `make`."""
    settings = get_settings()
    if (settings.localstack_venv / "bin" / "python").exists():
        return
    if not Path("Makefile").exists():
        _fail(f"LocalStack's venv {settings.localstack_venv} is missing; run `make localstack-venv`")
    console.print("creating LocalStack's venv (first use)...")
    if subprocess.run(["make", "-s", "localstack-venv"]).returncode != 0:
        _fail("`make localstack-venv` failed; see its output above")


@app.command()
def up(emulator: Emulator = typer.Option(None, help="AWS emulator: moto (default) or localstack")) -> None:
    """Start the local platform (idempotent) and print its URLs."""
    settings = get_settings()
    emulator = emulator or settings.emulator
    if emulator == "localstack":
        _ensure_localstack_venv()
    try:
        report = platform.up(settings, emulator)
    except (PortInUse, StartFailed, platform.PlatformError) as exc:
        _fail(str(exc))
    for name in report.already_running:
        console.print(f"[green]running[/]  {name}")
    for name in report.started:
        console.print(f"[green]started[/]  {name}")
    _print_status(platform.status(settings))


def _print_status(st: dict) -> None:
    table = Table(title="hostplane (local)")
    for col in ("component", "url", "healthy"):
        table.add_column(col)
    for name, comp in st["components"].items():
        table.add_row(name, comp["url"], "[green]yes[/]" if comp["healthy"] else "[red]no[/]")
    console.print(table)
    console.print(f"edge: {st['edge']}   api: {st['api'] or '-'}   emulator: {st['emulator']}")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Show what runs and whether it is healthy."""
    st = platform.status(get_settings())
    if as_json:
        typer.echo(json.dumps(st, indent=2))
        return
    if not st["components"]:
        console.print("the local platform is not running; start it with `hostplane up`")
        return
    _print_status(st)


@app.command()
def down(purge: bool = typer.Option(False, "--purge", help="also delete all local data")) -> None:
    """Stop everything `up` started; data is kept unless --purge."""
    try:
        stopped = platform.down(get_settings(), purge=purge)
    except platform.PlatformError as exc:
        _fail(str(exc))
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}" + ("; data purged" if purge else ""))


@app.command()
def demo(emulator: Emulator = typer.Option(None, help="AWS emulator: moto (default) or localstack")) -> None:
    """Start the platform, then create the example tenant, write rows, update its spec, all timed."""
    import time

    from hostplane.demo import DemoFailed, run_demo

    started = time.perf_counter()
    up(emulator)
    try:
        run_demo(get_settings(), console, up_s=time.perf_counter() - started)
    except DemoFailed as exc:
        _fail(str(exc))


def _mount_subcommands() -> None:
    from hostplane.cli_events import dlq_app, events_app
    from hostplane.cli_doctor import doctor_app
    from hostplane.cli_app import app_app
    from hostplane.cli_tenant import tenant_app

    app.add_typer(doctor_app, name="doctor", help="checks of the running platform: --orphans")
    from hostplane.cli_audit import audit
    from hostplane.cli_logs import logs

    app.command("audit")(audit)
    app.command("logs")(logs)

    app.add_typer(tenant_app, name="tenant", help="tenants: create, update, delete, list, show, env")
    app.add_typer(app_app, name="app", help="an app's source: export, edit, deploy")

    app.add_typer(events_app, name="events", help="the recorded event log and replays")
    app.add_typer(dlq_app, name="dlq", help="dead-letter queues: list and redrive")


_mount_subcommands()
