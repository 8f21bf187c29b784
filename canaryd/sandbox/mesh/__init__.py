"""A simulated service mesh: synthetic traffic routed the way Istio/Linkerd would route it.

The mesh reads Services, Deployments and traffic objects (VirtualService, DestinationRule,
HTTPRoute, TrafficSplit) from a Kubernetes API, sends each Service annotated
`sandbox.canaryd.io/rps` that many requests per second, and exports the Istio and Linkerd
proxy metrics a real Prometheus scrapes. Workload behaviour comes from Deployment
annotations: `sandbox.canaryd.io/error-ratio`, `sandbox.canaryd.io/latency-p50-ms`,
`sandbox.canaryd.io/latency-p99-ms`.

Layers: `topology` (pure routing) -> `traffic` (pure counters) -> `exporter` (collector)
-> `mesh` (kubernetes_asyncio watches, tick task, aiohttp /metrics).
"""

from canaryd.sandbox.mesh.mesh import Mesh

__all__ = ["Mesh"]
