"""`python -m services.router_config.main`: consume TenantProvisioned, DomainChangeRequested
and TenantDeletionRequested (started by `hostplane up`)."""

from services.router_config.handlers import HANDLERS
from services.router_config.service import bootstrap
from services.runner import main

if __name__ == "__main__":
    main("router-config", HANDLERS, bootstrap)
