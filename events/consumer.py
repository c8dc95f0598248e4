"""The consumer loop every service runs: SQS in, handler, events out through the outbox.

Per message: bind the log context, read the EventBridge body's `detail` as an envelope,
skip (delete) types this service has no handler for — rules match only source and
detail-type, finer filtering is here — and refuse (delete, count, log `events.refused`,
nothing else: no retry, no DLQ, no event) one whose EventBridge `source` is not the one a
declared producer of its type speaks under (`Envelope.source`: a tenant runtime's events
come from `hostplane.runtime.<tenant>` about that tenant only); then, holding the tenant
(events.inbox), skip a duplicate, skip (mark handled, change nothing, log
`events.stale_incarnation`) a stage service's event of another tenant incarnation than
the current one, or a command the API did not record exactly so (`command.unrecorded`;
events.recorded), or run the handler and commit inbox mark + emitted events in one
transaction, and only then delete the message. A handler that raises PermanentFailure
(events.failure) emits the service's declared *Failed event instead: handled, no retry.
Dedup is on the envelope's key, never on SQS or EventBridge ids (EventBridge assigns a new
id on every publish). The source check
trusts EventBridge's `source`, which PutEvents binds to the caller's credentials (IAM
condition `events:source`); only the rules may send to the queues (queue policies).

While a handler runs (or waits for its tenant) a heartbeat keeps extending the message's
visibility. On failure the message is not deleted: its visibility is set to a short
backoff (retry_delay_s × 2^(receives-1), capped at the visibility timeout) so it comes back
sooner than a full timeout, and after the queue's max receives SQS moves it to the DLQ;
a failure on the last receive also publishes MessageDeadLettered, so the tenant's status
shows the stuck stage instead of waiting forever.
Fairness: at most `per_tenant_inflight` messages of one tenant are worked on at a time
(its later ones wait in hand, their visibility kept by the heartbeat, and take no slot of
`concurrency`), and the consumer keeps receiving while it holds fewer than `max_held`, so
one tenant's backlog (a replay storm) cannot fill every slot: another tenant's message
waits at most for the messages received before it to be *taken*, not worked off.
A replayed command (replay_id set) that is no longer the tenant's latest intent changes
nothing in a stage service (`command.superseded`, events.recorded.replay_superseded). The checks before a handler are
events.admission; the per-tenant slots events.fairness.

On stop()/SIGTERM the consumer stops receiving, lets in-flight handlers finish within
the grace period, then cancels the rest and releases their messages (visibility 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from contracts.envelope import Envelope, Event
from events.admission import EventRefused, check_producer, skip_reason
from events.failure import Handler, handled
from events.fairness import TenantSlots, tenant_of
from events.inbox import Inbox, PgInbox, current_connection
from events.outbox import add_to_outbox
from events.topology import Topology
from core.aws import aws_client
from core.metrics import count_refused
from core.settings import Settings

log = structlog.get_logger(__name__)

_SETTLED = "hostplane.settled"  # marks a message deleted or given back, so shutdown leaves it



@dataclass(frozen=True)
class ConsumerOptions:
    wait_time_s: int = 20  # SQS long polling, at most 20
    visibility_timeout_s: int | None = None  # per receive; None: the queue spec's
    heartbeat_s: float | None = None  # None: a third of the visibility timeout
    retry_delay_s: float = 2.0  # backoff base after a failure (0: retry at once)
    grace_period_s: float = 25.0  # in-flight handlers get this long on shutdown
    per_tenant_inflight: int = 1  # messages of one tenant worked on at once (they serialise anyway)
    max_held: int | None = None  # messages in hand, waiting included; None: 16 x concurrency


class MalformedMessage(ValueError):
    """A message that is not an EventBridge event carrying an envelope."""


class _Released(Exception):
    """Shutdown began before the handler started: give the message back."""


class Consumer:
    """Consumes one service's queue with at most `concurrency` messages in hand.

    A handler runs inside its inbox transaction, holding a connection of `pool`: size the
    pool for `concurrency` plus what else shares it (the outbox relay holds one).
    """

    def __init__(
        self,
        service: str,
        handlers: Mapping[type[Event], Handler],
        deps: Any,
        pool: Any,
        settings: Settings,
        topology: Topology,
        concurrency: int = 4,
        *,
        options: ConsumerOptions | None = None,
        sqs: Any = None,
        inbox: Inbox | None = None,
    ) -> None:
        self.service = service
        self.deps = deps
        self.settings = settings
        self.spec = topology.queue(service)
        self.concurrency = concurrency
        self.options = options or ConsumerOptions()
        self.visibility_s = self.options.visibility_timeout_s or self.spec.visibility_timeout_s
        self.heartbeat_s = self.options.heartbeat_s or max(self.visibility_s / 3, 0.5)
        self._handlers = {(cls.event_type, cls.major()): (cls, fn) for cls, fn in handlers.items()}
        self._inbox: Inbox = inbox or PgInbox(pool, service)
        self._pool = pool
        self._sqs = sqs
        self._url: str | None = None
        self._stop = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], dict[str, Any]] = {}
        self.max_held = self.options.max_held or 16 * concurrency
        self._slots = TenantSlots(self.options.per_tenant_inflight)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop receiving; in-flight handlers finish (within the grace period)."""
        self._stop.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        """Consume until `stop()` (or SIGTERM/SIGINT with handle_signals), then drain."""
        async with contextlib.AsyncExitStack() as stack:
            if self._sqs is None:
                self._sqs = await stack.enter_async_context(
                    aws_client(
                        "sqs",
                        self.settings,
                        read_timeout=self.options.wait_time_s + 15,
                        max_pool_connections=2 * self.concurrency + 4,
                    )
                )
            self._url = (await self._sqs.get_queue_url(QueueName=self.spec.name))["QueueUrl"]
            if handle_signals:
                self._install_signals(stack)
            log.info("consumer.started", service=self.service, queue=self.spec.name)
            try:
                await self._receive_loop()
            finally:
                await self._drain()
            log.info("consumer.stopped", service=self.service)

    def _install_signals(self, stack: contextlib.AsyncExitStack) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
            stack.callback(loop.remove_signal_handler, sig)

    async def _receive_loop(self) -> None:
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            while not self.stopping:
                active = len(self._inflight) - self._slots.waiting
                free = min(self.concurrency - active, self.max_held - len(self._inflight))
                if free <= 0:
                    await asyncio.wait({*self._inflight, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                    continue
                receive = asyncio.ensure_future(self._receive(min(10, free)))
                await asyncio.wait({receive, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():  # stopping: abandon the poll (anything it took comes back)
                    receive.cancel()
                    await asyncio.gather(receive, return_exceptions=True)
                    break
                try:
                    messages = receive.result()
                except Exception:
                    log.exception("consumer.receive_failed", service=self.service)
                    await asyncio.wait({stop_wait}, timeout=1.0)
                    continue
                for msg in messages:
                    if self.stopping:
                        await self._set_visibility(msg, 0)
                        continue
                    tenant = tenant_of(msg)
                    self._slots.claim(tenant)
                    task = asyncio.create_task(self._handle(msg, tenant))
                    self._inflight[task] = msg
                    task.add_done_callback(lambda t, tenant=tenant: self._done(t, tenant))
        finally:
            stop_wait.cancel()

    def _done(self, task: asyncio.Task[None], tenant: str | None) -> None:
        self._inflight.pop(task, None)
        self._slots.release(tenant)

    async def _receive(self, count: int) -> list[dict[str, Any]]:
        resp = await self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self.options.wait_time_s,
            VisibilityTimeout=self.visibility_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return resp.get("Messages", [])

    async def _drain(self) -> None:
        if not self._inflight:
            return
        tasks = dict(self._inflight)
        _, pending = await asyncio.wait(tasks, timeout=self.options.grace_period_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in pending:
            msg = tasks[task]
            if not msg.get(_SETTLED):
                log.warning("message.released", message_id=msg["MessageId"])
                await self._set_visibility(msg, 0)

    async def _handle(self, msg: dict[str, Any], tenant: str | None = None) -> None:
        structlog.contextvars.bind_contextvars(service=self.service, message_id=msg["MessageId"])
        receives = int(msg.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            async with self._slots.slot(tenant):  # the tenant's turn (the heartbeat keeps the message)
                await self._handle_in_slot(msg, receives, heartbeat)
        finally:
            heartbeat.cancel()

    async def _handle_in_slot(self, msg: dict[str, Any], receives: int, heartbeat: asyncio.Task[None]) -> None:
        envelope: Envelope[Any] | None = None
        error: Exception | None = None
        try:
            if self.stopping:
                raise _Released
            envelope = self._read(msg)
            outcome = "ignored"
            if envelope is not None:
                structlog.contextvars.bind_contextvars(
                    tenant_id=envelope.tenant_id,
                    correlation_id=str(envelope.correlation_id),
                    event_type=envelope.event_type,
                    event_id=str(envelope.event_id),
                    replay_id=str(envelope.replay_id) if envelope.replay_id else None,
                )
                outcome = await self._process(envelope)
        except EventRefused as refused:
            outcome = "refused"
            count_refused(self.service, refused.event_type)
            log.warning("events.refused", event_type=refused.event_type, source=str(refused.source)[:128],
                        tenant_id=str(refused.tenant_id)[:64], reason=refused.reason)
        except _Released:
            outcome = "released"
        except Exception as exc:
            outcome, error = "failed", exc
            log.exception("message.failed", receive_count=receives, retry_in_s=self._retry_delay(receives))
        finally:
            heartbeat.cancel()  # before settling, so no late extension overrides it
        if outcome == "failed":
            await self._set_visibility(msg, self._retry_delay(receives))
            if envelope is not None and error is not None and receives >= self.spec.max_receives:
                await self._dead_lettered(envelope, error, receives)
        elif outcome == "released":
            await self._set_visibility(msg, 0)
        else:
            await self._delete(msg)
            if outcome not in ("ignored", "refused"):
                log.info(f"message.{outcome}", receive_count=receives)

    def _retry_delay(self, receives: int) -> int:
        """Seconds until a failed message is retried: doubling per receive, at most a timeout."""
        return min(int(self.options.retry_delay_s * 2 ** (receives - 1)), self.visibility_s)

    def _read(self, msg: dict[str, Any]) -> Envelope[Any] | None:
        """The typed envelope, or None when no handler here takes this type and version."""
        try:
            body = json.loads(msg["Body"])
            detail = body["detail"]
            if isinstance(detail, str):
                detail = json.loads(detail)
            key = (detail["event_type"], int(str(detail["schema_version"]).split(".")[0]))
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedMessage(f"not an EventBridge event with an envelope: {exc!r}") from exc
        if key not in self._handlers:
            log.info("message.ignored", event_type=key[0], major=key[1])
            return None
        model, _ = self._handlers[key]
        check_producer(model, body.get("source"), detail)  # before anything trusts the payload
        return Envelope[model].model_validate(detail)  # type: ignore[valid-type]

    async def _process(self, envelope: Envelope[Any]) -> str:
        _, handler = self._handlers[(envelope.event_type, int(envelope.schema_version.split(".")[0]))]
        async with self._inbox.exclusive(envelope.tenant_id) as tx:
            if self.stopping:
                raise _Released
            if await tx.seen(envelope):
                return "duplicate"
            if reason := await skip_reason(self.service, current_connection(), envelope):
                await tx.complete(envelope, [])
                return reason
            results = await handled(self.service, handler, envelope, self.deps)
            await tx.complete(envelope, [self.wrap(r, envelope) for r in results])
        return "handled"

    async def _dead_lettered(self, envelope: Envelope[Any], error: Exception, receives: int) -> None:
        """Last receive failed: SQS moves the message to the DLQ next; say so on the bus
        (MessageDeadLettered, through the outbox, outside the inbox: a redrive must still
        run the handler), so the tenant shows `failed` at this service's stage."""
        from contracts.failures_v1 import SERVICE_STAGES, MessageDeadLettered
        from core.logging import redact

        if self._pool is None or self.service not in SERVICE_STAGES:
            return
        text = redact(None, "", {"error": f"{type(error).__name__}: {error}"})["error"]
        notice = MessageDeadLettered(
            service=self.service, stage=SERVICE_STAGES[self.service], failed_event_type=envelope.event_type,
            failed_event_id=str(envelope.event_id), receives=receives, error=text,
        )
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await add_to_outbox(conn, [self.wrap(notice, envelope)])
            log.warning("message.dead_lettered", receive_count=receives, queue=self.spec.dlq_name)
        except Exception:
            log.exception("message.dead_letter_notice_failed")

    def wrap(self, item: Event | Envelope[Any], cause: Envelope[Any]) -> Envelope[Any]:
        """An emitted event in its envelope: same tenant and correlation, caused by `cause`."""
        if isinstance(item, Envelope):
            return item
        return Envelope.new(item, tenant_id=cause.tenant_id, producer=self.service, cause=cause)

    async def _heartbeat(self, msg: dict[str, Any]) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._sqs.change_message_visibility(
                    QueueUrl=self._url, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=self.visibility_s
                )
            except Exception as exc:
                log.warning("message.heartbeat_failed", error=str(exc))

    async def _delete(self, msg: dict[str, Any]) -> None:
        msg[_SETTLED] = True
        try:
            await self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=msg["ReceiptHandle"])
        except Exception as exc:  # it will come back; the inbox absorbs the duplicate
            log.warning("message.delete_failed", error=str(exc))

    async def _set_visibility(self, msg: dict[str, Any], seconds: int) -> None:
        msg[_SETTLED] = True
        try:
            await self._sqs.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=seconds
            )
        except Exception as exc:
            log.warning("message.visibility_failed", seconds=seconds, error=str(exc))
