"""Releases, owned in one place: the store's layout, readers and writers (store.py); what
the platform does with releases: prune, rollback copies, the spec inside one, the live
source export (releases.py); a tenant's folder as a resource (tenant.py); why a release
must not run (errors.py).

A lower layer: it imports contracts/ and spec/, never services/, hostplane/ or reloader/.
The builder and the migrator write here, the reloader and the API read here.
"""
