"""Adapters: every conversation with the outside world (Kubernetes, Prometheus) lives here."""
