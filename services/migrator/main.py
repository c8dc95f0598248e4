"""`python -m services.migrator.main`: consume TenantChanged (started by `hostplane up`)."""

from services.migrator.adapters import bootstrap
from services.migrator.handlers import HANDLERS
from services.runner import main

if __name__ == "__main__":
    main("migrator", HANDLERS, bootstrap)
