"""`hostplane audit [--tenant NAME] [--json]`: who changed what, when, from where, with what outcome.

Reads GET /v1/audit through the same client as `hostplane tenant` (address and token from
the running platform or HOSTPLANE_API_URL / HOSTPLANE_API_TOKEN). The trail is append-only.
"""

from __future__ import annotations

import json
from typing import Optional
from urllib.parse import urlencode

import typer
from rich.console import Console
from rich.table import Table

from hostplane.cli_tenant import api_client

console = Console()
OUTCOME_STYLE = {"accepted": "green", "unchanged": "cyan", "refused": "yellow", "failed": "red"}


def audit(tenant: Optional[str] = typer.Option(None, "--tenant", help="only this tenant's records"),
          limit: int = typer.Option(200, "--limit", min=1, max=1000, help="newest N records"),
          as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List audit records, newest first."""
    query = urlencode({"limit": limit} | ({"tenant": tenant} if tenant else {}))
    records = api_client().call("GET", f"/v1/audit?{query}")["records"]
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    if not records:
        console.print("no audit records" + (f" for tenant {tenant}" if tenant else ""))
        return
    table = Table(title="audit trail" + (f" of {tenant}" if tenant else ""))
    for col in ("when (UTC)", "who", "via", "from", "action", "tenant", "asked", "outcome"):
        table.add_column(col, overflow="fold")
    for r in records:
        asked = {k: v for k, v in r["request"].items() if k != "app"}
        if "app" in r["request"]:
            asked["app"] = "sha256:" + r["request"]["app"]["sha256"][:12]
        outcome = f"[{OUTCOME_STYLE.get(r['outcome'], 'white')}]{r['outcome']}[/] {r['status']}"
        if r.get("error"):
            outcome += f"\n{r['error']}"
        table.add_row(r["at"][:19].replace("T", " "), f"{r['actor'] or '-'}\n{r['identity']}", r["channel"],
                      r["remote"] or "-", r["action"], r["tenant_id"] or "-",
                      json.dumps(asked, separators=(",", ":")), outcome)
    console.print(table)
