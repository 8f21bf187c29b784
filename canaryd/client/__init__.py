"""A small client for the canaryd HTTP API, and what the `canaryd submit|get|list|...`
commands are built on: `CanarydClient` for the calls, `follow` for an event stream that
survives dropped connections, `render` for one human line per event."""
