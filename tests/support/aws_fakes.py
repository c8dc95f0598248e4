"""A fake Pulumi Automation workspace (`FakeWorkspace`): stacks with per-task config, ups
that export what infra/tenant/stack.py would, and lock contention on demand. Shared by the
provisioner's AWS backend tests and router-config's AWS tests, which drive the same stacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from pulumi.automation import ConcurrentUpdateError
from pulumi.automation._cmd import CommandResult

from contracts.tenant import tenant_names


def locked() -> ConcurrentUpdateError:
    return ConcurrentUpdateError(CommandResult("", "error: the stack is currently locked by 1 lock(s)", 255))


@dataclass
class FakeStack:
    name: str
    ws: FakeWorkspace
    config: dict[str, Any] = field(default_factory=dict)
    deployed: dict[str, Any] | None = None
    deployed_outputs: dict[str, Any] | None = None
    ups: int = 0

    def set_all_config(self, config: dict[str, Any]) -> None:
        """As `pulumi config set-all` in a task that never ran this stack (the config file
        is per task): nothing but the keys given."""
        self.config = {k: v.value for k, v in config.items()}

    def _take_lock(self) -> None:
        if self.ws.busy > 0:
            self.ws.busy -= 1
            raise locked()

    def up(self, **kw: Any) -> Any:
        self._take_lock()
        self.ups += 1
        before, self.deployed = self.deployed, dict(self.config)
        op = "create" if before is None else "same" if before == self.deployed else "update"
        names = tenant_names(self.config["hostplane:tenantId"], prefix=self.config["hostplane:prefix"])
        outputs = self.deployed_outputs = self.ws.outputs_for(names, self.config)
        return SimpleNamespace(
            outputs={k: SimpleNamespace(value=v, secret=False) for k, v in outputs.items()}
            | {"originVerify": SimpleNamespace(value="never-exposed", secret=True)},
            summary=SimpleNamespace(resource_changes={op: 27} if op != "update" else {"same": 26, "update": 1}))

    def destroy(self, **kw: Any) -> Any:
        self._take_lock()
        self.deployed = self.deployed_outputs = None
        return SimpleNamespace(summary=SimpleNamespace(resource_changes={"delete": 27}))


@dataclass
class FakeWorkspace:
    stacks: dict[str, FakeStack] = field(default_factory=dict)
    busy: int = 0  # how many next operations meet a lock held by someone else
    drift: bool = False

    def outputs_for(self, names, config: dict[str, Any]) -> dict[str, Any]:
        """What infra/tenant/stack.py exports for this config (the parts the backend reads)."""
        routed = config.get("hostplane:routed") == "true"
        domain = config.get("hostplane:customDomain") or None
        ready = config.get("hostplane:customDomainReady") == "true"
        host = f"{names.tenant_id}.{config.get('hostplane:baseDomain', 'localhost')}"
        attached = [host] + ([domain] if domain and ready else [])
        return {"bucket": names.bucket + ("-x" if self.drift else ""), "runtimeService": names.runtime_service,
                "cacheUser": names.cache_user, "edgeDomain": "d1.cloudfront.net", "routed": routed,
                "routedHosts": attached if routed else [], "customDomain": domain or "",
                "customDomainReady": ready, "certificateArn": f"arn:aws:acm:us-east-1:1:certificate/{domain}"
                if domain else "",
                "certificateValidation": [{"name": f"_a1.{domain}.", "type": "CNAME",
                                           "value": "_b2.acm-validations.aws."}] if domain else [],
                **({"edge": config["hostplane:edge"]} if "hostplane:edge" in config else {})}

    def create_or_select(self, stack: str) -> tuple[FakeStack, bool]:
        if stack in self.stacks:
            return self.stacks[stack], False
        self.stacks[stack] = FakeStack(stack, self)
        return self.stacks[stack], True

    def select(self, stack: str) -> FakeStack | None:
        return self.stacks.get(stack)

    def remove(self, stack: str) -> None:
        assert self.stacks[stack].deployed is None, "remove_stack before destroy would orphan resources"
        del self.stacks[stack]

    def list(self) -> list[str]:
        return sorted(self.stacks)

    def outputs(self, stack: str) -> dict[str, Any] | None:
        found = self.stacks.get(stack)
        return dict(found.deployed_outputs) if found and found.deployed_outputs is not None else None
