"""The HTTP surface of `canaryd serve`: health, metrics, and the rollout API."""
