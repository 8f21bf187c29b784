"""The Helm chart (deploy/helm/canaryd): `helm lint`, `helm template` for the default and the
namespaced values, and the rendered objects against `kubectl kustomize` of deploy/ and
deploy/overlays/namespaced. Where the two differ, the difference is one listed below with
its reason; anything else fails. (tests/real/test_helm_real.py installs the chart.)"""

from __future__ import annotations

import copy
import filecmp
import json
from typing import Any

import pytest
import yaml

from tests.deploy.helm import CHART, KUBERNETES_VERSION, helm, template
from tests.deploy.support import DEPLOY, ROOT, Doc, crd_schemas, render, validate

# Labels Helm's conventions add to every object (and pod template): the release, the chart,
# the app's version and who manages it. kustomize has none of them.
HELM_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/version",
               "app.kubernetes.io/managed-by", "helm.sh/chart"}
# Selectors also carry the release (app.kubernetes.io/instance), so that two releases in one
# namespace select their own pods; kustomize's select on app.kubernetes.io/name alone.
SELECTOR_PATHS = (
    ("Deployment", ("spec", "selector", "matchLabels")),
    ("PodDisruptionBudget", ("spec", "selector", "matchLabels")),
    ("Service", ("spec", "selector")),
    ("NetworkPolicy", ("spec", "podSelector", "matchLabels")),
)
# The pod template's labels are the objects' labels in the chart, so they carry
# app.kubernetes.io/part-of too; kustomize's `labels` transformer (includeTemplates: false)
# adds it to the objects' metadata only.
TEMPLATE_ONLY_IN_CHART = {"app.kubernetes.io/part-of"}
NAMESPACED = ("rbac.scope=namespaces", "rbac.namespaces={demo}")


def _key(doc: Doc) -> tuple[str, str, str]:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def _drop(mapping: dict[str, Any] | None, names: set[str]) -> None:
    for name in names:
        (mapping or {}).pop(name, None)


def _as_kustomize_would(doc: Doc) -> Doc:
    """The chart's object less the listed differences."""
    doc = copy.deepcopy(doc)
    _drop(doc["metadata"].get("labels"), HELM_LABELS)
    for kind, path in SELECTOR_PATHS:
        if doc["kind"] == kind:
            node = doc
            for part in path:
                node = node[part]
            _drop(node, {"app.kubernetes.io/instance"})
    if doc["kind"] == "Deployment":
        pod = doc["spec"]["template"]
        _drop(pod["metadata"]["labels"], HELM_LABELS | TEMPLATE_ONLY_IN_CHART)
        for spread in pod["spec"].get("topologySpreadConstraints", []):
            _drop(spread["labelSelector"]["matchLabels"], {"app.kubernetes.io/instance"})
    return _parsed_config(doc)


def _parsed_config(doc: Doc) -> Doc:
    """A ConfigMap's canaryd.yaml compared as YAML: the chart renders it from values (no
    comments), kustomize copies the file."""
    if doc["kind"] == "ConfigMap" and "canaryd.yaml" in doc.get("data", {}):
        doc = copy.deepcopy(doc)
        doc["data"]["canaryd.yaml"] = yaml.safe_load(doc["data"]["canaryd.yaml"])
    return doc


def _compare(chart: list[Doc], kustomized: list[Doc], *, crd_labels_as_shipped: bool = False
             ) -> None:
    ours = {_key(d): _as_kustomize_would(d) for d in chart}
    theirs = {_key(d): _parsed_config(d) for d in kustomized}
    if crd_labels_as_shipped:
        # The namespaced overlay's `labels` transformer labels the CRDs it includes
        # (app.kubernetes.io/part-of: canaryd); the chart ships them as deploy/crds has them.
        for key, doc in theirs.items():
            if key[0] == "CustomResourceDefinition" and key in ours:
                doc["metadata"].pop("labels", None)
                if "labels" in ours[key]["metadata"]:
                    doc["metadata"]["labels"] = ours[key]["metadata"]["labels"]
    assert sorted(ours) == sorted(theirs), "the same objects, by kind, namespace and name"
    for key, doc in theirs.items():
        assert ours[key] == doc, (
            f"{key} differs beyond the listed differences:\nchart: {json.dumps(ours[key])}\n"
            f"kustomize: {json.dumps(doc)}")


def test_helm_lint_passes_for_the_default_and_the_namespaced_values() -> None:
    for values in ((), NAMESPACED, ("serviceMonitor.enabled=true", "namespace.create=true")):
        args = [a for v in values for a in ("--set", v)]
        out = helm("lint", "--strict", str(CHART), "--kube-version", KUBERNETES_VERSION, *args)
        assert "0 chart(s) failed" in out.stdout, out.stdout


def test_default_values_render_what_kubectl_apply_k_deploy_applies() -> None:
    # The Namespace is off by default (Helm keeps its release record in it, so it must exist
    # first: `kubectl create namespace` or `helm install --create-namespace`); rendered
    # here to compare it too.
    _compare(template("namespace.create=true", crds=True), render("deploy"))
    default = {_key(d) for d in template()}
    assert ("Namespace", "", "canaryd") not in default
    assert {k[0] for k in default} == {
        "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
        "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap"}


def test_namespaced_values_render_what_the_namespaced_overlay_applies() -> None:
    _compare(template("namespace.create=true", *NAMESPACED, crds=True),
             render("deploy/overlays/namespaced"), crd_labels_as_shipped=True)
    two = template("rbac.scope=namespaces", "rbac.namespaces={demo,shop}")
    roles = {(d["kind"], d["metadata"]["namespace"]) for d in two
             if d["kind"] in ("Role", "RoleBinding") and d["metadata"]["name"] == "canaryd"}
    assert roles == {(k, ns) for k in ("Role", "RoleBinding") for ns in ("demo", "shop")}
    assert not [d for d in two if d["kind"] == "ClusterRole"
                and d["metadata"]["name"] == "canaryd"]


def test_every_rendered_object_is_valid_for_kubernetes() -> None:
    crds = crd_schemas()
    docs = template("namespace.create=true", *NAMESPACED, crds=True)
    docs += template("serviceMonitor.enabled=true")
    problems = [p for d in docs if d["kind"] != "ServiceMonitor" for p in validate(d, crds)]
    assert not problems, problems
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    (endpoint,) = monitor["spec"]["endpoints"]
    (service,) = [d for d in docs if d["kind"] == "Service"][-1:]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    selected = monitor["spec"]["selector"]["matchLabels"].items()
    assert selected <= service["metadata"]["labels"].items()


@pytest.mark.parametrize(("values", "named"), [
    (("rbac.scope=everywhere",), "rbac.scope"),
    (("replicas=-1",), "replicas"),
    (("image.pullPolicy=Sometimes",), "image.pullPolicy"),
    (("serviceMonitor.enabled=yes",), "serviceMonitor.enabled"),
    (("replica=3",), "replica"),
    (("rbac.scope=namespaces",), "rbac.namespaces"),
    (("leaderElection.shards=0",), "leaderElection.shards"),
    (("leaderElection.shards=257",), "leaderElection.shards"),
])
def test_bad_values_are_refused_naming_the_field(values: tuple[str, ...], named: str) -> None:
    args = [a for v in values for a in ("--set", v)]
    done = helm("template", "canaryd", str(CHART), "--kube-version", KUBERNETES_VERSION, *args,
                check=False)
    assert done.returncode != 0 and not done.stdout.strip(), done.stdout
    assert named.split(".")[-1] in done.stderr, done.stderr


def test_shards_set_the_daemons_option_and_let_it_list_and_renew_every_lease() -> None:
    def env_and_rules(*values: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        docs = template(*values)
        (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
        env = {e["name"]: e.get("value") for e in
               deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
        (role,) = [d for d in docs if d["kind"] == "Role"
                   and d["metadata"]["name"].endswith("-leader-election")]
        return env, role["rules"]

    env, rules = env_and_rules()
    assert "CANARYD_SHARDS" not in env
    assert all("list" not in r["verbs"] for r in rules), "one leader lists no Leases"
    env, rules = env_and_rules("leaderElection.shards=8")
    assert env["CANARYD_SHARDS"] == "8"
    assert {"resources": ["leases"], "apiGroups": ["coordination.k8s.io"],
            "verbs": ["get", "list", "update", "delete"]} in rules


def test_the_chart_carries_the_projects_crds_and_config() -> None:
    copies = sorted(p.name for p in (CHART / "crds").iterdir())
    originals = sorted(p.name for p in (DEPLOY / "crds").glob("*.yaml")
                       if p.name != "kustomization.yaml")
    assert copies == originals
    _, mismatch, errors = filecmp.cmpfiles(CHART / "crds", DEPLOY / "crds", copies, shallow=False)
    assert not mismatch and not errors, f"not byte-identical to deploy/crds: {mismatch}"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["config"] == yaml.safe_load((ROOT / "config" / "canaryd.yaml").read_text())
