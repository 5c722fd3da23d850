"""Tiny Lambda handlers that the local runtime's integration tests run in containers."""
