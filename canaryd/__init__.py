"""canaryd: a progressive-delivery controller for Kubernetes.

Layers (outer depends on inner, never the reverse):
    commands/, api/  ->  runtime/  ->  adapters/ (kube, routers, prometheus)  ->  core/
The sandbox (canaryd.sandbox) is a test bed shipped with the package, like structlog.testing.
"""

__version__ = "0.1.0"
