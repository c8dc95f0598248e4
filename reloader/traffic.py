"""Requests the tenant's app served, and the RequestsPerTask metric its autoscaling tracks.

App workers count the responses they complete on the shared socket (health and smoke
requests on the private channel are not traffic) and report their running total over
the control channel; each generation's total only grows, so `RequestCount` adds the
difference: during a hot swap both generations count, a repeated report adds nothing,
and a worker's last report, on drain and on exit, leaves nothing behind.

On AWS (`--events bus`) `RequestsPerTask` publishes once a minute the requests this task
served in that minute, which the service's target-tracking policy averages over its
tasks (infra.tenant.runtime uses the names below). A minute that could not be
published keeps its own timestamp and goes again with the next attempt, up to
MAX_PENDING minutes: summed into a later minute it would read as a traffic spike. Locally
nothing is published; the total shows on /runtime/healthz.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

log = structlog.get_logger(__name__)

METRICS_NAMESPACE = "hostplane/Runtime"  # each tenant publishes under its own: metrics_namespace()
REQUESTS_PER_TASK = "RequestsPerTask"
TENANT_DIMENSION = "TenantId"
PERIOD_S = 60.0  # the scaling target is per minute: one datum per task per minute
MAX_PENDING = 60  # minutes kept while CloudWatch is unreachable; older ones are dropped
PUT_TIMEOUT_S = 20.0


def metrics_namespace(tenant_id: str) -> str:
    """The tenant's own CloudWatch namespace. CloudWatch's only condition key for
    PutMetricData is `cloudwatch:namespace` (none for dimensions), so the tenant task role
    is bound to this namespace: one tenant cannot write another's scaling metric."""
    return f"{METRICS_NAMESPACE}/{tenant_id}"


class RequestCount:
    """Requests served by every generation of this runtime's app, ever."""

    def __init__(self) -> None:
        self.total = 0

    def add(self, served: int) -> None:
        self.total += served


class RequestsPerTask:
    """Once a minute, this task's requests of that minute to CloudWatch; never raises."""

    def __init__(self, tenant_id: str, count: RequestCount, cloudwatch: Callable[[], Any],
                 period: float = PERIOD_S) -> None:
        self.tenant_id, self.count, self.cloudwatch, self.period = tenant_id, count, cloudwatch, period
        self.counted = count.total
        self.pending: list[dict[str, Any]] = []
        self.log = log.bind(tenant_id=tenant_id)

    def close_minute(self, at: datetime | None = None) -> None:
        served, self.counted = self.count.total - self.counted, self.count.total
        self.pending.append({"MetricName": REQUESTS_PER_TASK, "Unit": "Count", "Value": float(served),
                             "Timestamp": at or datetime.now(UTC),
                             "Dimensions": [{"Name": TENANT_DIMENSION, "Value": self.tenant_id}]})
        if len(self.pending) > MAX_PENDING:
            dropped, self.pending = self.pending[:-MAX_PENDING], self.pending[-MAX_PENDING:]
            self.log.warning("requests_metric.dropped", minutes=len(dropped),
                             requests=int(sum(d["Value"] for d in dropped)))

    async def publish(self) -> bool:
        """Send every pending minute in one call; on failure keep them for the next."""
        batch = list(self.pending)
        if not batch:
            return True
        try:
            await asyncio.wait_for(self._put(batch), PUT_TIMEOUT_S)
        except Exception as exc:  # serving goes on; the minutes go again next time
            self.log.warning("requests_metric.publish_failed", error=type(exc).__name__,
                             detail=str(exc)[:200], pending_minutes=len(batch))
            return False
        self.pending = self.pending[len(batch):]
        self.log.debug("requests_metric.published", minutes=len(batch), last_minute=int(batch[-1]["Value"]))
        return True

    async def _put(self, batch: list[dict[str, Any]]) -> None:
        async with self.cloudwatch() as client:
            await client.put_metric_data(Namespace=metrics_namespace(self.tenant_id), MetricData=batch)

    async def run(self) -> None:
        """Until cancelled, on a fixed schedule: a slow publish does not stretch a minute."""
        due = time.monotonic()
        while True:
            due += self.period
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.close_minute()
            await self.publish()


def requests_metric_from(spec: str, tenant_id: str, count: RequestCount) -> RequestsPerTask | None:
    """Published only in AWS mode (`--events bus`), through the one AWS client factory."""
    if spec != "bus":
        return None
    from functools import partial

    from core.aws import aws_client  # aiobotocore is heavy: only when used
    from core.settings import Settings

    return RequestsPerTask(tenant_id, count, partial(aws_client, "cloudwatch", Settings()))
