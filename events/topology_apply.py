"""Apply the topology declaration to an emulator (or any account), idempotently.

Each step is "ensure": look, create what is missing, fix what differs. Running it
twice changes nothing; running it after the emulator lost its state rebuilds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import structlog

from events.topology import QueueSpec, Topology
from core.aws import aws_client
from core.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AppliedQueue:
    service: str
    url: str
    arn: str
    dlq_url: str
    dlq_arn: str


async def _ensure_queue(sqs: Any, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    try:
        url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        await sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    except sqs.exceptions.QueueDoesNotExist:
        url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
    attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, attrs["Attributes"]["QueueArn"]


async def _ensure_queues(sqs: Any, spec: QueueSpec) -> AppliedQueue:
    dlq_url, dlq_arn = await _ensure_queue(
        sqs, spec.dlq_name, {"MessageRetentionPeriod": str(spec.dlq_retention_s)}
    )
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(spec.max_receives)})
    url, arn = await _ensure_queue(
        sqs,
        spec.name,
        {
            "VisibilityTimeout": str(spec.visibility_timeout_s),
            "MessageRetentionPeriod": str(spec.retention_s),
            "ReceiveMessageWaitTimeSeconds": "20",
            "RedrivePolicy": redrive,
        },
    )
    return AppliedQueue(spec.service, url, arn, dlq_url, dlq_arn)


def _queue_policy(queue_arn: str, rule_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AllowEventBridgeRule",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }
            ],
        }
    )


async def _ensure_bus(events: Any, name: str) -> str:
    try:
        return (await events.describe_event_bus(Name=name))["Arn"]
    except events.exceptions.ResourceNotFoundException:
        return (await events.create_event_bus(Name=name))["EventBusArn"]


async def _ensure_archive(events: Any, topo: Topology, bus_arn: str) -> None:
    args = {"EventPattern": topo.archive_pattern(), "RetentionDays": 30}
    try:
        await events.describe_archive(ArchiveName=topo.archive_name)
        await events.update_archive(ArchiveName=topo.archive_name, **args)
    except events.exceptions.ResourceNotFoundException:
        await events.create_archive(ArchiveName=topo.archive_name, EventSourceArn=bus_arn, **args)


async def apply_topology(topo: Topology, settings: Settings) -> dict[str, AppliedQueue]:
    """Ensure bus, archive, queues, DLQs, rules and targets exist as declared."""
    applied: dict[str, AppliedQueue] = {}
    async with aws_client("sqs", settings) as sqs, aws_client("events", settings) as events:
        bus_arn = await _ensure_bus(events, topo.bus_name)
        for spec in topo.queues:
            applied[spec.service] = await _ensure_queues(sqs, spec)
        for rule in topo.rules:
            q = applied[rule.service]
            rule_arn = (
                await events.put_rule(
                    Name=rule.name, EventBusName=topo.bus_name, EventPattern=rule.pattern(), State="ENABLED"
                )
            )["RuleArn"]
            await sqs.set_queue_attributes(
                QueueUrl=q.url, Attributes={"Policy": _queue_policy(q.arn, rule_arn)}
            )
            result = await events.put_targets(
                Rule=rule.name,
                EventBusName=topo.bus_name,
                Targets=[
                    {
                        "Id": f"{rule.service}-queue",
                        "Arn": q.arn,
                        "RetryPolicy": {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400},
                        "DeadLetterConfig": {"Arn": q.dlq_arn},
                    }
                ],
            )
            if result.get("FailedEntryCount"):
                raise RuntimeError(f"put_targets failed for rule {rule.name}: {result['FailedEntries']}")
        await _ensure_archive(events, topo, bus_arn)
    log.info("topology.applied", bus=topo.bus_name, queues=len(applied), rules=len(topo.rules))
    return applied


async def queue_urls(topo: Topology, settings: Settings) -> dict[str, AppliedQueue]:
    """Look up (without changing) the applied queues, by service."""
    out: dict[str, AppliedQueue] = {}
    async with aws_client("sqs", settings) as sqs:
        for spec in topo.queues:
            url = (await sqs.get_queue_url(QueueName=spec.name))["QueueUrl"]
            dlq_url = (await sqs.get_queue_url(QueueName=spec.dlq_name))["QueueUrl"]
            arns = [
                (await sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
                for u in (url, dlq_url)
            ]
            out[spec.service] = AppliedQueue(spec.service, url, arns[0], dlq_url, arns[1])
    return out
