"""The app spec as the platform reads it, pure (no I/O; nothing of ours but contracts/):
text to a checked spec with every problem at its path (load.py, problems.py), the
relational model a spec maps to (model.py), the migration plan between two specs
(plan.py), and the rules and limits of source and static-file zips (source.py). The CLI,
the API, the builder and the migrator all import it, so no service imports another's
internals for it. The spec's schema itself is the published contract in contracts/app_spec.py."""
