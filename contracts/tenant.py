"""Tenant identity as a pydantic field type; the names themselves: contracts.naming."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from contracts.naming import (
    EDGE_MODES,
    RANK,
    RESERVED_TENANT_IDS,
    STATES,
    TENANT_ID_PATTERN,
    TERMINAL,
    EdgeMode,
    InvalidTenantId,
    TenantNames,
    bucket_name,
    tenant_names,
    validate_tenant_id,
)

__all__ = ["EDGE_MODES", "RANK", "RESERVED_TENANT_IDS", "STATES", "TENANT_ID_PATTERN", "TENANT_ID_SCHEMA_PATTERN",
           "TERMINAL", "EdgeMode", "InvalidTenantId", "TenantId", "TenantNames", "bucket_name", "tenant_names",
           "validate_tenant_id"]

# The JSON Schema carries what a pattern can say (ECMA regex, no look-arounds);
# `validate_tenant_id` also refuses '--' and reserved words.
TENANT_ID_SCHEMA_PATTERN = r"^[a-z][a-z0-9-]{0,29}[a-z0-9]$"
TenantId = Annotated[
    str,
    AfterValidator(validate_tenant_id),
    Field(
        json_schema_extra={
            "pattern": TENANT_ID_SCHEMA_PATTERN,
            "not": {"enum": sorted(RESERVED_TENANT_IDS)},
            "description": "DNS label naming the tenant",
        }
    ),
]
