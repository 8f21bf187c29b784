"""The CRDs shipped in canaryd/data/crds are valid apiextensions.k8s.io/v1 CRDs.

The sandbox installs every file there, so all of them are checked, not only the traffic APIs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from canaryd.sandbox.runner import crd_paths

from .support import REPO

DATA = REPO / "canaryd" / "data" / "crds"
DEPLOY = REPO / "deploy" / "crds"
ALL = sorted(p.name for p in crd_paths())
EXPECTED = {  # the traffic-routing APIs; canaryd's own Rollout CRD is generated elsewhere
    "istio-virtualservice.yaml": "virtualservices.networking.istio.io",
    "istio-destinationrule.yaml": "destinationrules.networking.istio.io",
    "gateway-httproute.yaml": "httproutes.gateway.networking.k8s.io",
    "linkerd-httproute.yaml": "httproutes.policy.linkerd.io",
    "smi-trafficsplit.yaml": "trafficsplits.split.smi-spec.io",
}
# Keys a structural schema may not set inside allOf/anyOf/oneOf/not.
_JUNCTOR_FORBIDDEN = {"description", "type", "default", "additionalProperties", "nullable"}
_TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return doc


def structural_errors(node: dict[str, Any], path: str, *, in_junctor: bool = False) -> list[str]:
    """Violations of the Kubernetes structural-schema rules under `node`."""
    errors: list[str] = []
    open_node = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
        "x-kubernetes-int-or-string"
    )
    if in_junctor:
        errors += [f"{path}: {key} inside a junctor" for key in _JUNCTOR_FORBIDDEN & set(node)]
    elif "type" not in node and not open_node:
        errors.append(f"{path}: no type")
    elif "type" in node and node["type"] not in _TYPES:
        errors.append(f"{path}: unknown type {node['type']!r}")
    if "properties" in node and "additionalProperties" in node:
        errors.append(f"{path}: properties and additionalProperties together")
    if node.get("type") == "array" and not isinstance(node.get("items"), dict):
        errors.append(f"{path}: array without a single items schema")
    if "default" in node and node.get("type") in ("string", "integer", "object", "array"):
        expected = {"string": str, "integer": int, "object": dict, "array": list}[node["type"]]
        if not isinstance(node["default"], expected):
            errors.append(f"{path}: default {node['default']!r} is not {node['type']}")
    for key, child in (node.get("properties") or {}).items():
        errors += structural_errors(child, f"{path}.{key}", in_junctor=in_junctor)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            errors += structural_errors(node[key], f"{path}.{key}", in_junctor=in_junctor)
    for junctor in ("allOf", "anyOf", "oneOf"):
        for i, child in enumerate(node.get(junctor) or []):
            errors += structural_errors(child, f"{path}.{junctor}[{i}]", in_junctor=True)
    if isinstance(node.get("not"), dict):
        errors += structural_errors(node["not"], f"{path}.not", in_junctor=True)
    return errors


def test_the_runner_installs_every_traffic_crd() -> None:
    assert set(EXPECTED) <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_manifest_is_a_valid_v1_crd(name: str) -> None:
    crd = load(name)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    spec = crd["spec"]
    names = spec["names"]
    assert crd["metadata"]["name"] == f"{names['plural']}.{spec['group']}"
    assert crd["metadata"]["name"] == EXPECTED.get(name, crd["metadata"]["name"])
    assert names["singular"] == names["kind"].lower()
    assert names["listKind"] == names["kind"] + "List"
    assert spec["scope"] == "Namespaced"
    versions = spec["versions"]
    assert len({v["name"] for v in versions}) == len(versions)
    assert [v["storage"] for v in versions].count(True) == 1
    for version in versions:
        assert version["served"] is True
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object"
        assert structural_errors(schema, f"{version['name']}") == []
        assert set(schema["properties"]) <= {"spec", "status", "apiVersion", "kind", "metadata"}
        for column in version.get("additionalPrinterColumns", []):
            assert column["jsonPath"].startswith(".") and column["type"] in (
                "string",
                "integer",
                "number",
                "boolean",
                "date",
            )


def test_istio_virtualservice_serves_three_versions_with_status() -> None:
    crd = load("istio-virtualservice.yaml")
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert set(versions) == {"v1", "v1beta1", "v1alpha3"}
    assert versions["v1"]["storage"] is True
    assert all(v["subresources"] == {"status": {}} for v in versions.values())
    assert crd["spec"]["names"]["shortNames"] == ["vs"]
    route = versions["v1"]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["http"][
        "items"
    ]["properties"]["route"]["items"]
    assert route["properties"]["weight"]["type"] == "integer"
    assert route["properties"]["weight"]["minimum"] == 0
    assert set(route["properties"]["destination"]["properties"]) == {"host", "subset", "port"}


def test_destinationrule_has_named_subsets() -> None:
    crd = load("istio-destinationrule.yaml")
    assert crd["spec"]["names"]["shortNames"] == ["dr"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    subset = spec["properties"]["subsets"]["items"]
    assert subset["required"] == ["name"]
    assert set(subset["properties"]) == {"name", "labels", "trafficPolicy"}


@pytest.mark.parametrize(
    ("name", "versions"),
    [("gateway-httproute.yaml", {"v1", "v1beta1"}), ("linkerd-httproute.yaml", {"v1beta3"})],
)
def test_httproute_backend_limits_match_the_gateway_api(name: str, versions: set[str]) -> None:
    crd = load(name)
    assert {v["name"] for v in crd["spec"]["versions"]} == versions
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    backend_refs = spec["properties"]["rules"]["items"]["properties"]["backendRefs"]
    assert backend_refs["maxItems"] == 16
    weight = backend_refs["items"]["properties"]["weight"]
    assert (weight["minimum"], weight["maximum"], weight["default"]) == (0, 1_000_000, 1)
    assert spec["properties"]["parentRefs"]["items"]["required"] == ["name"]


def test_trafficsplit_stores_v1alpha2_and_serves_later_versions() -> None:
    crd = load("smi-trafficsplit.yaml")
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert set(versions) == {"v1alpha2", "v1alpha3", "v1alpha4"}
    assert versions["v1alpha2"]["storage"] is True
    assert crd["spec"]["names"]["shortNames"] == ["ts"]
    backend = versions["v1alpha2"]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "backends"
    ]["items"]
    assert backend["properties"]["weight"]["type"] == "integer"


def test_structural_check_catches_an_untyped_field() -> None:
    bad = {"type": "object", "properties": {"spec": {"properties": {"x": {"type": "string"}}}}}
    assert structural_errors(bad, "root") == ["root.spec: no type"]


@pytest.mark.parametrize("name", ALL)
def test_deploy_copy_is_byte_identical(name: str) -> None:
    assert (DEPLOY / name).read_bytes() == (DATA / name).read_bytes()


def test_kustomization_lists_every_crd_and_the_rollout_crd() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        {*EXPECTED, "canaryd-rollout.yaml", "canaryd-rolloutpolicy.yaml"})


def test_crds_are_packaged_where_the_runner_reads_them() -> None:
    assert {Path(p).parent for p in crd_paths()} == {DATA}
