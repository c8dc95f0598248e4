"""Constrained field types shared by the event models.

Patterns are written for both pydantic's Rust regex engine and ECMA-262 (the
JSON Schema dialect), so no look-arounds: a consumer in another language gets
the same rules from the generated schema as a Python reader gets from the model.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

MAX_ERROR_CHARS = 2000
MAX_LOG_LINES = 50
MAX_LOG_LINE_CHARS = 500


def _clip(limit: int):
    """Truncate instead of refusing: a failure report must never fail to publish
    because the error it carries is long."""

    def clip(value: object) -> object:
        if isinstance(value, str) and len(value) > limit:
            return value[: limit - 1] + "…"
        return value

    return clip


def _tail_lines(value: object) -> object:
    """Keep the last lines, clipped: the end of a log is where the cause is."""
    if isinstance(value, (list, tuple)):
        clip = _clip(MAX_LOG_LINE_CHARS)
        return [clip(line) for line in list(value)[-MAX_LOG_LINES:]]
    return value


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256, 64 lowercase hex")]
ReleaseVersion = Annotated[int, Field(ge=1, description="Release number, 1 for the first build")]
NonNegativeInt = Annotated[int, Field(ge=0)]
# A tenant's scale-to-zero idle period in seconds (0: always on); at most a year.
IdleAfter = Annotated[int, Field(ge=0, le=31_536_000, strict=True)]  # strict: "60" and true are refused
Milliseconds = Annotated[int, Field(ge=0, description="Duration in milliseconds")]

HostName = Annotated[
    str,
    Field(
        max_length=253,
        pattern=rf"^{_LABEL}(?:\.{_LABEL})*$",
        description="Lowercase DNS host name",
    ),
]
CustomDomain = Annotated[
    str,
    Field(
        max_length=253,
        pattern=rf"^(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?$",
        description="Fully qualified lowercase domain the tenant owns",
    ),
]

SpecRef = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        pattern=r"^\S+$",
        description="Where the API stored the app spec (store key or URI); the spec itself never travels",
    ),
]
Actor = Annotated[str, Field(min_length=1, max_length=128, description="Who asked, for the audit log")]

ArtifactPath = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9-]{1,30}/releases/[1-9][0-9]*/[A-Za-z0-9_-][A-Za-z0-9._-]*$",
        description="Path relative to the artifact store root: <tenant>/releases/<version>/app.pyz",
    ),
]

PgIdentifier = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
CacheUser = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
CachePrefix = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}:$", description="Key prefix, ends with ':'")]
BucketName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
SecretName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9/_+=.@-]{1,512}$",
        description="Name of the secret in the secret store (a reference, never the value)",
    ),
]
SecretArn = Annotated[
    str,
    Field(
        pattern=r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$",
        description="ARN of the secret (a reference, never the value)",
    ),
]
ServiceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")]
RouteId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}$", description="Caddy route @id")]
Upstream = Annotated[
    str, Field(min_length=1, max_length=512, pattern=r"^\S+$", description="Caddy dial address")
]
Code = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_.-]{0,62}$",
        description="Machine-readable name, lowercase (e.g. 'database', 'health_check')",
    ),
]
ResourceRef = Annotated[
    str,
    Field(max_length=512, pattern=r"^[a-z][a-z0-9_-]{0,31}:\S+$", description="'<kind>:<name>'"),
]
MigrationName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]

ErrorMessage = Annotated[
    str,
    BeforeValidator(_clip(MAX_ERROR_CHARS)),
    Field(min_length=1, max_length=MAX_ERROR_CHARS, description="Human-readable error, no secrets"),
]
LogLines = Annotated[
    list[Annotated[str, Field(max_length=MAX_LOG_LINE_CHARS)]],
    BeforeValidator(_tail_lines),
    Field(max_length=MAX_LOG_LINES, description="Last lines of the app's output, oldest first"),
]
