"""Tenant-resource adapters shared by the provisioner, the deprovisioner and the orphan
doctor: one place that knows how to ensure and remove a tenant's database and role,
cache user and keys, secret, bucket, runtime registration and artifacts."""
