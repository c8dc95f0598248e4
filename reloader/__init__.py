"""The data plane: the reloader that runs each tenant's app and swaps releases without
dropping a request, reading releases from the artifact store (artifacts/), and the
sandbox it runs in. Only what runs inside a tenant's runtime: the local runtime agent
that starts one reloader per tenant lives with the local platform (hostplane.local.agent).

Kept import-free on purpose: the app worker (`reloader.worker`) imports this package and
must not pay for anything it does not use.
"""
