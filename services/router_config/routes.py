"""A tenant's route as data: the host names that reach it and its upstream (a row of the
`routes` table). Locally the route resolver answers the edge's lookups from these rows
(lookup.py, resolver.py); on AWS the tenant's stack carries them (aws.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    tenant_id: str
    route_id: str
    hosts: tuple[str, ...]
    upstream: str  # locally `host:port` of the runtime; on AWS its Cloud Map service name
    bucket: str
