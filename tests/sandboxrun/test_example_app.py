"""The example application's YAML describes a consistent stable/canary podinfo setup."""

from __future__ import annotations

from typing import Any

from canaryd.sandbox import example_app


def by_kind_and_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_namespace_is_created_before_anything_in_it() -> None:
    docs = example_app.load_manifests()
    assert docs[0]["kind"] == "Namespace" and docs[0]["metadata"]["name"] == "demo"
    assert all(d["metadata"]["namespace"] == "demo" for d in docs[1:])


def test_deployments_select_their_own_pods_and_carry_mesh_annotations() -> None:
    objs = by_kind_and_name(example_app.load_manifests())
    for track in ("stable", "canary"):
        deployment = objs[("Deployment", f"podinfo-{track}")]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        # No version label: the mesh labels requests with the image tag, release by release.
        assert labels == {"app": "podinfo", "track": track}
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert deployment["spec"]["replicas"] == 2
        assert deployment["metadata"]["annotations"] == {
            "sandbox.canaryd.io/error-ratio": "0",
            "sandbox.canaryd.io/latency-p50-ms": "20",
            "sandbox.canaryd.io/latency-p99-ms": "80",
        }
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.startswith("ghcr.io/stefanprodan/podinfo:6.")
        service = objs[("Service", f"podinfo-{track}")]
        assert service["spec"]["selector"] == {"app": "podinfo", "track": track}


def test_virtualservice_starts_with_all_traffic_on_stable() -> None:
    objs = by_kind_and_name(example_app.load_manifests())
    vs = objs[("VirtualService", "podinfo")]
    assert vs["spec"]["hosts"] == ["podinfo"]
    [route] = vs["spec"]["http"]
    assert route["name"] == "primary"
    weights = {r["destination"]["subset"]: r["weight"] for r in route["route"]}
    assert weights == {"stable": 100, "canary": 0}
    subsets = objs[("DestinationRule", "podinfo")]["spec"]["subsets"]
    assert {s["name"]: s["labels"] for s in subsets} == {
        "stable": {"track": "stable"},
        "canary": {"track": "canary"},
    }


def test_rps_override_changes_only_the_service_annotation() -> None:
    default = by_kind_and_name(example_app.load_manifests())
    faster = by_kind_and_name(example_app.load_manifests(rps=200))
    annotation = "sandbox.canaryd.io/rps"
    assert default[("Service", "podinfo")]["metadata"]["annotations"][annotation] == "50"
    assert faster[("Service", "podinfo")]["metadata"]["annotations"][annotation] == "200"
    assert example_app.load_manifests(rps=2.5)[1]["metadata"]["annotations"][annotation] == "2.5"
    del default[("Service", "podinfo")], faster[("Service", "podinfo")]
    assert default == faster
