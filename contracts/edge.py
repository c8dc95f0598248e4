"""The names the edge looks up, a contract between three parties: router-config's route
resolver answers them (services.router_config.resolver), Caddy's fixed configuration asks
them at request time (services.router_config.lookup), and the deprovisioner asks the
tenant's own name before it removes anything (services.resources.edge). All live in a
zone only the resolver answers; docs/architecture.md ("The edge") lists the records.
"""

from __future__ import annotations

ZONE = "hostplane.internal"
# How long Caddy keeps an answer: a removed route stops at most this long after the
# resolver drops it (an unanswered name is asked again on every request).
REFRESH_S = 0.5
EMULATOR_TARGET = f"emulator.{ZONE}"


def app_name(host: str) -> str:
    """SRV: the tenant's runtime port, target runtime_target(tenant)."""
    return f"{host}.host.{ZONE}"


def static_name(host: str) -> str:
    """SRV: the emulator serving the tenant's bucket (its own host only)."""
    return f"{host}.static.{ZONE}"


def hop_name(host: str) -> str:
    """SRV: back to the edge itself, for a custom domain's /static/."""
    return f"{host}.hop.{ZONE}"


def runtime_target(tenant: str) -> str:
    return f"{tenant}.runtime.{ZONE}"


def edge_target(tenant: str) -> str:
    return f"{tenant}.edge.{ZONE}"
