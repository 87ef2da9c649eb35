"""The HTTP/WebSocket API: `create_app(settings)` builds the FastAPI application."""
