"""Entry point the Pulumi CLI runs for a tenant stack (the provisioner's AWS backend)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from infra.tenant.program import tenant_program  # noqa: E402

tenant_program()
