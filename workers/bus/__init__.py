"""The Redis contract (every key and stream: keys.py; every message schema: schemas.py) and the connection (embedded or shared server)."""
