"""The processes of a site (ingest, inference, retraining, notify), their settings, the Redis contract and data access."""
