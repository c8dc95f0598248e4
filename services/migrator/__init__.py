"""Migrator: TenantChanged → the tenant database migrated, then the release marked live."""
