"""One `TenantStack` per tenant (a Pulumi stack each, run by the provisioner's AWS backend)."""
