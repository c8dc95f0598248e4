"""The app spec as the platform reads it, pure (no I/O, nothing of ours but contracts/): the
relational model a spec maps to (model.py) and the migration planning between two specs
(plan.py). The CLI, the API, the builder and the migrator all import it, so no service
imports another's internals for it. The spec itself (its schema, parsing and limits) is the
published contract in contracts/app_spec.py."""
