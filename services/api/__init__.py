"""The API service: the only entry point. Desired state and the status read model in
PostgreSQL, commands out through the outbox, every event folded into the status."""
