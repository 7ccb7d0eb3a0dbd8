"""Composition root: settings, the ASGI app, auth, per-request context, pub/sub and the CLI."""
