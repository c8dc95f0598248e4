"""What every component shares: tags, IAM policy documents, the ECS placement rule.

Policies are built as plain dicts and serialised here, so tests read exactly what AWS
would receive and can refuse any statement allowing `*` on `*`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi

TENANT_TAG = "hostplane:tenant"
COMPONENT_TAG = "hostplane:component"
# The installation (`hostplane:prefix`) a resource belongs to: what the control plane's IAM
# conditions on where an ARN cannot carry the prefix (IDs chosen by AWS, infra/platform/permissions.py).
INSTALLATION_TAG = "hostplane:installation"
DEFAULT_PREFIX = "hostplane"
# Tenants are packed onto as few instances as fit (memory first), never spread.
BINPACK = [{"type": "binpack", "field": "memory"}]


# `hostplane:prefix`: IAM scopes this installation's resources by `<prefix>-*` ARNs
# (infra/platform/permissions.py), which would also match every installation whose prefix
# starts with `<prefix>-`: so no hyphen. 16 at most keeps every derived name within AWS's
# limits (bucket `<prefix>-<31-char tenant>-static` <= 63, ElastiCache ids <= 40).
PREFIX = re.compile(r"[a-z][a-z0-9]{0,15}")


def check_prefix(prefix: str) -> str:
    if not PREFIX.fullmatch(prefix):
        raise ValueError(f"hostplane:prefix must be 1-16 lowercase letters and digits, starting with a letter, "
                         f"no hyphen (IAM's <prefix>-* would match other installations), not {prefix!r}")
    return prefix


def installation() -> str:
    """The running program's prefix: both programs read it from `hostplane:prefix`."""
    return check_prefix(pulumi.Config("hostplane").get("prefix") or DEFAULT_PREFIX)


def tags(component: str, tenant_id: str | None = None, **extra: str) -> dict[str, str]:
    out = {"hostplane:managed-by": "pulumi", INSTALLATION_TAG: installation(), COMPONENT_TAG: component, **extra}
    if tenant_id:
        out[TENANT_TAG] = tenant_id
    return out


def statement(actions: list[str], resources: Any, *, sid: str | None = None,
              condition: dict[str, Any] | None = None, principal: dict[str, Any] | None = None,
              effect: str = "Allow") -> dict[str, Any]:
    st: dict[str, Any] = {"Effect": effect, "Action": actions, "Resource": resources}
    if sid:
        st["Sid"] = sid
    if condition:
        st["Condition"] = condition
    if principal:
        st["Principal"] = principal
    return st


def policy_json(*statements: Any) -> pulumi.Output[str]:
    """A policy document; statements may hold Outputs (ARNs) anywhere inside."""
    return pulumi.Output.from_input({"Version": "2012-10-17", "Statement": list(statements)}).apply(
        lambda doc: json.dumps(doc, sort_keys=True)
    )


def assume_role(service: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    })


def child(parent: pulumi.Resource, **kw: Any) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kw)
