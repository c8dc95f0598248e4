"""Run a Pulumi program under in-process mocks and record every resource it declares.

No CLI, no cloud. Each run happens in its own thread with its own event loop: Pulumi's
runtime settings are context variables and its helpers grab "the" event loop, so a
fresh thread keeps one test's mock runtime from leaking into any other test.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi

ACCOUNT = "123456789012"
REGION = "eu-west-1"
MOCK_CACHE_PASSWORD = "mock-cache-password-0123456789"


@dataclass(frozen=True)
class Declared:
    typ: str
    name: str
    inputs: dict[str, Any]
    parent: str | None


# Outputs AWS computes that programs read (the mock echoes inputs; these fill the rest).
_EXTRA_OUTPUTS: dict[str, dict[str, Any]] = {
    "aws:rds/cluster:Cluster": {"masterUserSecrets": [
        {"secretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds-admin", "kmsKeyId": "k"}]},
    "aws:elasticache/replicationGroup:ReplicationGroup": {"primaryEndpointAddress": "cache.example.aws"},
    "aws:lb/loadBalancer:LoadBalancer": {"arnSuffix": "app/hostplane/0123"},
    "aws:lb/targetGroup:TargetGroup": {"arnSuffix": "targetgroup/caddy/0123"},
}


def _acm_validations(inputs: dict[str, Any]) -> list[dict[str, str]]:
    """ACM's DNS validation records: one per name the certificate asks for."""
    names = [inputs.get("domainName", ""), *(inputs.get("subjectAlternativeNames") or [])]
    return [{"domainName": n, "resourceRecordName": f"_x.{n}.", "resourceRecordType": "CNAME",
             "resourceRecordValue": f"_y.{n}.acm-validations.aws."} for n in names]


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, stack_outputs: dict[str, Any] | None = None) -> None:
        self.resources: list[Declared] = []
        self.calls: list[str] = []
        # (type, name) -> the (type, name)s it waits for (depends_on and every input's
        # resource): what orders the engine's `up` (RecordingMonitor)
        self.dependencies: dict[tuple[str, str], set[tuple[str, str]]] = {}
        # (type, name) -> the resource options the engine receives (protect, ignoreChanges,
        # customTimeouts, retainOnDelete, deleteBeforeReplace)
        self.options: dict[tuple[str, str], dict[str, Any]] = {}
        self.stack_outputs = stack_outputs or {}  # what a StackReference reads

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(Declared(args.typ, args.name, _unwrap(dict(args.inputs)), None))
        if args.typ == "pulumi:pulumi:StackReference":
            return f"{args.name}-id", {"name": args.name, "outputs": self.stack_outputs, "secretOutputNames": []}
        service = args.typ.split(":")[1].split("/")[0] if args.typ.count(":") >= 2 else "x"
        outputs = {
            "arn": f"arn:aws:{service}:{REGION}:{ACCOUNT}:{args.name}",
            "id": f"{args.name}-id",
            "name": args.inputs.get("name", args.name),
            "domainName": f"{args.name}.example.aws",
            "dnsName": f"{args.name}.elb.example.aws",
            "zoneId": "Z2FDTNDATAQYW2",
            "hostedZoneId": "Z2FDTNDATAQYW2",
            "endpoint": f"{args.name}.cluster.example.aws",
            "routingEndpoint": "d111111abcdef8.cloudfront.net",
            "keyId": f"{args.name}-key-id",
            "url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{args.inputs.get('name', args.name)}",
            "bucketRegionalDomainName": f"{args.inputs.get('bucket', args.name)}.s3.{REGION}.amazonaws.com",
            **({"domainValidationOptions": _acm_validations(args.inputs)}
               if args.typ == "aws:acm/certificate:Certificate" else {}),
            **_EXTRA_OUTPUTS.get(args.typ, {}),
            **args.inputs,
        }
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.calls.append(args.token)
        if args.token.endswith("getCallerIdentity"):
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root", "userId": "x"}
        if args.token.endswith("getRegion"):
            return {"name": REGION, "region": REGION, "id": REGION}
        if args.token.endswith("getAvailabilityZones"):
            return {"names": [f"{REGION}a", f"{REGION}b", f"{REGION}c"], "zoneIds": ["a", "b", "c"]}
        if args.token.endswith("getSecretVersion"):
            secret = json.dumps({"CACHE_PASSWORD": MOCK_CACHE_PASSWORD})
            return {"secretString": secret, "arn": args.args.get("secretId", ""), "versionId": "v1"}
        if args.token == "aws:secretsmanager/getSecret:getSecret":
            name = args.args.get("name", "x")
            return {"arn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf", "name": name}
        if args.token in ("aws:cloudfront/getCachePolicy:getCachePolicy",
                          "aws:cloudfront/getOriginRequestPolicy:getOriginRequestPolicy"):
            return {"id": f"{args.args.get('name', 'policy')}-id", "name": args.args.get("name", "")}
        if args.token == "aws:ec2/getManagedPrefixList:getManagedPrefixList":
            return {"id": "pl-3b927c52", "name": args.args.get("name", "")}
        if args.token.endswith("getParameter"):
            return {"value": "ami-0123456789abcdef0", "name": args.args.get("name", ""), "type": "String"}
        return {}


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, also recording what each resource registration depends on."""

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method's name)
        deps = set(request.dependencies)
        for prop in request.propertyDependencies.values():
            deps |= set(prop.urns)
        key = (request.type, request.name)
        self.mocks.dependencies[key] = {_type_and_name(urn) for urn in deps}
        timeouts = request.customTimeouts
        self.mocks.options[key] = {
            "protect": request.protect, "ignoreChanges": list(request.ignoreChanges),
            "retainOnDelete": request.retainOnDelete, "deleteBeforeReplace": request.deleteBeforeReplace,
            "customTimeouts": {k: getattr(timeouts, k) for k in ("create", "update", "delete") if getattr(timeouts, k)}}
        return super().RegisterResource(request)


def _type_and_name(urn: str) -> tuple[str, str]:
    """urn:pulumi:<stack>::<project>::<parent type>$<type>::<name> → (type, name)."""
    *_, types, name = urn.split("::")
    return types.rsplit("$", 1)[-1], name


_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value


def _unwrap(value: Any) -> Any:
    """Inputs with Pulumi's secret wrappers replaced by the values they hold."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return _unwrap(value.get("value"))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def run_program(program: Callable[[], Any], *, stack: str = "test", config: dict[str, str] | None = None,
                stack_outputs: dict[str, Any] | None = None, timeout: float = 60.0) -> RecordingMocks:
    """Declare `program`'s resources under mocks; returns what was declared."""
    box: dict[str, Any] = {}

    def target() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            mocks = RecordingMocks(stack_outputs)
            pulumi.runtime.set_mocks(mocks, project="hostplane", stack=stack, preview=False,
                                     organization="organization", monitor=RecordingMonitor(mocks))  # what a DIY backend reports
            if config:
                pulumi.runtime.set_all_config(config)
            pulumi.runtime.test(program)()
            box["mocks"] = mocks
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    thread = threading.Thread(target=target, name="pulumi-mocks", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"pulumi program did not finish within {timeout}s")
    if "error" in box:
        raise box["error"]
    return box["mocks"]


def condition_allows(condition: dict[str, Any] | None, context: dict[str, Any]) -> bool:
    """IAM's evaluation of a statement's Condition block against a request context, for the
    operators the programs use (StringEquals/StringLike, their ForAllValues:/ForAnyValue:
    forms, Null). A context key holds a string or, multivalued, a list; absent = missing."""
    from fnmatch import fnmatchcase

    matchers = {"StringEquals": lambda v, e: v == e, "StringLike": fnmatchcase}
    for operator, block in (condition or {}).items():
        qualifier, _, base = operator.rpartition(":")
        for key, expected in block.items():
            wanted = expected if isinstance(expected, list) else [expected]
            present = key in context
            values = context.get(key)
            values = values if isinstance(values, list) else [values] if present else []
            if base == "Null":
                ok = (not present) == (str(wanted[0]).lower() == "true")
            else:
                hit = [any(matchers[base](v, e) for e in wanted) for v in values]
                ok = (all(hit) if qualifier == "ForAllValues" else any(hit) if qualifier == "ForAnyValue"
                      else present and len(values) == 1 and hit[0])
            if not ok:
                return False
    return True


def put_events_context(source: str, detail_type: str) -> dict[str, Any]:
    """The request context EventBridge authorizes one PutEvents entry with."""
    return {"events:source": [source], "events:detail-type": detail_type}
