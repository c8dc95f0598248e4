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


_UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
# ARNs as AWS forms them, as long as real ones (IAM sizes and lints: tests/unit/test_infra_iam.py).
_REAL_ARNS: dict[str, Callable[[dict[str, Any], str], str]] = {
    "aws:s3/bucket:Bucket": lambda i, n: f"arn:aws:s3:::{i.get('bucket', n)}",
    "aws:cloudwatch/logGroup:LogGroup": lambda i, n: f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{i.get('name', n)}",
    "aws:kms/key:Key": lambda i, n: f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{_UUID}",
    "aws:secretsmanager/secret:Secret":
        lambda i, n: f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{i.get('name', n)}-AbCdEf",
    "aws:efs/fileSystem:FileSystem":
        lambda i, n: f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/fs-0123456789abcdef0",
    "aws:efs/accessPoint:AccessPoint":
        lambda i, n: f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:access-point/fsap-0123456789abcdef0",
    "aws:sqs/queue:Queue": lambda i, n: f"arn:aws:sqs:{REGION}:{ACCOUNT}:{i.get('name', n)}",
    "aws:cloudwatch/eventBus:EventBus": lambda i, n: f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{i.get('name', n)}",
    "aws:cloudwatch/eventRule:EventRule":
        lambda i, n: f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{i.get('eventBusName', 'default')}/{i.get('name', n)}",
    "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace":
        lambda i, n: f"arn:aws:servicediscovery:{REGION}:{ACCOUNT}:namespace/ns-abcdefghijklmnop",
    "aws:cloudfront/keyValueStore:KeyValueStore": lambda i, n: f"arn:aws:cloudfront::{ACCOUNT}:key-value-store/{_UUID}",
    "aws:cloudfront/multitenantDistribution:MultitenantDistribution":
        lambda i, n: f"arn:aws:cloudfront::{ACCOUNT}:distribution/E1ABCDEFGHIJKL",
    "aws:cloudfront/distribution:Distribution": lambda i, n: f"arn:aws:cloudfront::{ACCOUNT}:distribution/E2ABCDEFGHIJKL",
    "aws:cloudfront/function:Function": lambda i, n: f"arn:aws:cloudfront::{ACCOUNT}:function/{i.get('name', n)}",
    "aws:ecs/cluster:Cluster": lambda i, n: f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{i.get('name', n)}",
    "aws:iam/role:Role": lambda i, n: f"arn:aws:iam::{ACCOUNT}:role/{i.get('name', n)}",
    "aws:iam/policy:Policy": lambda i, n: f"arn:aws:iam::{ACCOUNT}:policy/{i.get('name', n)}",
}


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, stack_outputs: dict[str, Any] | None = None, *, real_arns: bool = False) -> None:
        self.real_arns = real_arns
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
        if self.real_arns and args.typ in _REAL_ARNS:
            outputs["arn"] = _REAL_ARNS[args.typ](dict(args.inputs), args.name)
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
                stack_outputs: dict[str, Any] | None = None, timeout: float = 60.0,
                real_arns: bool = False) -> RecordingMocks:
    """Declare `program`'s resources under mocks; returns what was declared."""
    box: dict[str, Any] = {}

    def target() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            mocks = RecordingMocks(stack_outputs, real_arns=real_arns)
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
