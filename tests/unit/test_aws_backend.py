"""The provisioner's AWS backend against a fake Automation workspace: the tenant stack
lifecycle (create, update, destroy), concurrent updates retried, outputs checked against
the naming function, and the adapters keeping the local drivers' contract."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pulumi.automation import ConcurrentUpdateError
from pydantic import SecretStr, ValidationError

from contracts.tenant import tenant_names
from core.settings import Settings
from services.resources.aws.adapters import StackBucket, StackCache, StackRuntime, TenantStackConvergence
from services.resources.aws.stacks import StackSettings, TenantStacks, converge
from services.resources.aws.wiring import AwsTarget, use_tenant_stacks
from services.resources.base import Outcome, PermanentError
from tests.support.aws_fakes import FakeWorkspace

pytestmark = pytest.mark.timeout(30)

SETTINGS = StackSettings(backend_url="s3://state/hostplane", secrets_provider="awskms://alias/hostplane?region=eu-west-1",
                         platform_stack="org/hostplane-platform/prod", region="eu-west-1",
                         base_config={"image": "reloader:1", "zoneId": "Z1", "baseDomain": "apps.example.com"})


class FakeS3Bucket:
    def __init__(self, ws: FakeWorkspace) -> None:
        self.ws = ws

    async def existing(self, names) -> list[str]:
        st = self.ws.stacks.get(names.runtime_service)
        return [f"bucket:{names.bucket}"] if st and st.deployed else []

    async def remove(self, names) -> list[str]:
        return await self.existing(names)

    async def is_private(self, names) -> bool:
        return True

    async def all_names(self) -> list[str]:
        return []


def drivers(ws: FakeWorkspace, fresh_s: float = 120.0):
    stacks = TenantStacks(SETTINGS, workspace=ws, backoff_s=0)
    conv = TenantStackConvergence(stacks, fresh_s=fresh_s)
    return StackBucket(conv, FakeS3Bucket(ws)), StackRuntime(conv)


async def test_create_then_unchanged_then_update():
    ws, names = FakeWorkspace(), tenant_names("acme")
    bucket, runtime = drivers(ws, fresh_s=0)
    created = await bucket.ensure(names)
    assert (created.outcome, created.value) == (Outcome.CREATED, names.bucket)
    again = await runtime.register(names, env_ref=names.secret)
    assert (again.outcome, again.value) == (Outcome.UNCHANGED, names.runtime_service)
    stack = ws.stacks[names.runtime_service]
    assert stack.config["hostplane:tenantId"] == "acme"
    assert stack.config["hostplane:secretName"] == names.secret
    assert stack.config["hostplane:platformStack"] == SETTINGS.platform_stack
    assert not any("password" in k.lower() for k in stack.config)  # secrets stay in the secret
    stack.deployed["hostplane:image"] = "reloader:0"  # the deployed image is older than desired
    updated = await runtime.register(names, env_ref=names.secret)
    assert updated.outcome == Outcome.UPDATED
    assert stack.ups == 3


async def test_bucket_and_runtime_steps_share_one_up_per_handler_run():
    ws, names = FakeWorkspace(), tenant_names("acme")
    bucket, runtime = drivers(ws)
    await bucket.ensure(names)
    reused = await runtime.register(names, env_ref=names.secret)
    assert ws.stacks[names.runtime_service].ups == 1
    assert reused.outcome == Outcome.UNCHANGED


async def test_destroy_removes_the_stack_and_is_safe_twice():
    ws, names = FakeWorkspace(), tenant_names("acme")
    bucket, runtime = drivers(ws)
    await runtime.register(names, env_ref=names.secret)
    assert await runtime.existing(names) == [f"runtime:{names.runtime_service}"]
    assert await runtime.registered() == {"acme"}
    assert await runtime.deregister(names) == [f"runtime:{names.runtime_service}"]
    assert ws.stacks == {}
    assert await runtime.deregister(names) == []
    assert await bucket.remove(names) == []
    assert await runtime.existing(names) == []


async def test_concurrent_update_is_retried_until_the_lock_is_free():
    ws, names = FakeWorkspace(busy=2), tenant_names("acme")
    _, runtime = drivers(ws)
    result = await runtime.register(names, env_ref=names.secret)
    assert result.outcome == Outcome.CREATED and ws.busy == 0
    ws.busy = 1
    assert await runtime.deregister(names) == [f"runtime:{names.runtime_service}"]


async def test_a_lock_that_never_frees_is_raised_for_redelivery():
    ws, names = FakeWorkspace(busy=100), tenant_names("acme")
    _, runtime = drivers(ws)
    with pytest.raises(ConcurrentUpdateError):
        await runtime.register(names, env_ref=names.secret)
    assert ws.busy == 100 - 6  # first try + CONCURRENT_RETRIES, then it gives up


def test_converge_waits_longer_between_attempts():
    ws, slept = FakeWorkspace(busy=3), []
    converge(ws, "hostplane-acme", {"tenantId": "acme", "prefix": "hostplane"}, backoff_s=2, sleep=slept.append)
    assert slept == [2, 4, 6]


async def test_outputs_that_differ_from_the_names_fail_permanently():
    ws, names = FakeWorkspace(drift=True), tenant_names("acme")
    bucket, _ = drivers(ws)
    with pytest.raises(PermanentError, match="bucket"):
        await bucket.ensure(names)


async def test_runtime_refuses_an_environment_other_than_the_tenants_secret():
    _, runtime = drivers(FakeWorkspace())
    with pytest.raises(PermanentError):
        await runtime.register(tenant_names("acme"), env_ref="hostplane/tenants/other")


async def test_cache_keeps_the_secrets_password_and_makes_one_when_none():
    class Local:
        async def key_prefixes(self):
            return {"acme:": 3}

        async def remove_keys(self, names):
            return [f"cache_keys:{names.cache_prefix}*"]

    cache, names = StackCache(Local()), tenant_names("acme")
    kept = await cache.ensure(names, SecretStr("stored-password-123"))
    assert kept.outcome == Outcome.UNCHANGED and kept.value.get_secret_value() == "stored-password-123"
    new = await cache.ensure(names, None)
    assert new.outcome == Outcome.CREATED and len(new.value.get_secret_value()) >= 32
    assert "stored" not in repr(kept)
    assert await cache.existing(names) == ["cache_keys:acme:*"]
    assert await cache.remove_keys(names) == ["cache_keys:acme:*"]


def test_aws_target_settings_are_required_and_checked(monkeypatch):
    for key in ("STATE_URL", "PLATFORM_STACK", "TENANT_IMAGE", "ZONE_ID", "BASE_DOMAIN"):
        monkeypatch.delenv(f"HOSTPLANE_AWS_{key}", raising=False)
    with pytest.raises(ValidationError, match="state_url"):
        AwsTarget()
    monkeypatch.setenv("HOSTPLANE_AWS_STATE_URL", "https://not-s3")
    for key, value in (("PLATFORM_STACK", "org/p/prod"), ("TENANT_IMAGE", "r:1"), ("ZONE_ID", "Z"),
                       ("BASE_DOMAIN", "apps.example.com")):
        monkeypatch.setenv(f"HOSTPLANE_AWS_{key}", value)
    with pytest.raises(ValidationError, match="s3://"):
        AwsTarget()
    monkeypatch.setenv("HOSTPLANE_AWS_STATE_URL", "s3://state")
    st = AwsTarget().stack_settings(Settings(region="eu-west-1"))
    assert st.secrets_provider == "awskms://alias/hostplane?region=eu-west-1"
    assert st.base_config == {"image": "r:1", "zoneId": "Z", "baseDomain": "apps.example.com", "edge": "pooled",
                              "idleAfterDefault": "900"}
    assert AwsTarget().stack_settings(Settings(scale_to_zero_after=0)).base_config["idleAfterDefault"] == "0"


def test_target_aws_swaps_exactly_the_stack_owned_drivers(monkeypatch):
    monkeypatch.setenv("HOSTPLANE_TARGET", "aws")
    assert Settings().target == "aws"
    res = SimpleNamespace(bucket=object(), cache=object(), runtime=object(), database="db", secrets="sm", _stack=None)
    use_tenant_stacks(res, Settings(), stacks=TenantStacks(SETTINGS, workspace=FakeWorkspace()))
    assert (type(res.bucket), type(res.cache), type(res.runtime)) == (StackBucket, StackCache, StackRuntime)
    assert type(res.edge).__name__ == "StackEdge"  # teardown waits on the stack's `routed`, not on a Caddy
    assert (res.database, res.secrets) == ("db", "sm")


# --- the tenant program runs with the interpreter of the service that drives it ----------------

def test_tenant_program_uses_the_services_virtualenv_or_the_python_on_path():
    from services.resources.aws.stacks import AutomationWorkspace

    assert AutomationWorkspace.runtime_options("/srv/.venv", "/usr/local") == {"virtualenv": "/srv/.venv"}
    assert AutomationWorkspace.runtime_options("/usr/local", "/usr/local") == {}  # the image: python on PATH


def test_pulumi_yaml_is_rewritten_only_when_it_names_another_interpreter(tmp_path):
    from services.resources.aws.stacks import AutomationWorkspace

    differs, program = AutomationWorkspace.runtime_differs, str(tmp_path / "infra" / "tenant")
    checkout = {"name": "hostplane-tenant", "runtime": {"name": "python", "options": {"virtualenv": "../../.venv"}}}
    assert not differs(checkout, program, {"virtualenv": str(tmp_path / ".venv")})  # `make`'s .venv: untouched
    assert differs(checkout, program, {})  # the image has no .venv: use its python
    assert not differs({"name": "hostplane-tenant", "runtime": "python"}, program, {})
    assert differs({"name": "hostplane-tenant", "runtime": {"name": "python"}}, program, {"virtualenv": "/v"})
    assert differs({"name": "x", "runtime": {"name": "python", "options": {"toolchain": "uv"}}}, program, {})


def test_automation_workspace_passes_project_settings_only_when_needed(tmp_path, monkeypatch):
    import sys

    from services.resources.aws.stacks import TENANT_PROGRAM, AutomationWorkspace

    (tmp_path / "Pulumi.yaml").write_text((TENANT_PROGRAM / "Pulumi.yaml").read_text())
    settings = StackSettings(backend_url="s3://state/hostplane", secrets_provider="awskms://alias/hostplane",
                             platform_stack="organization/hostplane-platform/prod", region="eu-west-1",
                             work_dir=str(tmp_path))
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)  # as in the image: no virtualenv
    project = AutomationWorkspace(settings)._kw()["project_settings"]
    assert project.name == "hostplane-tenant" and project.runtime.name == "python"
    assert not project.runtime.options
    monkeypatch.setattr(sys, "prefix", str((tmp_path / "../../.venv").resolve()))  # the checkout's .venv
    assert AutomationWorkspace(settings)._kw()["project_settings"] is None


def test_a_fresh_task_selecting_a_stack_takes_the_secrets_provider_recorded_in_state(tmp_path):
    """`secrets_provider` reaches only `stack init`: selecting an existing stack from a new task (no
    Pulumi.<stack>.yaml on its disk) needs the CLI to fall back to the provider in the stack's state."""
    from services.resources.aws.stacks import TENANT_PROGRAM, AutomationWorkspace

    (tmp_path / "Pulumi.yaml").write_text((TENANT_PROGRAM / "Pulumi.yaml").read_text())
    settings = StackSettings(backend_url="s3://state/hostplane", secrets_provider="awskms://alias/hostplane",
                             platform_stack="organization/hostplane-platform/prod", region="eu-west-1",
                             work_dir=str(tmp_path))
    env = AutomationWorkspace(settings)._kw()["env_vars"]
    assert env["PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER"] == "true"
    assert env["PULUMI_BACKEND_URL"] == "s3://state/hostplane"
