"""What every tenant-resource adapter shares: the outcome of an ensure, the error a
retry cannot fix, and the scrubbing that keeps secrets out of error text.

Ensure semantics (STYLE.md "Converge, don't react"): look, create what is missing, fix
what differs, do nothing when all is right; the outcome says which happened so a
handler can log it and a test can assert that a second run changed nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from pydantic import SecretStr

from contracts.tenant import EdgeMode

T = TypeVar("T")


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"

    @classmethod
    def of(cls, created: bool, changed: bool) -> Outcome:
        return cls.CREATED if created else cls.UPDATED if changed else cls.UNCHANGED


@dataclass(frozen=True)
class Ensured(Generic[T]):
    """The outcome of one ensure, with what the caller needs next (a password, an ARN)."""

    outcome: Outcome
    value: T | None = None

    def __repr__(self) -> str:  # the value may be a password: never show it
        return f"Ensured({self.outcome.value})"

    __str__ = __repr__


@dataclass(frozen=True)
class TenantOptions:
    """The tenant's own choices that shape its infrastructure where the target offers a
    choice. Local drivers have none and ignore them; the AWS stacks read them.
    `edge=None`: the installation's default (HOSTPLANE_AWS_EDGE). `idle_after_s`: scale to
    zero after this many seconds without a request (None: the platform's default; 0: always on)."""

    edge: EdgeMode | None = None
    idle_after_s: int | None = None


NO_OPTIONS = TenantOptions()


class PermanentError(RuntimeError):
    """Redelivery will not help (refused by the server, invalid, owned by someone else).

    The message is shown to users and carried in Failed events: adapters build it from
    names and server error codes only, never from values they hold.
    """


def scrub(text: str, secrets: list[SecretStr | str | None] | tuple[SecretStr | str | None, ...]) -> str:
    """`text` with every known secret value replaced: a last line of defence for error
    messages that leave the process (events, logs)."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value and len(value) >= 6:
            text = text.replace(value, "<redacted>")
    return text


def ref(kind: str, name: str) -> str:
    """A ResourceRef (contracts.fields): '<kind>:<name>'."""
    return f"{kind}:{name}"
