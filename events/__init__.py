"""The event layer: envelope transport, outbox/inbox, consumer, topology, replay, DLQs.

Handlers never repeat what lives here (STYLE.md §3).
"""
