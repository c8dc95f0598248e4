"""Prometheus metrics of every hostplane process, defined once (prometheus-client).

Control-plane services (services.runner): messages handled/failed per event type and a
handler latency histogram (`instrument` wraps each handler), events refused by the
producer check (`count_refused`, events.consumer), the service's queue and DLQ
depth and the outbox lag (`refresh_gauges`, every REFRESH_S), served on `/metrics` by
`serve`. The reloader counts swaps, swap duration, failed releases and app restarts and
serves them on its runtime health port. The edge route count is set by whoever writes the
edge config (router-config: call `set_edge_routes(n)` after each change).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest, start_http_server

log = structlog.get_logger(__name__)
REFRESH_S = 5.0

MESSAGES = Counter("hostplane_messages_total", "Messages handled by a service's consumer, by outcome",
                   ["service", "event_type", "outcome"])
HANDLER_SECONDS = Histogram("hostplane_handler_seconds", "Handler run time per event type",
                            ["service", "event_type"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
EVENTS_REFUSED = Counter("hostplane_events_refused_total",
                         "Events a consumer refused before any handler: not from a declared producer of their type",
                         ["service", "event_type"])
QUEUE_DEPTH = Gauge("hostplane_queue_depth", "Messages in the service's queue (visible + in flight)", ["queue"])
DLQ_DEPTH = Gauge("hostplane_dlq_depth", "Messages in the service's dead-letter queue", ["queue"])
OUTBOX_PENDING = Gauge("hostplane_outbox_pending", "Outbox rows not yet published (whole control database)")
OUTBOX_LAG = Gauge("hostplane_outbox_lag_seconds", "Age of the oldest unpublished outbox row (0 when none)")

SWAPS = Counter("hostplane_reloader_swaps_total", "Releases the reloader made live", ["tenant"])
SWAP_SECONDS = Histogram("hostplane_reloader_swap_seconds", "From a release seen to traffic on it", ["tenant"],
                         buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
RELEASES_FAILED = Counter("hostplane_reloader_releases_failed_total", "Releases refused or reverted", ["tenant"])
APP_RESTARTS = Counter("hostplane_reloader_app_restarts_total", "Live app processes that died and were restarted",
                       ["tenant"])

EDGE_ROUTES = Gauge("hostplane_edge_routes", "Tenant routes configured at the edge")

Handler = Callable[[Any, Any], Awaitable[Any]]


def set_edge_routes(count: int) -> None:
    """For router-config: the number of tenant routes the edge now has."""
    EDGE_ROUTES.set(count)


def count_refused(service: str, event_type: str) -> None:
    """For the consumer: an event refused by the producer check (events.consumer)."""
    EVENTS_REFUSED.labels(service, event_type).inc()


def instrument(service: str, event_type: str, handler: Handler) -> Handler:
    """The handler, counted (handled / failed) and timed per event type."""

    async def counted(envelope: Any, deps: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await handler(envelope, deps)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                MESSAGES.labels(service, event_type, "failed").inc()
            raise
        finally:
            HANDLER_SECONDS.labels(service, event_type).observe(time.perf_counter() - started)
        MESSAGES.labels(service, event_type, "handled").inc()
        return result

    counted.__name__ = getattr(handler, "__name__", "handler")
    return counted


def serve(host: str, port: int) -> tuple[Any, int]:
    """Serve /metrics on host:port (0: any free port) in a daemon thread; (server, port)."""
    server, _thread = start_http_server(port, addr=host)
    return server, server.server_port


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type (for servers that answer /metrics themselves)."""
    return generate_latest(), CONTENT_TYPE_LATEST


async def refresh_gauges(pool: Any, settings: Any, queue: str, dlq: str, interval: float = REFRESH_S) -> None:
    """Keep queue/DLQ depth and outbox lag current until cancelled; failures only log."""
    from core.aws import aws_client

    async with aws_client("sqs", settings) as sqs:
        urls: dict[str, str] = {}
        while True:
            try:
                for name, gauge in ((queue, QUEUE_DEPTH), (dlq, DLQ_DEPTH)):
                    if name not in urls:
                        urls[name] = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
                    attrs = (await sqs.get_queue_attributes(
                        QueueUrl=urls[name],
                        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                    ))["Attributes"]
                    gauge.labels(queue).set(int(attrs.get("ApproximateNumberOfMessages", 0))
                                            + int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)))
                row = await pool.fetchrow(
                    "SELECT count(*) AS pending, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) AS lag "
                    "FROM outbox WHERE published_at IS NULL")
                OUTBOX_PENDING.set(row["pending"])
                OUTBOX_LAG.set(float(row["lag"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("metrics.refresh_failed", error=type(exc).__name__)
            await asyncio.sleep(interval)
