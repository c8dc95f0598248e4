"""Each tenant-resource adapter against the real server it talks to (both emulators):
the isolation promises of DESIGN.md, ensure = no-op when right, drift repaired.

The `res`, `tenant` and `other` fixtures are in tests/integration/shared/conftest.py.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest
import redis.asyncio as aredis
from pydantic import SecretStr
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError

from services.resources.base import Outcome
from services.resources.passwords import new_password
from services.resources.wiring import TenantResources

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def connect_db(res: TenantResources, role: str, password: SecretStr, database: str) -> asyncpg.Connection:
    at = res.endpoints
    return await asyncpg.connect(host=at.db_host, port=at.db_port, user=role, password=password.get_secret_value(),
                                 database=database, timeout=5)


def connect_cache(res: TenantResources, user: str, password: SecretStr) -> aredis.Redis:
    at = res.endpoints
    return aredis.Redis(host=at.cache_host, port=at.cache_port, username=user, password=password.get_secret_value(),
                        socket_timeout=5, retry=Retry(NoBackoff(), 0))  # a refusal is final: no retry delay


# --- PostgreSQL -----------------------------------------------------------------------


async def test_a_role_reaches_its_own_database_and_no_other(res, tenant, other):
    mine, theirs = res.names(tenant), res.names(other)
    ensured = await res.database.ensure(mine, None)
    await res.database.ensure(theirs, None)
    assert ensured.outcome is Outcome.CREATED
    conn = await connect_db(res, mine.db_role, ensured.value, mine.database)
    try:
        await conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text)")
        await conn.execute("INSERT INTO notes (body) VALUES ('hello')")
        assert await conn.fetchval("SELECT current_setting('statement_timeout')") == "30s"
    finally:
        await conn.close()
    for database in (theirs.database, "hostplane", "postgres", "template1"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connect_db(res, mine.db_role, ensured.value, database)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await connect_db(res, mine.db_role, new_password(), mine.database)
    role = await res.records.pool.fetchrow(
        "SELECT rolconnlimit, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles WHERE rolname = $1",
        mine.db_role)
    assert dict(role) == {"rolconnlimit": 20, "rolsuper": False, "rolcreatedb": False, "rolcreaterole": False,
                          "rolcanlogin": True}


async def test_database_ensure_is_a_no_op_when_right_and_repairs_drift(res, tenant):
    names = res.names(tenant)
    password = (await res.database.ensure(names, None)).value
    again = await res.database.ensure(names, password)
    assert again.outcome is Outcome.UNCHANGED and again.value is password
    admin = res.records.pool
    await admin.execute(f"GRANT CONNECT ON DATABASE {names.database} TO PUBLIC")
    await admin.execute(f"ALTER ROLE {names.db_role} CONNECTION LIMIT 500 CREATEDB PASSWORD 'someone-else'")
    await admin.execute(f"ALTER ROLE {names.db_role} RESET statement_timeout")
    repaired = await res.database.ensure(names, password)
    assert repaired.outcome is Outcome.UPDATED
    conn = await connect_db(res, names.db_role, password, names.database)  # the stored password works again
    await conn.close()
    grantees = await admin.fetch(
        "SELECT DISTINCT a.grantee FROM pg_database d, aclexplode(d.datacl) a "
        "WHERE d.datname = $1 AND a.privilege_type = 'CONNECT'", names.database)
    owner = await admin.fetchval("SELECT oid FROM pg_roles WHERE rolname = $1", names.db_role)
    assert [r["grantee"] for r in grantees] == [owner], "CONNECT for the tenant's role only, PUBLIC revoked"
    assert (await admin.fetchrow("SELECT rolconnlimit, rolcreatedb FROM pg_roles WHERE rolname = $1",
                                 names.db_role)) == (20, False)
    assert (await res.database.ensure(names, password)).outcome is Outcome.UNCHANGED


# --- Valkey ---------------------------------------------------------------------------


async def test_a_cache_user_reaches_its_prefix_and_nothing_else(res, tenant, other):
    mine, theirs = res.names(tenant), res.names(other)
    password = (await res.cache.ensure(mine, None)).value
    await res.cache.client.set(f"{theirs.cache_prefix}secret", "theirs")
    client = connect_cache(res, mine.cache_user, password)
    try:
        await client.set(f"{mine.cache_prefix}greeting", "hi")
        assert await client.get(f"{mine.cache_prefix}greeting") == b"hi"
        assert await client.publish(f"{mine.cache_prefix}news", "x") == 0
        for denied in (("GET", f"{theirs.cache_prefix}secret"), ("SET", f"{theirs.cache_prefix}x", "1"),
                       ("SET", "unprefixed", "1"), ("KEYS", "*"), ("FLUSHALL",), ("FLUSHDB",),
                       ("CONFIG", "GET", "*"), ("SCAN", "0"), ("RANDOMKEY",),
                       ("SELECT", "1"), ("PUBLISH", f"{theirs.cache_prefix}news", "x"),
                       ("EVAL", "return 1", "0"), ("ACL", "LIST"), ("SHUTDOWN",), ("MONITOR",),
                       # the server's own limits and other tenants' connections and commands
                       ("CONFIG", "SET", "maxmemory", "0"), ("CONFIG", "SET", "maxmemory-policy", "noeviction"),
                       ("ACL", "SETUSER", mine.cache_user, "~*", "+@all"), ("ACL", "GETUSER", theirs.cache_user),
                       ("ACL", "SAVE"), ("SLOWLOG", "GET"), ("CLIENT", "LIST"), ("CLIENT", "KILL", "TYPE", "normal"),
                       ("CLIENT", "NO-EVICT", "on"), ("BGSAVE",), ("BGREWRITEAOF",), ("REPLICAOF", "NO", "ONE"),
                       ("FUNCTION", "FLUSH"), ("LATENCY", "RESET"), ("INFO",)):
            with pytest.raises(NoPermissionError):
                await client.execute_command(*denied)
    finally:
        await client.aclose()
    # DEBUG is refused by this server's config before any ACL check: ask the ACL itself.
    for command in (("DEBUG", "SLEEP", "0"), ("MODULE", "LIST"), ("SWAPDB", "0", "1"), ("SAVE",)):
        verdict = await res.cache.client.execute_command("ACL", "DRYRUN", mine.cache_user, *command)
        assert verdict != b"OK" and b"no permissions" in verdict.lower(), (command, verdict)
    assert await res.cache.client.get(f"{theirs.cache_prefix}secret") == b"theirs"
    await res.cache.client.delete(f"{theirs.cache_prefix}secret")


async def test_cache_user_survives_a_reload_and_drift_is_repaired(res, tenant):
    names = res.names(tenant)
    password = (await res.cache.ensure(names, None)).value
    assert (await res.cache.ensure(names, password)).outcome is Outcome.UNCHANGED
    await res.cache.client.execute_command("ACL", "LOAD")  # back to the aclfile: the user was saved
    assert names.cache_user in await res.cache.tenant_like_users()
    await res.cache.client.execute_command("ACL", "SETUSER", names.cache_user, "~*", "+@all")  # loosened
    assert (await res.cache.ensure(names, password)).outcome is Outcome.UPDATED
    client = connect_cache(res, names.cache_user, password)
    try:
        with pytest.raises(NoPermissionError):
            await client.execute_command("FLUSHALL")
        with pytest.raises(NoPermissionError):
            await client.get("elsewhere:key")
    finally:
        await client.aclose()
    with pytest.raises(AuthenticationError):  # a wrong password is refused
        bad = connect_cache(res, names.cache_user, new_password())
        try:
            await bad.ping()
        finally:
            await bad.aclose()


# --- Secrets Manager and S3 (per emulator) ---------------------------------------------


async def test_bucket_is_private_and_public_acl_is_reverted(res, tenant, running_platform):
    names = res.names(tenant)
    assert (await res.bucket.ensure(names)).outcome is Outcome.CREATED
    assert (await res.bucket.ensure(names)).outcome is Outcome.UNCHANGED
    assert await res.bucket.is_private(names)
    s3 = res.bucket.client
    await s3.put_object(Bucket=names.bucket, Key="static/app.css", Body=b"body{}")
    if running_platform.emulator == "moto":  # LocalStack's community edition does not enforce access
        anonymous = httpx.get(f"{running_platform.conn.aws_endpoint}/{names.bucket}/static/app.css", timeout=5)
        assert anonymous.status_code == 403
    await s3.put_bucket_acl(Bucket=names.bucket, ACL="public-read")
    assert not await res.bucket.is_private(names)
    assert (await res.bucket.ensure(names)).outcome is Outcome.UPDATED
    assert await res.bucket.is_private(names)


async def test_bucket_removal_takes_every_version_with_it(res, tenant):
    names = res.names(tenant)
    await res.bucket.ensure(names)
    s3 = res.bucket.client
    await s3.put_bucket_versioning(Bucket=names.bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"v1", b"v2"):
        await s3.put_object(Bucket=names.bucket, Key="index.html", Body=body)
    await s3.delete_object(Bucket=names.bucket, Key="index.html")  # a delete marker too
    await s3.put_object(Bucket=names.bucket, Key="other.txt", Body=b"x")
    assert await res.bucket.remove(names) == [f"bucket:{names.bucket}"]
    assert await res.bucket.existing(names) == [] and await res.bucket.remove(names) == []


async def test_secret_round_trips_and_is_never_rewritten_when_equal(res, tenant):
    from services.resources.secret import TenantCredentials

    names = res.names(tenant)
    creds = TenantCredentials.build(names, res.endpoints, new_password(), new_password())
    made = await res.secrets.ensure(names, creds)
    assert made.outcome is Outcome.CREATED and made.value.startswith("arn:aws:secretsmanager:")
    assert await res.secrets.read(names) == creds
    versions = (await res.secrets.client.describe_secret(SecretId=names.secret))["VersionIdsToStages"]
    assert (await res.secrets.ensure(names, creds)).outcome is Outcome.UNCHANGED
    assert (await res.secrets.client.describe_secret(SecretId=names.secret))["VersionIdsToStages"] == versions
    assert await res.secrets.remove(names) == [f"secret:{names.secret}"]
    assert await res.secrets.read(names) is None and await res.secrets.remove(names) == []
    assert names.secret not in await res.secrets.names_under("hostplane/")
