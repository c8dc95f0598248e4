"""EventBridge bus, archive, rules, and one SQS queue + DLQ per consuming service,
all generated from `events.topology.topology()`: the declaration `hostplane up` applies
to the emulator (events.topology_apply). One source of truth for both targets.

Every rule target gets a retry policy and a dead-letter queue. The target's DLQ is the
service's own DLQ, so an event EventBridge could not deliver sits where `hostplane dlq`
already lists and redrives (to the same queue it should have reached).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from events.topology import ARCHIVE_RETENTION_DAYS, Topology, topology
from infra.common import child, policy_json, statement, tags

TARGET_MAX_RETRIES = 185  # EventBridge's maximum
TARGET_MAX_EVENT_AGE_S = 24 * 3600


@dataclass
class MessagingArgs:
    prefix: str = "hostplane"
    kms_key_arn: pulumi.Input[str] | None = None


@dataclass
class ServiceQueue:
    queue: aws.sqs.Queue
    dlq: aws.sqs.Queue


class Messaging(pulumi.ComponentResource):
    def __init__(self, name: str, args: MessagingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:Messaging", name, None, opts)
        self.topology: Topology = topology(args.prefix)
        top, t = self.topology, tags("messaging")
        self.bus = aws.cloudwatch.EventBus(f"{name}-bus", name=top.bus_name, tags=t, opts=child(self))
        self.archive = aws.cloudwatch.EventArchive(
            f"{name}-archive", name=top.archive_name, event_source_arn=self.bus.arn,
            event_pattern=top.archive_pattern(), retention_days=ARCHIVE_RETENTION_DAYS, opts=child(self))
        self.queues: dict[str, ServiceQueue] = {}
        for spec in top.queues:
            dlq = aws.sqs.Queue(spec.dlq_name, name=spec.dlq_name, message_retention_seconds=spec.dlq_retention_s,
                                sqs_managed_sse_enabled=True, tags={**t, "service": spec.service},
                                opts=child(self))
            queue = aws.sqs.Queue(
                spec.name, name=spec.name, visibility_timeout_seconds=spec.visibility_timeout_s,
                message_retention_seconds=spec.retention_s, receive_wait_time_seconds=20,
                sqs_managed_sse_enabled=True, tags={**t, "service": spec.service},
                redrive_policy=dlq.arn.apply(lambda arn, n=spec.max_receives: json.dumps(
                    {"deadLetterTargetArn": arn, "maxReceiveCount": n})),
                opts=child(self))
            self.queues[spec.service] = ServiceQueue(queue, dlq)
        self.rules: dict[str, aws.cloudwatch.EventRule] = {}
        for rule_spec in top.rules:
            sq = self.queues[rule_spec.service]
            rule = aws.cloudwatch.EventRule(rule_spec.name, name=rule_spec.name, event_bus_name=self.bus.name,
                                            event_pattern=rule_spec.pattern(), tags=t, opts=child(self))
            aws.cloudwatch.EventTarget(
                rule_spec.name, rule=rule.name, event_bus_name=self.bus.name, arn=sq.queue.arn,
                retry_policy={"maximum_retry_attempts": TARGET_MAX_RETRIES,
                              "maximum_event_age_in_seconds": TARGET_MAX_EVENT_AGE_S},
                dead_letter_config={"arn": sq.dlq.arn}, opts=child(self))
            for which, q in (("queue", sq.queue), ("dlq", sq.dlq)):
                aws.sqs.QueuePolicy(
                    f"{rule_spec.name}-{which}", queue_url=q.url, opts=child(self),
                    policy=policy_json(statement(
                        ["sqs:SendMessage"], q.arn, sid="AllowEventBridgeRule",
                        principal={"Service": "events.amazonaws.com"},
                        condition={"ArnEquals": {"aws:SourceArn": rule.arn}})))
            self.rules[rule_spec.service] = rule
        self.register_outputs({
            "bus_name": self.bus.name, "bus_arn": self.bus.arn,
            "queue_urls": {s: q.queue.url for s, q in self.queues.items()},
        })
