"""`hostplane doctor --orphans [--json]` (mount `doctor_app` as `doctor`).

Prints nothing (or `[]` with --json) and exits 0 when every tenant-looking resource
belongs to a live tenant; otherwise one line (or object) per orphan and exit 1.
Exit 2: the platform is not reachable. Errors name the server, never a DSN.
"""

from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console

from core.settings import get_settings

doctor_app = typer.Typer(help="checks of the running platform", invoke_without_command=True)
err = Console(stderr=True)

FOUND, NOT_RUNNING = 1, 2


@doctor_app.callback(invoke_without_command=True)
def doctor(
    orphans: bool = typer.Option(False, "--orphans", help="list resources that belong to no live tenant"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Check the running platform."""
    if not orphans:
        err.print("choose a check: --orphans")
        raise typer.Exit(NOT_RUNNING)
    from hostplane.doctor import scan

    try:
        found = asyncio.run(scan(get_settings()))
    except RuntimeError as exc:  # connection_info: the platform is not running
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(NOT_RUNNING) from None
    except Exception as exc:  # drivers' messages may echo connection parameters: the class only
        err.print(f"[bold red]error:[/] cannot reach the platform ({type(exc).__name__}); see `hostplane status`")
        raise typer.Exit(NOT_RUNNING) from None
    if as_json:
        typer.echo(json.dumps([o.to_json() for o in found], indent=2))
    else:
        for orphan in found:
            typer.echo(orphan.line())
    if found:
        raise typer.Exit(FOUND)


def main() -> None:  # `python -m hostplane.cli_doctor`, until hostplane.cli mounts it
    from core.logging import configure_logging

    configure_logging(quiet=True)
    doctor_app(prog_name="hostplane doctor")


if __name__ == "__main__":
    main()
