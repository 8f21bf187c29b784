"""Where a plain synthetic request goes: routing computed from snapshots of API objects.

Pure: every function takes plain dicts (as the API server serves them) and returns frozen
dataclasses. No I/O, no clock. The request being routed is always `GET /` with no special
headers, sent by an unnamed mesh client to each Service annotated `sandbox.canaryd.io/rps`.

Precedence per called Service, as Istio / Linkerd / kube-proxy would route it:
  1. Istio VirtualService naming the Service in `hosts` (+ DestinationRule subsets);
  2. HTTPRoute (gateway.networking.k8s.io or policy.linkerd.io) with a Service parentRef;
  3. SMI TrafficSplit whose `spec.service` is the Service;
  4. kube-proxy: the Service's own selector.
A destination Service's share is split across the Deployments whose pod template labels
include its selector (and subset labels), in proportion to `status.availableReplicas`.

Unavailable traffic: a share whose destination has no available replicas (or no matching
Deployment, or a route whose weights are all 0) becomes a Flow with `workload=None`. The
traffic model counts those requests as 503s seen only by the calling side (Istio
`reporter="source"`, `response_flags="UH"`); no workload ever sees them. A matching route
that has no destinations at all (redirect, direct response), or a VirtualService/HTTPRoute
none of whose entries match (Envoy: 404), produces no flows: nothing is counted.

Not modelled: VirtualService `gateways`/`exportTo`, delegate VSs, Gateway API precedence
rules (the first matching rule wins), Endpoints of selector-less Services.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

RPS_ANNOTATION = "sandbox.canaryd.io/rps"
ERROR_RATIO_ANNOTATION = "sandbox.canaryd.io/error-ratio"
LATENCY_P50_ANNOTATION = "sandbox.canaryd.io/latency-p50-ms"
LATENCY_P99_ANNOTATION = "sandbox.canaryd.io/latency-p99-ms"
DEFAULT_P50_MS = 20.0
DEFAULT_P99_MS = 80.0
CLUSTER_DOMAIN = "cluster.local"

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class ServiceRef:
    namespace: str
    name: str
    port: int | None = None

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"


@dataclass(frozen=True)
class Workload:
    """A Deployment as seen by the mesh: identity, telemetry labels, behaviour knobs."""

    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    error_ratio: float = 0.0
    p50_ms: float = DEFAULT_P50_MS
    p99_ms: float = DEFAULT_P99_MS
    image_tag: str = ""  # of its first container: the version when no label names one

    def label(self, *keys: str, default: str = "unknown") -> str:
        found = dict(self.labels)
        for key in keys:
            if found.get(key):
                return found[key]
        return default


@dataclass(frozen=True)
class Flow:
    """A share of a called Service's requests that reaches one workload (or none)."""

    service: ServiceRef  # the Service the client called
    destination: ServiceRef | None  # the Service the route resolved to
    workload: Workload | None  # None: no available endpoint, requests fail with 503
    share: float


@dataclass(frozen=True)
class ServiceRoutes:
    service: ServiceRef
    rps: float
    via: str  # "virtualservice" | "httproute" | "trafficsplit" | "selector"
    flows: tuple[Flow, ...]


@dataclass(frozen=True)
class Snapshot:
    """Plain dict objects, as listed from the API server. Order does not matter."""

    services: tuple[Obj, ...] = ()
    deployments: tuple[Obj, ...] = ()
    virtual_services: tuple[Obj, ...] = ()
    destination_rules: tuple[Obj, ...] = ()
    http_routes: tuple[Obj, ...] = ()
    traffic_splits: tuple[Obj, ...] = ()


def _meta(obj: Obj) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _spec(obj: Obj) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _key(obj: Obj) -> tuple[str, str]:
    meta = _meta(obj)
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def _age_order(obj: Obj) -> tuple[str, str, str]:
    # Conflicting routes: the oldest wins (Gateway API rule; Istio's merge is unspecified).
    ns, name = _key(obj)
    return str(_meta(obj).get("creationTimestamp") or ""), ns, name


def _float(value: Any, default: float) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return result if result == result and result not in (float("inf"), float("-inf")) else default


def _weight(value: Any, default: float) -> float:
    """An integer weight, or an SMI v1alpha1 quantity such as "500m"."""
    if isinstance(value, str) and value.endswith("m"):
        return max(0.0, _float(value[:-1], default * 1000) / 1000)
    return max(0.0, _float(value, default))


def resolve_host(host: str, namespace: str) -> tuple[str, str] | None:
    """(namespace, name) of the Service a mesh host names; short names are relative."""
    parts = host.split(".")
    if len(parts) == 1:
        return namespace, parts[0]
    if len(parts) == 2:
        return parts[1], parts[0]
    if parts[2] == "svc" and (len(parts) == 3 or ".".join(parts[3:]) == CLUSTER_DOMAIN):
        return parts[1], parts[0]
    return None


def workload_from_deployment(obj: Obj) -> Workload:
    ns, name = _key(obj)
    annotations = _meta(obj).get("annotations") or {}
    template_meta = (_spec(obj).get("template") or {}).get("metadata") or {}
    labels = template_meta.get("labels") or {}
    p50 = max(0.001, _float(annotations.get(LATENCY_P50_ANNOTATION), DEFAULT_P50_MS))
    p99 = max(p50, _float(annotations.get(LATENCY_P99_ANNOTATION), max(DEFAULT_P99_MS, p50)))
    containers = ((_spec(obj).get("template") or {}).get("spec") or {}).get("containers") or []
    image = str(containers[0].get("image") or "") if containers else ""
    return Workload(
        namespace=ns,
        name=name,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        error_ratio=min(1.0, max(0.0, _float(annotations.get(ERROR_RATIO_ANNOTATION), 0.0))),
        p50_ms=p50,
        p99_ms=p99,
        image_tag=image_tag(image),
    )


def image_tag(image: str) -> str:
    """"6.8.0" of "ghcr.io/org/app:6.8.0" (a digest's first 12 hex digits; "latest" if
    untagged)."""
    if "@" in image:
        return image.rsplit(":", 1)[-1][:12]
    name = image.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[1] if ":" in name else "latest"


def _available(obj: Obj) -> float:
    status = obj.get("status") or {}
    return max(0.0, _float(status.get("availableReplicas"), 0.0))


class _Index:
    """Lookups over one snapshot, built once per topology computation."""

    def __init__(self, snap: Snapshot) -> None:
        self.services = {_key(s): s for s in snap.services}
        self.deployments_by_ns: dict[str, list[Obj]] = {}
        for dep in snap.deployments:
            self.deployments_by_ns.setdefault(_key(dep)[0], []).append(dep)
        self.destination_rules = sorted(snap.destination_rules, key=_age_order)

    def service_ref(self, ns: str, name: str) -> ServiceRef:
        ports = _spec(self.services.get((ns, name), {})).get("ports") or []
        port = ports[0].get("port") if ports and isinstance(ports[0], Mapping) else None
        return ServiceRef(ns, name, int(port) if isinstance(port, int) else None)

    def subset_labels(self, ns: str, name: str, subset: str) -> dict[str, str] | None:
        """Labels of a DestinationRule subset; the service's own namespace is preferred."""
        candidates = [
            dr
            for dr in self.destination_rules
            if resolve_host(str(_spec(dr).get("host") or ""), _key(dr)[0]) == (ns, name)
        ]
        candidates.sort(key=lambda dr: _key(dr)[0] != ns)
        for dr in candidates:
            for sub in _spec(dr).get("subsets") or []:
                if sub.get("name") == subset:
                    return {str(k): str(v) for k, v in (sub.get("labels") or {}).items()}
        return None

    def endpoints(
        self, ns: str, name: str, extra: Mapping[str, str] | None = None
    ) -> list[tuple[Workload, float]]:
        """Workloads behind a Service (selector narrowed by `extra`), share by availability."""
        svc = self.services.get((ns, name))
        selector = _spec(svc).get("selector") if svc is not None else None
        if not selector:
            return []
        wanted = {**{str(k): str(v) for k, v in selector.items()}, **(extra or {})}
        # Deployments with nothing available get no share (no ready endpoints).
        matched: list[tuple[Obj, float]] = []
        for dep in self.deployments_by_ns.get(ns, []):
            template_meta = (_spec(dep).get("template") or {}).get("metadata") or {}
            labels = template_meta.get("labels") or {}
            if all(k in labels and str(labels[k]) == v for k, v in wanted.items()) and (
                _available(dep) > 0
            ):
                matched.append((dep, _available(dep)))
        total = sum(avail for _, avail in matched)
        return [(workload_from_deployment(dep), avail / total) for dep, avail in matched]


def _string_match(spec: Any, value: str) -> bool:
    """Istio StringMatch {exact|prefix|regex} against a value."""
    if not isinstance(spec, Mapping):
        return False
    if "exact" in spec:
        return bool(spec["exact"] == value)
    if "prefix" in spec:
        return value.startswith(str(spec["prefix"]))
    if "regex" in spec:
        try:
            return re.fullmatch(str(spec["regex"]), value) is not None
        except re.error:
            return False
    return True  # an empty StringMatch matches anything


def _istio_match(match: Any) -> bool:
    """Does one HTTPMatchRequest accept `GET /` without headers?"""
    if not isinstance(match, Mapping):
        return False
    for field, value in match.items():
        if field in ("name", "ignoreUriCase", "withoutHeaders"):
            continue  # withoutHeaders: a plain request has none of them
        if field == "uri" and _string_match(value, "/"):
            continue
        if field == "method" and _string_match(value, "GET"):
            continue
        if field in ("headers", "queryParams") and not value:
            continue
        return False  # headers, query params, authority, ports, source labels...
    return True


def _gateway_match(match: Any) -> bool:
    """Does one Gateway API HTTPRouteMatch accept `GET /` without headers?"""
    if not isinstance(match, Mapping):
        return False
    path = match.get("path") or {}
    kind, value = path.get("type", "PathPrefix"), str(path.get("value", "/"))
    path_ok = {
        "PathPrefix": value.rstrip("/") == "",
        "Exact": value == "/",
        "RegularExpression": _regex_full(value, "/"),
    }.get(kind, False)
    method_ok = match.get("method") in (None, "GET")
    return path_ok and method_ok and not match.get("headers") and not match.get("queryParams")


def _regex_full(pattern: str, value: str) -> bool:
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return False


Destination = tuple[tuple[str, str], float, Mapping[str, str] | None]
"""(destination service key, relative weight, extra pod labels; None = unknown subset)."""


def _weighted_flows(
    index: _Index, called: ServiceRef, destinations: Iterable[Destination]
) -> tuple[Flow, ...]:
    """Turn weighted destinations into flows whose shares sum to 1."""
    dests = [(svc, w, extra) for svc, w, extra in destinations if w >= 0]
    total = sum(w for _, w, _ in dests)
    if total <= 0:  # every weight 0 (or no usable backend): the proxy answers 503 itself
        return (Flow(called, None, None, 1.0),)
    flows: list[Flow] = []
    for (ns, name), weight, extra in dests:
        share = weight / total
        dest_ref = index.service_ref(ns, name)
        # An unknown subset has no Envoy cluster: the same 503 as no endpoints.
        backends = index.endpoints(ns, name, extra) if extra is not None else []
        if not backends:
            if share > 0:
                flows.append(Flow(called, dest_ref, None, share))
            continue
        # Weight-0 destinations stay as zero-share flows: their series then exist (at 0)
        # before traffic arrives, so the first rate() window after a shift counts every
        # request (Prometheus 2.x ignores the first sample of a series that appears mid-way).
        flows.extend(Flow(called, dest_ref, wl, share * part) for wl, part in backends)
    return tuple(flows)


def _via_virtual_service(index: _Index, vs: Obj, called: ServiceRef) -> tuple[Flow, ...]:
    vs_ns = _key(vs)[0]
    for http in _spec(vs).get("http") or []:
        matches = http.get("match")
        if matches and not any(_istio_match(m) for m in matches):
            continue
        routes = http.get("route") or []
        dests: list[Destination] = []
        for route in routes:
            dest = route.get("destination") or {}
            target = resolve_host(str(dest.get("host") or ""), vs_ns)
            # Istio: a lone destination without weight takes everything.
            weight = _weight(route.get("weight"), 100.0 if len(routes) == 1 else 0.0)
            if target is None:
                continue  # an external host: not a workload in this mesh
            subset = dest.get("subset")
            extra = index.subset_labels(*target, str(subset)) if subset else {}
            dests.append((target, weight, extra))
        # No route[] (redirect, direct response): the request never reaches a workload.
        return _weighted_flows(index, called, dests) if routes else ()
    return ()  # no http entry matched: Envoy answers 404 NR, nothing reaches a workload


def _parent_names_service(route: Obj, called: ServiceRef) -> bool:
    route_ns = _key(route)[0]
    for parent in _spec(route).get("parentRefs") or []:
        if (
            parent.get("kind") == "Service"
            and parent.get("group", "core") in ("", "core")
            and parent.get("name") == called.name
            and parent.get("namespace", route_ns) == called.namespace
        ):
            return True
    return False


def _via_http_route(index: _Index, route: Obj, called: ServiceRef) -> tuple[Flow, ...]:
    route_ns = _key(route)[0]
    for rule in _spec(route).get("rules") or [{}]:
        matches = rule.get("matches")
        if matches and not any(_gateway_match(m) for m in matches):
            continue
        refs = rule.get("backendRefs") or []
        dests: list[Destination] = [
            (
                (str(ref.get("namespace", route_ns)), str(ref.get("name"))),
                _weight(ref.get("weight"), 1.0),
                {},
            )
            for ref in refs
            if ref.get("kind", "Service") == "Service" and ref.get("group", "") in ("", "core")
        ]
        return _weighted_flows(index, called, dests) if refs else ()
    return ()  # no rule matched: 404, nothing reaches a workload


def _via_traffic_split(index: _Index, split: Obj, called: ServiceRef) -> tuple[Flow, ...]:
    ns = _key(split)[0]
    dests: list[Destination] = [
        ((ns, str(b.get("service"))), _weight(b.get("weight"), 0.0), {})
        for b in _spec(split).get("backends") or []
    ]
    return _weighted_flows(index, called, dests)


def compute_routes(snap: Snapshot) -> dict[tuple[str, str], ServiceRoutes]:
    """Routing of every Service with an rps annotation, keyed by (namespace, name)."""
    index = _Index(snap)
    virtual_services = sorted(snap.virtual_services, key=_age_order)
    http_routes = sorted(snap.http_routes, key=_age_order)
    traffic_splits = sorted(snap.traffic_splits, key=_age_order)
    result: dict[tuple[str, str], ServiceRoutes] = {}
    for svc in snap.services:
        annotations = _meta(svc).get("annotations") or {}
        rps = _float(annotations.get(RPS_ANNOTATION), -1.0)
        if rps < 0:
            continue
        ns, name = _key(svc)
        called = index.service_ref(ns, name)
        routed = _route_service(index, called, virtual_services, http_routes, traffic_splits)
        result[(ns, name)] = ServiceRoutes(called, rps, routed[0], routed[1])
    return result


def _route_service(
    index: _Index,
    called: ServiceRef,
    virtual_services: list[Obj],
    http_routes: list[Obj],
    traffic_splits: list[Obj],
) -> tuple[str, tuple[Flow, ...]]:
    for vs in virtual_services:
        vs_ns = _key(vs)[0]
        hosts = [resolve_host(str(h), vs_ns) for h in _spec(vs).get("hosts") or []]
        if (called.namespace, called.name) in hosts:
            return "virtualservice", _via_virtual_service(index, vs, called)
    for route in http_routes:
        if _parent_names_service(route, called):
            return "httproute", _via_http_route(index, route, called)
    for split in traffic_splits:
        if _key(split)[0] == called.namespace and _spec(split).get("service") == called.name:
            return "trafficsplit", _via_traffic_split(index, split, called)
    own: Destination = ((called.namespace, called.name), 1.0, {})
    return "selector", _weighted_flows(index, called, [own])
