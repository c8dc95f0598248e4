"""`python -m services.api.main`: the API's consumer (status projection) and outbox relay
through services.runner, with the HTTP server started as its deps (services.api.server)."""

from __future__ import annotations

from services.api.handlers import HANDLERS
from services.api.server import bootstrap
from services.runner import main

if __name__ == "__main__":
    # Every event of every tenant comes here; a handler is a few milliseconds of SQL, but
    # a message holds its slot for the SQS round trips too (receive, heartbeat, delete):
    # with 4 slots a burst of 60 creations left ReleaseActivated waiting ~30 s in the queue.
    main("api", HANDLERS, bootstrap, concurrency=16)
