"""The HTTP API: ingest (Segment-style), management, health and metrics.

:func:`flowmail.api.app.create_app` builds the FastAPI application from settings, a
store and a clock; each group of endpoints is a router in its own module, and every
endpoint that needs a key depends on :data:`flowmail.api.auth.AdminKey` or
:data:`flowmail.api.auth.IngestKey`. (Nothing is imported here, so that commands that
only need a model or a check do not load the whole application.)
"""
