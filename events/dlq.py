"""Dead-letter queues: look at what failed, and send it back for another try.

Listing peeks without consuming: messages are received with a short visibility (so one
pass can page through more than ten) and then made visible again at once. Redrive sends
each message's body to its source queue, then deletes it from the DLQ (send first: a crash
in between duplicates, which the inbox absorbs, rather than loses). It is done here
rather than with StartMessageMoveTask, which the emulators implement unevenly; one code
path behaves the same locally and on AWS. A redrive moves at most the depth it saw at
the start, so messages that fail again meanwhile wait for the next redrive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import structlog

from events.topology import QueueSpec, Topology
from core.aws import aws_client
from core.settings import Settings

log = structlog.get_logger(__name__)

PEEK_VISIBILITY_S = 20
MAX_PEEK = 100


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    event_type: str | None
    tenant_id: str | None
    event_id: str | None
    replay_id: str | None
    receive_count: int


@dataclass
class DlqReport:
    service: str
    queue: str
    dlq: str
    depth: int
    messages: list[DeadLetter] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "queue": self.queue,
            "dlq": self.dlq,
            "depth": self.depth,
            "messages": [m.__dict__ for m in self.messages],
        }


def select_queues(topology: Topology, queue: str | None) -> list[QueueSpec]:
    """All queues, or the one named by service, queue name or DLQ name."""
    if queue is None:
        return list(topology.queues)
    chosen = [q for q in topology.queues if queue in (q.service, q.name, q.dlq_name)]
    if not chosen:
        known = ", ".join(q.service for q in topology.queues)
        raise KeyError(f"no queue {queue!r}; known services: {known}")
    return chosen


def _dead_letter(msg: dict[str, Any]) -> DeadLetter:
    detail: dict[str, Any] = {}
    try:
        detail = json.loads(msg["Body"]).get("detail") or {}
        if isinstance(detail, str):
            detail = json.loads(detail)
    except (ValueError, AttributeError):
        pass
    return DeadLetter(
        message_id=msg["MessageId"],
        event_type=detail.get("event_type"),
        tenant_id=detail.get("tenant_id"),
        event_id=detail.get("event_id"),
        replay_id=detail.get("replay_id"),
        receive_count=int(msg.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
    )


async def _depth(sqs: Any, url: str) -> int:
    attrs = await sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    a = attrs["Attributes"]
    return int(a.get("ApproximateNumberOfMessages", 0)) + int(a.get("ApproximateNumberOfMessagesNotVisible", 0))


async def _receive(sqs: Any, url: str, visibility: int) -> list[dict[str, Any]]:
    resp = await sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        VisibilityTimeout=visibility,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
        MessageAttributeNames=["All"],
    )
    return resp.get("Messages", [])


async def _peek(sqs: Any, url: str, limit: int) -> list[DeadLetter]:
    taken: list[dict[str, Any]] = []
    try:
        while len(taken) < limit and (batch := await _receive(sqs, url, PEEK_VISIBILITY_S)):
            taken += batch
    finally:
        for msg in taken:  # give every one back at once
            await sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=0
            )
    return [_dead_letter(m) for m in taken[:limit]]


async def list_dlq(
    settings: Settings, topology: Topology, queue: str | None = None, *, max_messages: int = MAX_PEEK
) -> list[DlqReport]:
    """Depth and (peeked) messages of each DLQ, or of the one named by `queue`."""
    reports = []
    async with aws_client("sqs", settings) as sqs:
        for spec in select_queues(topology, queue):
            url = (await sqs.get_queue_url(QueueName=spec.dlq_name))["QueueUrl"]
            depth = await _depth(sqs, url)
            messages = await _peek(sqs, url, max_messages) if depth else []
            reports.append(DlqReport(spec.service, spec.name, spec.dlq_name, depth, messages))
    return reports


async def redrive(settings: Settings, topology: Topology, queue: str | None = None) -> int:
    """Move DLQ messages back to their source queues; returns how many moved."""
    moved = 0
    async with aws_client("sqs", settings) as sqs:
        for spec in select_queues(topology, queue):
            dlq_url = (await sqs.get_queue_url(QueueName=spec.dlq_name))["QueueUrl"]
            src_url = (await sqs.get_queue_url(QueueName=spec.name))["QueueUrl"]
            budget = await _depth(sqs, dlq_url)
            while budget > 0 and (batch := await _receive(sqs, dlq_url, 60)):
                for msg in batch[:budget]:
                    send: dict[str, Any] = {"QueueUrl": src_url, "MessageBody": msg["Body"]}
                    if msg.get("MessageAttributes"):
                        send["MessageAttributes"] = msg["MessageAttributes"]
                    await sqs.send_message(**send)
                    await sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=msg["ReceiptHandle"])
                    moved += 1
                    budget -= 1
                    log.info("dlq.redriven", queue=spec.name, message_id=msg["MessageId"])
    return moved
