"""The HTTP API: ingest (Segment-style), management, health and metrics.

:func:`create_app` builds the FastAPI application from settings, a store and a clock;
each group of endpoints is a router in its own module, and every endpoint that needs a
key depends on :data:`flowmail.api.auth.AdminKey` or :data:`flowmail.api.auth.IngestKey`.
"""

from flowmail.api.app import create_app

__all__ = ["create_app"]
