"""`python -m services.api.main`: the API's consumer (status projection) and outbox relay
through services.runner, with the HTTP server started as its deps (services.api.server)."""

from __future__ import annotations

from services.api.handlers import HANDLERS
from services.api.server import start_api
from services.runner import main

if __name__ == "__main__":
    main("api", HANDLERS, start_api)
