"""The local AWS emulator enforces IAM (our moto launcher, hostplane.local.emulator).

A real emulator process as `hostplane up` starts it (the Moto component, in a home of its
own): the platform's key from credentials.json, used through the one client factory, can
do what the control plane does; dummy "test"/"test" keys, unsigned requests and the right
key id with a wrong secret cannot list or read secrets, write into a tenant's bucket,
PutEvents or send/receive on a queue, and what they tried left no trace. /moto-api/ and
foreign-origin CORS are refused; the edge's static read reaches objects and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from core.aws import aws_client
from core import process
from hostplane.local.components import Moto
from hostplane.local.ephemeral import platform_settings
from core.state import load_or_create_credentials
from core.settings import Settings
from services.router_config.lookup import EMULATOR_AUTH

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = "hostplane/tenants/victim"
BUCKET = "hostplane-victim-static"
OTHER_BUCKET = "hostplane-private-data"
BUS = "hostplane-bus"
QUEUE = "hostplane-deprovisioner"
SECRET_VALUE = '{"password": "victim-only"}'
AUTH_ERRORS = {"InvalidAccessKeyId", "InvalidClientTokenId", "MissingAuthenticationToken",
               "MissingAuthenticationTokenException", "SignatureDoesNotMatch"}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Moto]]:
    settings = platform_settings(tmp_path_factory.mktemp("emulator-iam") / "home", "moto")
    moto = Moto("moto", settings.moto_port, settings, load_or_create_credentials(settings.home_dir))
    pid = moto.start()
    settings = settings.model_copy(update={"aws_endpoint_url": moto.url})
    try:
        yield settings, moto
    finally:
        process.stop(pid)


@pytest.fixture(scope="module")
async def seeded(emulator: tuple[Settings, Moto]) -> dict[str, str]:
    """What the control plane would have made, made with the platform's key (the factory)."""
    settings, _ = emulator
    async with aws_client("secretsmanager", settings) as sm:
        await sm.create_secret(Name=SECRET, SecretString=SECRET_VALUE)
    async with aws_client("s3", settings) as s3:
        for bucket in (BUCKET, OTHER_BUCKET):
            await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=BUCKET, Key="app.css", Body=b"body{}")
        await s3.put_object(Bucket=OTHER_BUCKET, Key="app.css", Body=b"not static")
    async with aws_client("events", settings) as events:
        await events.create_event_bus(Name=BUS)
    async with aws_client("sqs", settings) as sqs:
        url = (await sqs.create_queue(QueueName=QUEUE))["QueueUrl"]
    return {"queue_url": url}


def _client(settings: Settings, service: str, key: str | None, secret: str | None,
            headers: dict[str, str] | None = None) -> Any:
    """A client of someone without the platform's key (botocore directly, not the factory)."""
    config = Config(retries={"max_attempts": 1}, signature_version=UNSIGNED if key is None else None)
    kwargs: dict[str, Any] = {"region_name": settings.region, "endpoint_url": settings.aws_endpoint_url,
                              "config": config}
    if key is not None:
        kwargs |= {"aws_access_key_id": key, "aws_secret_access_key": secret}
    client = botocore.session.get_session().create_client(service, **kwargs)
    for name, value in (headers or {}).items():
        client.meta.events.register("before-sign.*.*", lambda request, n=name, v=value, **_: request.headers
                                    .__setitem__(n, v))
    return client


def _attempts(settings: Settings, queue_url: str, key: str | None, secret: str | None,
              headers: dict[str, str] | None = None) -> dict[str, Callable[[], Any]]:
    def c(service: str) -> Any:
        return _client(settings, service, key, secret, headers)

    entry = {"EventBusName": BUS, "Source": "hostplane.api", "DetailType": "TenantDeletionRequested",
             "Detail": json.dumps({"tenant_id": "victim"})}
    return {
        "list secrets": lambda: c("secretsmanager").list_secrets(),
        "read the tenant's secret": lambda: c("secretsmanager").get_secret_value(SecretId=SECRET),
        "overwrite the tenant's secret": lambda: c("secretsmanager").put_secret_value(
            SecretId=SECRET, SecretString="{}"),
        "put an object into the tenant's bucket": lambda: c("s3").put_object(
            Bucket=BUCKET, Key="static/pwned.txt", Body=b"pwned"),
        "list the tenant's bucket": lambda: c("s3").list_objects_v2(Bucket=BUCKET),
        "read an object": lambda: c("s3").get_object(Bucket=BUCKET, Key="app.css"),
        "PutEvents": lambda: c("events").put_events(Entries=[entry]),
        "send to a queue": lambda: c("sqs").send_message(QueueUrl=queue_url, MessageBody="forged"),
        "receive from a queue": lambda: c("sqs").receive_message(QueueUrl=queue_url),
        "create an IAM user": lambda: c("iam").create_user(UserName="attacker"),
    }


def _refusals(attempts: dict[str, Callable[[], Any]]) -> dict[str, str]:
    """Label -> the error code each attempt got; an attempt that succeeded maps to 'SUCCEEDED'."""
    out = {}
    for label, call in attempts.items():
        try:
            answer = call()
            out[label] = "refused (entry failed)" if answer.get("FailedEntryCount") else "SUCCEEDED"
        except ClientError as exc:
            out[label] = exc.response["Error"].get("Code") or "no code"
    return out


async def _untouched(settings: Settings, queue_url: str) -> None:
    async with aws_client("secretsmanager", settings) as sm:
        assert (await sm.get_secret_value(SecretId=SECRET))["SecretString"] == SECRET_VALUE
    async with aws_client("s3", settings) as s3:
        keys = [o["Key"] for o in (await s3.list_objects_v2(Bucket=BUCKET)).get("Contents", [])]
        assert keys == ["app.css"]
    async with aws_client("sqs", settings) as sqs:
        attrs = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
        assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"
    async with aws_client("iam", settings) as iam:
        assert "attacker" not in [u["UserName"] for u in (await iam.list_users())["Users"]]


@pytest.mark.parametrize("who", ["dummy test/test keys", "unsigned", "platform key id, wrong secret",
                                 "dummy keys naming another account"])
async def test_without_the_platform_key_nothing_is_allowed(emulator, seeded, who):
    settings, _ = emulator
    platform_key = load_or_create_credentials(settings.home_dir).emulator_key_id
    key, secret, headers = {
        "dummy test/test keys": ("test", "test", None),
        "unsigned": (None, None, None),
        "platform key id, wrong secret": (platform_key, "not-the-secret", None),
        "dummy keys naming another account": ("test", "test", {"x-moto-account-id": "111111111111"}),
    }[who]
    got = _refusals(_attempts(settings, seeded["queue_url"], key, secret, headers))
    # Refused by the authentication check, not by anything else, with AWS's error codes.
    assert set(got.values()) <= AUTH_ERRORS, got
    await _untouched(settings, seeded["queue_url"])


async def test_the_platform_key_through_the_factory_does_what_the_control_plane_does(emulator, seeded):
    settings, _ = emulator
    async with aws_client("secretsmanager", settings) as sm:
        assert SECRET in [s["Name"] for s in (await sm.list_secrets())["SecretList"]]
    async with aws_client("events", settings) as events:
        put = await events.put_events(Entries=[{"EventBusName": BUS, "Source": "hostplane.api",
                                                "DetailType": "Ping", "Detail": "{}"}])
        assert put["FailedEntryCount"] == 0
    async with aws_client("sqs", settings) as sqs:
        await sqs.send_message(QueueUrl=seeded["queue_url"], MessageBody="hello")
        got = await sqs.receive_message(QueueUrl=seeded["queue_url"], WaitTimeSeconds=1)
        assert [m["Body"] for m in got["Messages"]] == ["hello"]
        await sqs.delete_message(QueueUrl=seeded["queue_url"], ReceiptHandle=got["Messages"][0]["ReceiptHandle"])
    async with aws_client("sts", settings) as sts:
        assert (await sts.get_caller_identity())["Arn"].endswith(":user/hostplane-platform")


async def test_moto_api_and_foreign_cors_are_refused(emulator, seeded):
    settings, moto = emulator
    for method, path in (("GET", "/moto-api/data.json"), ("POST", "/moto-api/reset"),
                         ("POST", "/moto-api/reset-auth"), ("GET", "/moto-api/"),
                         ("GET", "/latest/meta-data/iam/security-credentials/")):
        resp = httpx.request(method, moto.url + path, content=b"1000", timeout=5)
        assert resp.status_code == 403, (method, path, resp.status_code)
    preflight = httpx.options(f"{moto.url}/{BUCKET}/app.css", timeout=5, headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "PUT"})
    assert preflight.status_code == 403
    assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]
    # A signed request that carries an Origin gets its answer without any CORS grant.
    client = _client(settings, "secretsmanager", *_platform_key(settings))
    client.meta.events.register("before-sign.*.*", lambda request, **_: request.headers.__setitem__(
        "Origin", "http://evil.example"))
    answer = client.list_secrets()
    assert not [h for h in answer["ResponseMetadata"]["HTTPHeaders"] if h.startswith("access-control-")]
    await _untouched(settings, seeded["queue_url"])  # the reset attempts reset nothing


def _platform_key(settings: Settings) -> tuple[str, str]:
    creds = load_or_create_credentials(settings.home_dir)
    return creds.emulator_key_id, creds.emulator_secret


async def test_the_edge_reads_static_objects_and_nothing_else(emulator, seeded):
    settings, moto = emulator
    edge = {"Authorization": EMULATOR_AUTH}
    got = httpx.get(f"{moto.url}/{BUCKET}/app.css", headers=edge, timeout=5)
    assert (got.status_code, got.content) == (200, b"body{}")
    assert httpx.head(f"{moto.url}/{BUCKET}/app.css", headers=edge, timeout=5).status_code == 200
    refused = {
        "list": httpx.get(f"{moto.url}/{BUCKET}/", headers=edge, timeout=5),
        "list v2": httpx.get(f"{moto.url}/{BUCKET}?list-type=2", headers=edge, timeout=5),
        "acl": httpx.get(f"{moto.url}/{BUCKET}/app.css?acl", headers=edge, timeout=5),
        "put": httpx.put(f"{moto.url}/{BUCKET}/static/pwned.txt", headers=edge, content=b"x", timeout=5),
        "delete": httpx.delete(f"{moto.url}/{BUCKET}/app.css", headers=edge, timeout=5),
        "not a static bucket": httpx.get(f"{moto.url}/{OTHER_BUCKET}/app.css", headers=edge, timeout=5),
        "anonymous": httpx.get(f"{moto.url}/{BUCKET}/app.css", timeout=5),
        "a secret": httpx.post(moto.url + "/", headers=edge | {"X-Amz-Target": "secretsmanager.ListSecrets",
                                                               "Content-Type": "application/x-amz-json-1.1"},
                               content=b"{}", timeout=5),
    }
    assert {k: r.status_code for k, r in refused.items() if r.status_code < 400} == {}
    await _untouched(settings, seeded["queue_url"])


async def test_a_restarted_emulator_takes_the_same_platform_key(tmp_path):
    """moto keeps its state in memory; a replaced emulator re-installs the key from
    credentials.json, so services that already hold it keep working."""
    settings = platform_settings(tmp_path / "home", "moto")
    moto = Moto("moto", settings.moto_port, settings, load_or_create_credentials(settings.home_dir))
    settings = settings.model_copy(update={"aws_endpoint_url": moto.url})
    for _ in range(2):
        pid = moto.start()
        try:
            async with aws_client("sts", settings) as sts:
                assert (await sts.get_caller_identity())["Arn"].endswith(":user/hostplane-platform")
        finally:
            process.stop(pid)
