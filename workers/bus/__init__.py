"""The Redis contract (every key, stream and message schema: keys.py) and the connection (embedded or shared server)."""
