"""The data plane: the reloader that runs each tenant's app and swaps releases without
dropping a request, reading releases from the artifact store (artifacts/), and the local
runtime agent (the local stand-in for ECS) that runs one reloader per tenant.

Kept import-free on purpose: the app worker (`reloader.worker`) imports this package and
must not pay for anything it does not use.
"""
