"""The manifests under deploy/: valid against Kubernetes' schemas and the CRDs' schemas, and
consistent with each other and with what the daemon expects."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from canaryd.commands import serve
from canaryd.config import load_settings
from canaryd.daemon import DEFAULT_LEASE_NAME
from tests.deploy.support import (
    DEPLOY,
    KUSTOMIZATIONS,
    ROOT,
    Doc,
    by_kind,
    crd_schemas,
    load_documents,
    manifest_files,
    render,
    validate,
)

KNOWN_INVALID: set[tuple[str, str]] = set()
ROLLOUT_CRD = DEPLOY / "crds" / "canaryd-rollout.yaml"


def _problems(docs: list[Doc], *, skip_known: bool) -> list[str]:
    crds = crd_schemas()
    out = []
    for doc in docs:
        if skip_known and (doc["kind"], doc["metadata"]["name"]) in KNOWN_INVALID:
            continue
        out += validate(doc, crds)
    return out


@pytest.mark.parametrize(
    "path", [p for p in manifest_files() if p != ROLLOUT_CRD],  # that one: see the last test
    ids=lambda p: str(p.relative_to(DEPLOY)),
)
def test_every_manifest_validates_against_its_schema(path: Path) -> None:
    docs = load_documents(path)
    assert docs, f"{path} holds no object"
    assert _problems(docs, skip_known=False) == []


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_rendered_object_validates(kustomization: str) -> None:
    """What `kubectl apply -k` sends, generated ConfigMap and transformed names included."""
    assert _problems(render(kustomization), skip_known=True) == []


def test_the_config_map_carries_an_exact_copy_of_the_config() -> None:
    copy = DEPLOY / "config" / "canaryd.yaml"
    original = ROOT / "config" / "canaryd.yaml"
    assert copy.read_bytes() == original.read_bytes(), (
        "deploy/config/canaryd.yaml differs from config/canaryd.yaml: "
        "cp config/canaryd.yaml deploy/config/canaryd.yaml"
    )
    load_settings(copy, env={})
    cm = by_kind(render("deploy"), "ConfigMap", "canaryd-config")
    assert cm["data"]["canaryd.yaml"] == original.read_text(encoding="utf-8")


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_deployment_runs_two_locked_down_replicas() -> None:
    docs = render("deploy")
    deploy = by_kind(docs, "Deployment", "canaryd")
    spec = deploy["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] >= 1000
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(container["resources"]) == {"requests", "limits"}
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert pod["terminationGracePeriodSeconds"] >= 20, "the daemon may need 20 s to stop"
    assert spec["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "true"
    assert container["image"] == "ghcr.io/canaryd/canaryd:0.1.0"


def test_the_pod_gets_its_config_tokens_identity_and_scratch_space() -> None:
    docs = render("deploy")
    pod = by_kind(docs, "Deployment", "canaryd")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _env(container)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}

    config_dir, config_file = env["CANARYD_CONFIG"].rsplit("/", 1)
    config_volume = volumes[mounts[config_dir]["name"]]
    assert config_volume["configMap"]["name"] == "canaryd-config"
    assert config_file in by_kind(docs, "ConfigMap", "canaryd-config")["data"]
    assert all("subPath" not in m for m in mounts.values()), "subPath mounts never update"

    tokens_dir = env["CANARYD_TOKENS_FILE"].rsplit("/", 1)[0]
    assert volumes[mounts[tokens_dir]["name"]]["secret"]["secretName"] == "canaryd-api-tokens"
    example = load_documents(DEPLOY / "examples" / "api-tokens-secret.yaml")[0]
    assert example["metadata"]["name"] == "canaryd-api-tokens"
    assert env["CANARYD_TOKENS_FILE"].rsplit("/", 1)[1] in example["stringData"]
    assert not [d for d in docs if d["kind"] == "Secret"], "no Secret is applied by default"

    assert env["CANARYD_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["CANARYD_LEASE_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts["/etc/canaryd"]["readOnly"] is True


def test_the_lease_name_agrees_everywhere() -> None:
    docs = render("deploy")
    (container,) = by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    role = by_kind(docs, "Role", "canaryd-leader-election")
    assert role["metadata"]["namespace"] == "canaryd"
    named = [r for r in role["rules"] if r.get("resourceNames")]
    assert [r["resourceNames"] for r in named] == [[DEFAULT_LEASE_NAME]]
    assert _env(container)["CANARYD_LEASE_NAME"] == DEFAULT_LEASE_NAME
    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    assert parser.parse_args(["serve"]).lease_name == DEFAULT_LEASE_NAME


def test_selectors_and_ports_line_up() -> None:
    docs = render("deploy")
    deploy = by_kind(docs, "Deployment", "canaryd")
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}

    def selects(selector: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    assert selects(deploy["spec"]["selector"]["matchLabels"])
    assert selects(by_kind(docs, "Service")["spec"]["selector"])
    assert selects(by_kind(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects(by_kind(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"])
    assert by_kind(docs, "Service")["spec"]["ports"][0]["targetPort"] in port_names
    assert by_kind(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    ingress_ports = {p["port"] for rule in by_kind(docs, "NetworkPolicy")["spec"]["ingress"]
                     for p in rule["ports"]}
    assert port_names["http"] in ingress_ports
    ns = by_kind(docs, "Namespace")
    assert ns["metadata"]["labels"]["istio-injection"] == "enabled"
    for binding in (by_kind(docs, "ClusterRoleBinding"), by_kind(docs, "RoleBinding")):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "canaryd", "namespace": "canaryd"}]
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "canaryd"


def _rules(role: Doc) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
            for r in rule["resources"] for v in rule["verbs"]}


def test_the_namespaced_variant_grants_the_same_calls_in_its_namespaces() -> None:
    cluster = _rules(by_kind(render("deploy"), "ClusterRole", "canaryd"))
    docs = render("deploy/overlays/namespaced")
    assert not [d for d in docs if d["metadata"]["name"] == "canaryd"
                and d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = _rules(by_kind(docs, "Role", "canaryd"))
    cache = _rules(by_kind(docs, "ClusterRole", "canaryd-rollout-cache"))
    assert cache == {("canaryd.io", resource, verb) for resource in ("rollouts", "rolloutpolicies")
                     for verb in ("list", "watch")}
    assert role | cache == cluster and not role & cache


def test_the_istio_example_enforces_strict_mtls_on_canaryd() -> None:
    (pa,) = render("deploy/istio")
    assert pa["kind"] == "PeerAuthentication" and pa["metadata"]["namespace"] == "canaryd"
    assert pa["spec"]["mtls"]["mode"] == "STRICT"
    assert pa["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "canaryd"}


def test_the_rollout_crd_uses_only_fields_the_api_server_knows() -> None:
    assert _problems(load_documents(ROLLOUT_CRD), skip_known=False) == []
    policy = ROLLOUT_CRD.with_name("canaryd-rolloutpolicy.yaml")
    assert _problems(load_documents(policy), skip_known=False) == []
