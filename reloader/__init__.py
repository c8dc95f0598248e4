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


def hide_platform_packages() -> None:
    """Make PLATFORM_ONLY unimportable in this process (None in sys.modules: an optional
    import falls back as if they were absent). Called by the runtime's entry points (the
    reloader, the app worker, the zygote) before anything imports them; never in-process
    elsewhere, where the platform needs them."""
    for name in PLATFORM_ONLY:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
