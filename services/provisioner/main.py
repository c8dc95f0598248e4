"""`python -m services.provisioner.main`: consume TenantRequested and IdleAfterChangeRequested
(started by `hostplane up`)."""

from services.provisioner.handlers import HANDLERS
from services.resources.wiring import bootstrap
from services.runner import main

if __name__ == "__main__":
    main("provisioner", HANDLERS, bootstrap, concurrency=12)  # steps wait on I/O (emulator, PostgreSQL)
