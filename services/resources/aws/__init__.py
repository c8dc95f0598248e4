"""The provisioner's AWS backend: tenant resources through one Pulumi stack per tenant
(infra/tenant), behind the same adapter interface as the local drivers.
Selected with HOSTPLANE_TARGET=aws (services/resources/wiring.py)."""
