"""Data access: cameras, labels, model registry, alerts, a camera's buffered media. Routes and workers read and write Redis through here."""
