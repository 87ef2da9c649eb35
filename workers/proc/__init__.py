"""Process plumbing: the worker process base (heartbeats, signals), the supervisor of `vigil up`, redaction of secrets."""
