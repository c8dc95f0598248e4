"""`python -m services.builder.main`: consume TenantProvisioned and AppUpdateRequested
(started by `hostplane up`)."""

from services.builder.adapters import bootstrap
from services.builder.handlers import HANDLERS
from services.runner import main

if __name__ == "__main__":
    main("builder", HANDLERS, bootstrap)
