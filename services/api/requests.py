"""The API's request bodies (pydantic models; the OpenAPI document's schemas). Their own
module so the dashboard validates a form with exactly the API's rules without importing
the routes that mount it."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from contracts.fields import IdleAfter
from contracts.tenant import EdgeMode, TenantId
from services.api.commands import check_domain

EVENT_TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_.]{0,63}$"  # catalog names: no NUL, no control characters


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
