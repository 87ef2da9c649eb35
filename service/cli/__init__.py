"""The `vigil` command line: the entry point (main.py) and one module per command (commands/)."""
