"""Inbound: listener endpoint, notification handling, ingest of send details (flows 3-4)."""
