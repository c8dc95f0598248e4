"""Pulumi programs for the AWS target: `platform/` (the shared parts, one stack) and
`tenant/` (one `TenantStack` per tenant). See infra/README.md."""
