"""`python -m services.deprovisioner.main`: consume TenantDeletionRequested (started by `hostplane up`)."""

from services.deprovisioner.handlers import HANDLERS
from services.resources.wiring import bootstrap
from services.runner import main

if __name__ == "__main__":
    main("deprovisioner", HANDLERS, bootstrap)
