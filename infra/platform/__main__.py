"""Entry point the Pulumi CLI runs (`pulumi up` in infra/platform/)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from infra.platform.program import platform_program  # noqa: E402

platform_program()
