"""The FastAPI app: deps, errors, schemas, rendering of heat maps, one router per resource (routes/), the console (static/)."""
