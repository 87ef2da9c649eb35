"""One module per `vigil` command, each with `register(subparsers)`."""
