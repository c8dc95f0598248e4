"""The reloader's four metrics (swaps, swap time, failed releases, app restarts), defined in
core.metrics and served on the runtime's health port at /metrics.

They are kept as plain numbers until /metrics is first asked. prometheus-client (2.7 MB)
and the ssl module it imports (1.3 MB, otherwise hidden in a reloader that reports through
files) are a tenth of an idle tenant's memory (bench/runtime_memory.py), and locally nothing
scrapes a runtime. From the first scrape on, every change goes straight to core.metrics.
"""

from __future__ import annotations

from typing import Any

MAX_PENDING = 1000  # swap times held before a scrape; past it the library loads anyway


class RuntimeMetrics:
    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.swap_seconds: list[float] = []
        self.failed = self.restarts = 0
        self.loaded: Any = None  # core.metrics, once loaded

    def swapped(self, seconds: float) -> None:
        if self.loaded is None and len(self.swap_seconds) < MAX_PENDING:
            self.swap_seconds.append(seconds)
            return
        m = self._load()
        m.SWAPS.labels(self.tenant_id).inc()
        m.SWAP_SECONDS.labels(self.tenant_id).observe(seconds)

    def release_failed(self) -> None:
        if self.loaded is None:
            self.failed += 1
        else:
            self.loaded.RELEASES_FAILED.labels(self.tenant_id).inc()

    def app_restarted(self) -> None:
        if self.loaded is None:
            self.restarts += 1
        else:
            self.loaded.APP_RESTARTS.labels(self.tenant_id).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The /metrics answer: the text and its content type."""
        return self._load().exposition()

    def _load(self) -> Any:
        if self.loaded is None:
            from reloader import allow_tls

            allow_tls()  # prometheus-client imports ssl
            from core import metrics

            for seconds in self.swap_seconds:
                metrics.SWAPS.labels(self.tenant_id).inc()
                metrics.SWAP_SECONDS.labels(self.tenant_id).observe(seconds)
            if self.failed:
                metrics.RELEASES_FAILED.labels(self.tenant_id).inc(self.failed)
            if self.restarts:
                metrics.APP_RESTARTS.labels(self.tenant_id).inc(self.restarts)
            self.swap_seconds, self.failed, self.restarts, self.loaded = [], 0, 0, metrics
        return self.loaded
