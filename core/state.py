"""What `up` started (state.json) and the generated local credentials (credentials.json, 0600).

Both live in the git-ignored home folder. Credentials are never printed or logged;
`ConnectionInfo` renders DSNs for code that connects, not for output.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

STATE_FILE = "state.json"
CREDENTIALS_FILE = "credentials.json"
ADMIN_SOCKET = "run/caddy-admin.sock"  # Caddy's admin API (hostplane.local.edge), under <home>
CONTROL_ROLE = "hostplane_control"  # every control-plane connection; not a superuser


class ComponentState(BaseModel):
    name: str
    pid: int | None = None
    url: str
    port: int
    log: str | None = None


class PlatformState(BaseModel):
    emulator: str
    aws_endpoint: str
    host: str
    edge_url: str
    api_url: str | None = None
    postgres_port: int
    valkey_port: int
    # Caddy's admin API: `unix:///<home>/run/caddy-admin.sock` (hostplane up), or an http URL
    # (the docker-compose stack's Caddy container). Talk to it through hostplane.local.edge.admin_client.
    caddy_admin_url: str
    ports: dict[str, int] = Field(default_factory=dict)
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    components: dict[str, ComponentState] = Field(default_factory=dict)

    @property
    def caddy_admin_socket(self) -> str | None:
        """The admin socket's path (None when the admin API is an http URL)."""
        prefix = "unix://"
        return self.caddy_admin_url[len(prefix):] if self.caddy_admin_url.startswith(prefix) else None


def new_access_key_id() -> str:
    """An access key id shaped like AWS's (the moto emulator's platform and edge users)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))


def new_secret_access_key() -> str:
    return secrets.token_urlsafe(30)[:40]


class Credentials(BaseModel):
    postgres_password: str  # the cluster's superuser: `hostplane up` bootstraps with it, nothing else
    valkey_password: str
    api_token: str
    # CONTROL_ROLE's password (ensure_control_password fills it in a file older than the role).
    postgres_control_password: str = ""
    # The platform's access key on the moto emulator (hostplane.local.emulator installs it;
    # core.aws.aws_client signs with it). Empty in a file older than the key.
    emulator_key_id: str = ""
    emulator_secret: str = ""

    @classmethod
    def generate(cls) -> Credentials:
        return cls(
            postgres_password=secrets.token_urlsafe(24),
            valkey_password=secrets.token_urlsafe(24),
            api_token=secrets.token_urlsafe(32),
            emulator_key_id=new_access_key_id(),
            emulator_secret=new_secret_access_key(),
        )

    def __repr__(self) -> str:  # never show secrets, even in tracebacks
        return "Credentials(<redacted>)"

    __str__ = __repr__


def write_private(path: Path, data: str | bytes) -> None:
    """Write atomically with owner-only permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
    os.replace(tmp, path)


def load_state(home: Path) -> PlatformState | None:
    path = home / STATE_FILE
    if not path.exists():
        return None
    return PlatformState.model_validate_json(path.read_text())


def save_state(home: Path, state: PlatformState) -> None:
    write_private(home / STATE_FILE, state.model_dump_json(indent=2))


def clear_state(home: Path) -> None:
    (home / STATE_FILE).unlink(missing_ok=True)


def load_or_create_credentials(home: Path) -> Credentials:
    path = home / CREDENTIALS_FILE
    if path.exists():
        creds = Credentials.model_validate(json.loads(path.read_text()))
        if creds.emulator_key_id:
            return creds
        fresh = Credentials.generate()  # a home from before the emulator enforced IAM
        creds = creds.model_copy(update={"emulator_key_id": fresh.emulator_key_id,
                                         "emulator_secret": fresh.emulator_secret})
    else:
        creds = Credentials.generate()
    write_private(path, creds.model_dump_json())
    return creds


def ensure_control_password(home: Path) -> Credentials:
    """The credentials with CONTROL_ROLE's password, generated and saved (0600) if missing."""
    creds = load_or_create_credentials(home)
    if creds.postgres_control_password:
        return creds
    creds = creds.model_copy(update={"postgres_control_password": secrets.token_urlsafe(24)})
    write_private(home / CREDENTIALS_FILE, creds.model_dump_json())
    return creds


class ConnectionInfo(BaseModel):
    """How code reaches the running local platform (holds secrets: do not print)."""

    aws_endpoint: str
    control_dsn: str
    valkey_url: str
    caddy_admin_url: str
    edge_url: str

    def __repr__(self) -> str:
        return f"ConnectionInfo(aws_endpoint={self.aws_endpoint!r}, <credentials redacted>)"

    __str__ = __repr__


CONTROL_DATABASE = "hostplane"


def connection_info(home: Path) -> ConnectionInfo:
    state = load_state(home)
    if state is None:
        raise RuntimeError(f"the local platform is not running (no {home / STATE_FILE}); run `hostplane up`")
    creds = load_or_create_credentials(home)
    if not creds.postgres_control_password:
        raise RuntimeError(f"{home} was set up before the platform had its own PostgreSQL role; "
                           "run `hostplane up` once to create it")
    return ConnectionInfo(
        aws_endpoint=state.aws_endpoint,
        control_dsn=(
            f"postgresql://{CONTROL_ROLE}:{creds.postgres_control_password}@{state.host}:{state.postgres_port}/"
            f"{CONTROL_DATABASE}"
        ),
        valkey_url=f"redis://default:{creds.valkey_password}@{state.host}:{state.valkey_port}/0",
        caddy_admin_url=state.caddy_admin_url,
        edge_url=state.edge_url,
    )
