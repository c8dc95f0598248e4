"""What the tenant commands draw: a tenant's details table and the live progress line of a
request being waited on (`--wait`). Tenant-supplied text (an error's message) is shown
through `shown`: control characters escaped, brackets not read as markup."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from hostplane.cli_logs import printable

PIPELINES = {"create": ("provision", "route", "build", "migrate", "release"),
             "update": ("build", "migrate", "release"), "delete": ("deprovision",), "domain": ("route",),
             "rollback": ("build", "migrate", "release"), "idle": ("settings",)}
FAILED_STEP = {"provisioning": "provision", "building": "build", "migrating": "migrate",
               "releasing": "release", "deprovisioning": "deprovision", "routing": "route"}


def shown(text: str) -> str:
    """Text that may quote tenant output (an error's message), safe for a rich console: its
    control characters escaped (no terminal sequences), its brackets not read as markup."""
    return escape(printable(text))


def state_markup(t: dict[str, Any]) -> str:
    color = {"ready": "green", "failed": "red", "deleted": "dim"}.get(t["state"], "yellow")
    return f"[{color}]{t['state']}[/]"


def _idle(seconds: int | None) -> str:
    return "platform default" if seconds is None else "always on" if seconds == 0 else f"{seconds} s"


def details_table(t: dict[str, Any]) -> Table:
    table = Table(show_header=False, title=f"tenant {t['name']}")
    table.add_column(style="bold")
    table.add_column()
    waiting = f" (waiting for {t['waiting_for']})" if t.get("waiting_for") else ""
    rows = [("state", state_markup(t)), ("stage", f"{t['stage'] or '-'}{waiting}"), ("version", str(t["version"] or "-")),
            ("url", t["url"] or "-"), ("custom domain", t["custom_domain"] or "-"),
            ("edge", t.get("edge") or "installation default"), ("runtime", t.get("runtime") or "-"),
            ("idle after", _idle(t.get("idle_after_s")))]
    if failure := t.get("runtime_failure"):
        rows.append(("runtime failure", f"[red]{shown(failure['reason'] + ': ' + failure['detail'])}[/] "
                                        f"(at {failure['at']}; the host keeps trying)"))
    if t.get("domain_pending"):
        rows.append(("domain pending", f"{t['domain_pending']}: served once these DNS records are published"))
    rows += [("dns record", f"{r['name']} {r['type']} {r['value']}") for r in t.get("dns_records") or []]
    if t["error"]:
        e = t["error"]
        message = shown(f"{e['stage']} ({e['step']}): {e['message']}")
        rows.append(("error", f"[red]{message}[/]"))
    req = t["request"]
    rows += [("request", f"{req['kind']} #{req['generation']} by {req['requested_by']} at {req['requested_at']}"),
             ("correlation", req["correlation_id"]), ("created", t["created_at"] or "-"),
             ("updated", t["updated_at"] or "-")]
    for key, value in rows:
        table.add_row(key, Text.from_markup(value) if "[" in value and "/]" in value else Text(value))
    return table


def progress(tenant: dict[str, Any], request: dict[str, Any], elapsed: float) -> Group:
    steps = PIPELINES[request["kind"]]
    state, stage = tenant["state"], tenant["stage"]
    failed = FAILED_STEP.get((tenant.get("error") or {}).get("stage", ""), "") if state == "failed" else ""
    if failed and failed not in steps:  # a one-step request (an idle change) fails at that step
        failed = steps[-1]
    current = failed or stage
    done_all = state in ("ready", "deleted")
    line = Text()
    for step in steps:
        idx, cur = steps.index(step), steps.index(current) if current in steps else -1
        if step == failed:
            mark, style = "✗", "red"
        elif done_all or idx < cur:
            mark, style = "✓", "green"
        elif idx == cur:
            mark, style = "…", "yellow"
        else:
            mark, style = "·", "dim"
        line.append(f" {mark} {step} ", style=style)
    waiting = f", waiting for {tenant['waiting_for']}" if tenant.get("waiting_for") else ""
    head = Text(f"{tenant['name']}: {state}{waiting}  ({elapsed:.0f}s)")
    return Group(head, line)


class NoLive:
    def __enter__(self) -> NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None
