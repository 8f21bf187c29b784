"""One module per `canaryd` subcommand; each exposes `register(subparsers)`."""
