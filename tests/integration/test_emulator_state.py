"""The local emulator keeps its state across a stop and a start (hostplane.local.emulator_state):
a real emulator process as `hostplane up` starts it, stopped as `hostplane down` stops it
(SIGTERM), started again on the same home. What the control plane made with the platform's
key is all there: a tenant's secret, its static objects (one larger than moto keeps in
memory), a queued message, the bus and its rule. A state file it cannot load stops the
start with a message that says what to do, and is left as it was."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator

import pytest

from core import process
from core.aws import aws_client
from core.settings import Settings
from core.state import load_or_create_credentials
from hostplane.local.components import Moto
from hostplane.local.emulator_state import STATE_FILE
from hostplane.local.ephemeral import platform_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET, SECRET_VALUE = "hostplane/tenants/kept", '{"password": "kept-across-restarts"}'
BUCKET, BUS, QUEUE = "hostplane-kept-static", "hostplane-bus", "hostplane-builder"
BIG = bytes(range(256)) * (6 * 4096)  # 6 MiB: past moto's in-memory buffer, kept in a temporary file


@pytest.fixture
def home(tmp_path) -> Iterator[tuple[Settings, Moto]]:
    settings = platform_settings(tmp_path / "home", "moto")
    moto = Moto("moto", settings.moto_port, settings, load_or_create_credentials(settings.home_dir))
    yield settings.model_copy(update={"aws_endpoint_url": moto.url}), moto


async def test_a_stopped_emulator_starts_again_with_what_it_held(home):
    settings, moto = home
    pid = moto.start()
    try:
        async with aws_client("secretsmanager", settings) as sm:
            await sm.create_secret(Name=SECRET, SecretString=SECRET_VALUE)
        async with aws_client("s3", settings) as s3:
            await s3.create_bucket(Bucket=BUCKET)
            await s3.put_object(Bucket=BUCKET, Key="style.css", Body=b"body{color:teal}")
            await s3.put_object(Bucket=BUCKET, Key="big.bin", Body=BIG)
        async with aws_client("events", settings) as events:
            await events.create_event_bus(Name=BUS)
            await events.put_rule(Name="to-builder", EventBusName=BUS, EventPattern=json.dumps({"source": ["api"]}))
        async with aws_client("sqs", settings) as sqs:
            url = (await sqs.create_queue(QueueName=QUEUE))["QueueUrl"]
            await sqs.send_message(QueueUrl=url, MessageBody='{"event_type": "TenantChanged"}')
    finally:
        process.stop(pid)  # SIGTERM, as `hostplane down`
    saved = moto.folder / STATE_FILE
    assert saved.exists() and stat.S_IMODE(saved.stat().st_mode) == 0o600, "owner-only: it holds tenants' secrets"
    assert SECRET_VALUE.encode() not in (moto.log_path.read_bytes()), "the log names the file, not what is in it"

    pid = moto.start()
    try:
        async with aws_client("secretsmanager", settings) as sm:
            assert (await sm.get_secret_value(SecretId=SECRET))["SecretString"] == SECRET_VALUE
        async with aws_client("s3", settings) as s3:
            small = await s3.get_object(Bucket=BUCKET, Key="style.css")
            assert await small["Body"].read() == b"body{color:teal}"
            big = await s3.get_object(Bucket=BUCKET, Key="big.bin")
            assert await big["Body"].read() == BIG
        async with aws_client("events", settings) as events:
            rules = (await events.list_rules(EventBusName=BUS))["Rules"]
            assert [r["Name"] for r in rules] == ["to-builder"]
        async with aws_client("sqs", settings) as sqs:
            got = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
            assert [m["Body"] for m in got.get("Messages", [])] == ['{"event_type": "TenantChanged"}']
            await sqs.send_message(QueueUrl=url, MessageBody="after")  # the restored queue takes new ones
    finally:
        process.stop(pid)
    assert "state restored" in moto.log_path.read_text()


@pytest.mark.parametrize("content", [b"not a state\n\x80\x04junk",
                                     json.dumps({"format": 1, "moto": "0.0.1", "services": []}).encode() + b"\n"],
                         ids=["damaged", "another moto version"])
def test_a_state_it_cannot_load_stops_the_start_and_is_left_alone(home, content):
    _, moto = home
    saved = moto.folder / STATE_FILE
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(content)
    with pytest.raises(process.StartFailed):
        moto.start()
    assert saved.read_bytes() == content
    log = moto.log_path.read_text()
    assert f"move {saved} away to start with an empty emulator" in log and "down --purge" in log
