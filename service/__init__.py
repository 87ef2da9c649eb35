"""The operator-facing side: the HTTP/WebSocket API and console (api/) and the `vigil` command line (cli/)."""
