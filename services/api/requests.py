"""The API's request bodies (pydantic models; the OpenAPI document's schemas). Their own
module so the dashboard validates a form with exactly the API's rules without importing
the routes that mount it."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from contracts.fields import CustomDomain, IdleAfter
from contracts.tenant import EdgeMode, TenantId

EVENT_TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_.]{0,63}$"  # catalog names: no NUL, no control characters
# Names that are never a tenant's to claim: the platform's own and special-use domains.
RESERVED_DOMAIN_SUFFIXES = ("localhost", "local", "internal", "invalid", "arpa", "home.arpa", "onion")
_DOMAIN = TypeAdapter(CustomDomain)


def check_domain(value: str) -> str:
    """A custom domain the tenant may claim, normalised (lowercase, no trailing dot)."""
    domain = value.strip().lower().removesuffix(".")
    if not domain.isascii():
        raise ValueError(f"custom domain {value!r} must be ASCII; write international names in punycode (xn--...)")
    if "*" in domain:
        raise ValueError(f"custom domain {value!r}: wildcards are not accepted; name one host")
    try:
        _DOMAIN.validate_python(domain)
    except ValidationError:
        raise ValueError(
            f"custom domain {value!r} is not a fully qualified host name: labels of letters, digits and "
            "inner hyphens (at most 63 characters each), separated by dots, e.g. shop.example.com"
        ) from None
    if re.fullmatch(r"[0-9.]+", domain):
        raise ValueError(f"custom domain {value!r} is an IP address; give a host name")
    if any(domain == s or domain.endswith("." + s) for s in RESERVED_DOMAIN_SUFFIXES):
        raise ValueError(f"custom domain {value!r} is under a reserved suffix "
                         f"({', '.join(RESERVED_DOMAIN_SUFFIXES)}); use a domain you own")
    return domain


class DeploySource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_zip: str = Field(description="The source tree (app.py, appkit/, spec.json, static/) as a base64 zip")
    allow_destructive: bool = False


AppSource = Annotated[
    Any,
    Field(description="The app spec: YAML or JSON text, or the spec as a JSON object "
                      "(schema: contracts/app_spec.schema.json, urn:hostplane:app-spec:1)",
          json_schema_extra={"anyOf": [{"type": "string"}, {"type": "object"}]}),
]


StaticZip = Annotated[str | None, Field(
    default=None, description="The spec's static folder as a base64 zip of static/... files "
                              "(served at /static/<path>); `hostplane tenant create/update` sends it")]


class CreateTenant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: TenantId
    app: AppSource
    domain: Annotated[str, AfterValidator(check_domain)] | None = Field(
        default=None, description="Custom domain the tenant owns, e.g. shop.example.com")
    static_zip: StaticZip = None
    edge: EdgeMode | None = Field(
        default=None, description="Where the tenant's traffic enters on the AWS target: its own CloudFront "
                                  "distribution ('dedicated') or a tenant of the platform's shared one ('pooled'); "
                                  "null: the installation's default. Locally every tenant is behind the one edge.")
    idle_after_s: IdleAfter | None = Field(
        default=None, description="Scale to zero: seconds without a request after which the tenant's runtime is "
                                  "stopped until its next request (held, not refused, while it wakes); 0: always on; "
                                  "null: the platform's default (HOSTPLANE_SCALE_TO_ZERO_AFTER)")


class UpdateApp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: AppSource
    allow_destructive: bool = Field(default=False, description="Accept migrations that drop data")
    static_zip: StaticZip = None


class ChangeDomain(BaseModel):
    model_config = ConfigDict(extra="forbid")
    domain: Annotated[str, AfterValidator(check_domain)] | None = Field(
        ..., description="The new custom domain, or null to remove it")


class ChangeIdleAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    idle_after_s: IdleAfter | None = Field(
        ..., description="Scale to zero: seconds without a request after which the tenant's runtime is stopped "
                         "until its next request; 0: always on; null: the platform's default "
                         "(HOSTPLANE_SCALE_TO_ZERO_AFTER)")


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: int | None = Field(default=None, ge=1, description="The retained release to serve again; "
                                                            "null: the release before the live one")


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str | None = Field(default=None, pattern=EVENT_TYPE_PATTERN, description="Only events of this type")
    since: AwareDatetime | None = Field(default=None, description="Only events at or after this time")
