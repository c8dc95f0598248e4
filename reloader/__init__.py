"""The data plane: the reloader that runs each tenant's app and swaps releases without
dropping a request, reading releases from the artifact store (artifacts/), and the
sandbox it runs in. Only what runs inside a tenant's runtime: the local runtime agent
that starts one reloader per tenant lives with the local platform (hostplane.local.agent).

Kept import-free on purpose (sys aside): the app worker (`reloader.worker`) imports this package and
must not pay for anything it does not use.
"""

import sys

# Installed for the platform, not for a runtime's processes, which import them only because
# they are there: structlog.dev imports rich for pretty tracebacks (3.6 MB and 80 modules in
# a process that writes JSON lines); redis-py imports Pulumi's OpenTelemetry SDK for metrics
# nothing collects (≈ 2 MB and ≈ 50 ms of a generated app's start); structlog imports greenlet,
# there for the platform's browser tests (playwright) and absent from the production image,
# so a local reloader measured 0.2 MB more than a deployed one (bench/runtime_memory.py).
PLATFORM_ONLY = ("rich", "opentelemetry", "greenlet")
# asyncio imports ssl whenever it can: 1.3 MB of a reloader (bench/runtime_memory.py), which
# locally speaks plain HTTP on loopback and unix sockets only. The app worker and the zygote
# keep it (apps call out over TLS), and so does a reloader that publishes to the bus (AWS).
TLS = ("ssl",)


def hide_platform_packages(*, tls: bool = True) -> None:
    """Make PLATFORM_ONLY (and TLS unless `tls`) unimportable in this process (None in
    sys.modules: an optional import falls back as if they were absent). Called by the
    runtime's entry points (the reloader, the app worker, the zygote) before anything imports
    them; never in-process elsewhere, where the platform needs them."""
    for name in PLATFORM_ONLY + (() if tls else TLS):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def allow_tls() -> None:
    """Undo `tls=False` for a late import that needs ssl (the metrics library, when a runtime's
    /metrics is first asked). Modules that imported without it keep doing without."""
    for name in TLS:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
