"""In-process stand-ins for the systems canaryd talks to: a Kubernetes API server and friends."""
