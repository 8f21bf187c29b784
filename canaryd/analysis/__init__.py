"""Analysis: metric templates, PromQL rendering, and the Prometheus provider."""
