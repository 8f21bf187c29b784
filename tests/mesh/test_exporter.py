"""The exporter's text output, parsed back with prometheus_client's own parser."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from canaryd.sandbox.mesh import exporter, topology, traffic

WEB = topology.ServiceRef("shop", "web", 8080)
LABELS = (("app", "web"), ("version", "v2"))


def scrape(*flows: topology.Flow, rps: float = 100, seconds: float = 10) -> dict[str, list[Sample]]:
    model = traffic.TrafficModel(rng=random.Random(11))  # noqa: S311 -- simulation
    plan = [topology.ServiceRoutes(WEB, rps, "virtualservice", flows)]
    for _ in range(round(seconds / 0.25)):
        model.advance(plan, 0.25)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter.MeshCollector(lambda: list(model.counters.values())))
    text = generate_latest(registry).decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def canary(error_ratio: float = 0.0) -> topology.Workload:
    return topology.Workload("shop", "web-canary", LABELS, error_ratio, 20, 80)


def total(samples: list[Sample], name: str, **match: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in match.items())
    )


def test_istio_requests_carry_destination_labels_from_objects() -> None:
    families = scrape(topology.Flow(WEB, WEB, canary(), 1.0))
    samples = families["istio_requests"]
    dest = [s for s in samples if s.labels["reporter"] == "destination"]
    assert len(dest) == 1
    labels = dest[0].labels
    assert dest[0].name == "istio_requests_total"
    assert labels["destination_workload"] == "web-canary"
    assert labels["destination_workload_namespace"] == "shop"
    assert labels["destination_service"] == "web.shop.svc.cluster.local"
    assert labels["destination_service_name"] == "web"
    assert labels["destination_service_namespace"] == "shop"
    assert labels["destination_app"] == "web"
    assert labels["destination_version"] == "v2"
    assert labels["destination_canonical_service"] == "web"
    assert labels["destination_canonical_revision"] == "v2"
    assert labels["response_code"] == "200"
    assert labels["response_flags"] == "-"
    assert labels["source_workload"] == "unknown"
    assert labels["connection_security_policy"] == "mutual_tls"
    source = total(samples, "istio_requests_total", reporter="source")
    assert source == dest[0].value == pytest.approx(1000, rel=0.1)


def test_errors_show_as_500_and_success_rate_matches_error_ratio() -> None:
    samples = scrape(topology.Flow(WEB, WEB, canary(0.05), 1.0), rps=1000)["istio_requests"]
    ok = total(samples, "istio_requests_total", reporter="destination", response_code="200")
    failed = total(samples, "istio_requests_total", reporter="destination", response_code="500")
    assert ok / (ok + failed) == pytest.approx(0.95, abs=0.005)


def test_istio_histogram_is_well_formed() -> None:
    samples = scrape(topology.Flow(WEB, WEB, canary(), 1.0))["istio_request_duration_milliseconds"]
    dest = [s for s in samples if s.labels.get("reporter") == "destination"]
    buckets = [s for s in dest if s.name.endswith("_bucket")]
    assert [b.labels["le"] for b in buckets][:3] == ["0.5", "1", "5"]  # as Envoy prints them
    assert buckets[-1].labels["le"] == "+Inf"
    assert len(buckets) == len(traffic.ISTIO_BUCKETS_MS) + 1
    values = [b.value for b in buckets]
    assert values == sorted(values)
    count = total(dest, "istio_request_duration_milliseconds_count")
    assert values[-1] == count > 0
    assert total(dest, "istio_request_duration_milliseconds_sum") / count == pytest.approx(
        traffic.LatencyProfile(20, 80).mean()
    )


def test_unavailable_requests_are_503_from_the_source_only() -> None:
    samples = scrape(topology.Flow(WEB, WEB, None, 1.0))
    istio = samples["istio_requests"]
    assert {s.labels["reporter"] for s in istio} == {"source"}
    assert {(s.labels["response_code"], s.labels["response_flags"]) for s in istio} == {
        ("503", "UH")
    }
    assert {s.labels["destination_workload"] for s in istio} == {"unknown"}
    assert samples["request"] == [] and samples["response"] == []


def test_linkerd_series_have_pod_labels_and_classification() -> None:
    families = scrape(topology.Flow(WEB, WEB, canary(0.1), 1.0), rps=500)
    (request,) = families["request"]
    assert request.name == "request_total"
    assert request.labels == {
        "authority": "web.shop.svc.cluster.local:8080",
        "direction": "inbound",
        "tls": "true",
        "namespace": "shop",
        "pod": "web-canary-sandbox",
        "deployment": "web-canary",
    }
    responses = families["response"]
    by_class = {s.labels["classification"]: s for s in responses}
    assert by_class["success"].labels["status_code"] == "200"
    assert by_class["failure"].labels["status_code"] == "500"
    assert by_class["success"].value + by_class["failure"].value == request.value
    latency = families["response_latency_ms"]
    buckets = [
        s
        for s in latency
        if s.name == "response_latency_ms_bucket" and s.labels["status_code"] == "200"
    ]
    assert len(buckets) == len(traffic.LINKERD_BUCKETS_MS) + 1
    assert buckets[-1].value == by_class["success"].value


def test_flows_with_identical_labels_are_summed() -> None:
    first = topology.Flow(WEB, WEB, canary(), 0.5)
    other_caller = topology.Flow(topology.ServiceRef("shop", "web-alias", 8080), WEB, canary(), 0.5)
    samples = scrape(first, other_caller)["istio_requests"]
    assert len([s for s in samples if s.labels["reporter"] == "destination"]) == 1



def test_a_weight_zero_workload_exports_zero_series_before_traffic() -> None:
    """So that the first rate() window after a traffic shift counts every request."""
    import random

    from canaryd.sandbox.mesh import exporter, topology, traffic
    from tests.mesh.objects import deployment, destination_rule, service, virtual_service

    primary = deployment("web-primary", {"app": "web", "version": "v1"})
    canary = deployment("web-canary", {"app": "web", "version": "v2"},
                        annotations={"sandbox.canaryd.io/error-ratio": "0.05"})
    subsets = destination_rule("web", "web", {"v1": {"version": "v1"}, "v2": {"version": "v2"}})
    http = [{"route": [{"destination": {"host": "web", "subset": "v1"}, "weight": 100},
                       {"destination": {"host": "web", "subset": "v2"}, "weight": 0}]}]
    snap = topology.Snapshot(
        services=(service("web", {"app": "web"}, rps=100),), deployments=(primary, canary),
        virtual_services=(virtual_service("web", ["web"], http),), destination_rules=(subsets,),
    )
    model = traffic.TrafficModel(rng=random.Random(1))  # noqa: S311 (simulation noise)
    model.advance(topology.compute_routes(snap).values(), 1.0)
    collector = exporter.MeshCollector(lambda: list(model.counters.values()))
    samples = {
        (s.labels["destination_workload"], s.labels["response_code"]): s.value
        for m in collector.collect() if m.name == "istio_requests"
        for s in m.samples
        if s.labels.get("reporter") == "destination" and s.name.endswith("_total")
    }
    assert samples[("web-canary", "200")] == 0
    assert samples[("web-canary", "500")] == 0
    assert samples[("web-primary", "200")] > 0


def test_a_pod_without_a_version_label_is_labelled_with_its_image_tag() -> None:
    dep = {"metadata": {"name": "web", "namespace": "shop"},
           "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"image": "ghcr.io/o/web:6.8.0"}]}}}}
    workload = topology.workload_from_deployment(dep)
    assert workload.image_tag == "6.8.0"
    families = scrape(topology.Flow(WEB, WEB, workload, 1.0))
    dest = [s for s in families["istio_requests"] if s.labels["reporter"] == "destination"]
    assert {s.labels["destination_version"] for s in dest} == {"6.8.0"}
    assert {s.labels["destination_canonical_revision"] for s in dest} == {"6.8.0"}
    assert topology.image_tag("web") == "latest"
    assert topology.image_tag("localhost:5000/web") == "latest"
    assert topology.image_tag("web@sha256:" + "ab" * 32) == "ab" * 6
