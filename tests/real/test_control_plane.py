"""The real control plane itself, and canaryd's CRDs judged by it.

The generated Rollout CRD must be accepted by a real kube-apiserver, keep per-rollout
threshold overrides, and refuse what canaryd's models refuse; the project's copies of the mesh
CRDs must accept and refuse the same objects as upstream's.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd import crd
from canaryd.sandbox import example_app
from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.realkube.binaries import versions
from canaryd.sandbox.realkube.crds import UPSTREAM, upstream_crd
from canaryd.sandbox.runner import crd_paths, install_crds
from canaryd.sandbox.testing import eventually

ROOT = Path(__file__).resolve().parents[2]
NS = "realkube-crd"


@pytest.fixture
async def api(real_kube: RealKube) -> AsyncIterator[client.ApiClient]:
    api = await config.new_client_from_config(config_file=str(real_kube.kubeconfig))
    core = client.CoreV1Api(api)
    try:
        await core.create_namespace({"metadata": {"name": NS}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture(scope="module", autouse=True)
def _remove_namespace_after_module(real_kube: RealKube) -> Iterator[None]:
    yield
    # Rollouts left here would be seen by the daemons of later tests on this server.
    kubectl(real_kube, "delete", "namespace", NS, "--wait=false", "--ignore-not-found")


def kubectl(
    kube: RealKube, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", f"--kubeconfig={kube.kubeconfig}", *args],
        input=stdin, capture_output=True, text=True, timeout=120,
    )


async def test_version_is_the_pinned_release_and_pods_become_ready(
    real_kube: RealKube, api: client.ApiClient
) -> None:
    info = await client.VersionApi(api).get_code()
    assert info.git_version == versions()["kubernetes"]
    assert info.major == "1"

    apps = client.AppsV1Api(api)
    dep = {
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
        },
    }
    try:
        await apps.create_namespaced_deployment(NS, dep)
    except ApiException as exc:
        if exc.status != 409:
            raise

    async def available() -> bool:
        got = await apps.read_namespaced_deployment_status("web", NS)
        return bool(got.status.available_replicas == 2)

    # Controller-manager makes the ReplicaSet and Pods, the scheduler binds them to kwok
    # Nodes, kwok marks them Ready.
    await eventually(available, timeout=60, what="2 available replicas")
    pods = await client.CoreV1Api(api).list_namespaced_pod(NS, label_selector="app=web")
    assert {p.spec.node_name.startswith("kwok-node-") for p in pods.items} == {True}


async def test_nodes_stay_alive_through_renewed_node_leases(
    real_kube: RealKube, api: client.ApiClient
) -> None:
    """kwok keeps each Node's Lease renewed, as a kubelet does; without that the node
    lifecycle controller marks the Nodes, and every Pod on them, NotReady after 50 s."""
    coord = client.CoordinationV1Api(api)

    async def renewals() -> dict[str, Any]:
        leases = await coord.list_namespaced_lease("kube-node-lease")
        return {item.metadata.name: item.spec.renew_time for item in leases.items}

    first = await eventually(renewals, timeout=30, what="node Leases in kube-node-lease")
    assert set(first) == {f"kwok-node-{i}" for i in range(3)}

    async def all_renewed() -> bool:
        now = await renewals()
        return all(now[name] > first[name] for name in first)

    await eventually(all_renewed, timeout=45, what="every node Lease renewed")
    nodes = await client.CoreV1Api(api).list_node()
    for node in nodes.items:
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert ready.status == "True", (node.metadata.name, ready.reason)


def rollout(name: str, **analysis: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((ROOT / "config/examples/canary.yaml").read_text())
    body["metadata"] = {"name": name, "namespace": NS}
    body["spec"]["analysis"] = {"profile": "sandbox", **analysis}
    return body


async def test_generated_rollout_crd_installs_and_keeps_threshold_overrides(
    real_kube: RealKube, api: client.ApiClient, tmp_path: Path
) -> None:
    # The generator's own output, not the checked-in file (a test compares the two);
    # install_crds waits until it is Established and served.
    generated = crd.rollout_crd()
    path = tmp_path / "rollout-crd.yaml"
    path.write_text(crd.render())
    assert await install_crds(api, [path], timeout=90)
    ext = client.ApiextensionsV1Api(api)
    stored = await ext.read_custom_resource_definition(generated["metadata"]["name"])
    conditions = {c.type: c.status for c in stored.status.conditions}
    assert conditions.get("Established") == "True"
    assert conditions.get("NonStructuralSchema") is None

    custom = client.CustomObjectsApi(api)
    body = rollout("thresholds-api", thresholds={"istio-latency-p99": {"max": 100}})
    created = await custom.create_namespaced_custom_object("canaryd.io", "v1alpha1", NS,
                                                           "rollouts", body)
    assert created["spec"]["analysis"]["thresholds"] == {"istio-latency-p99": {"max": 100}}

    # kubectl apply (client-side and server-side) keeps them too.
    for name, extra in (("thresholds-kubectl", ()), ("thresholds-ssa", ("--server-side",))):
        manifest = rollout(name, thresholds={"istio-success-rate": {"min": 99.9}})
        done = kubectl(real_kube, "apply", *extra, "-f", "-", stdin=yaml.safe_dump(manifest))
        assert done.returncode == 0, done.stderr
        got = json.loads(kubectl(real_kube, "get", "rollout", name, "-n", NS, "-o",
                                 "json").stdout)
        assert got["spec"]["analysis"]["thresholds"] == {"istio-success-rate": {"min": 99.9}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # The PromQL injection attempt: names reaching a query are DNS-1123 labels.
        (lambda s: s["workloads"].update(canary='x"} or vector(1) #'), "spec.workloads.canary"),
        (lambda s: s["analysis"].update(thresholds={"Bad Key": {"max": 1}}),
         "keys must be DNS-1123 labels"),
        (lambda s: s["analysis"].update(thresholds={"ok": {"maxRatioToStable": 0}}),
         "maxRatioToStable"),
        (lambda s: s["plan"].update(steps=[{"weight": 101}]), "spec.plan.steps[0].weight"),
    ],
)
async def test_real_schema_refuses_what_the_models_refuse(
    real_kube: RealKube, api: client.ApiClient, change: Any, message: str
) -> None:
    await install_crds(api, [p for p in crd_paths() if "rollout" in p.name], timeout=90)
    body = rollout("refused")
    change(body["spec"])
    with pytest.raises(ApiException) as info:
        await client.CustomObjectsApi(api).create_namespaced_custom_object(
            "canaryd.io", "v1alpha1", NS, "rollouts", body, dry_run="All"
        )
    assert info.value.status == 422
    assert message in info.value.body


async def test_kubectl_wait_sees_a_rollout_condition(
    real_kube: RealKube, api: client.ApiClient
) -> None:
    await install_crds(api, [p for p in crd_paths() if "rollout" in p.name], timeout=90)
    custom = client.CustomObjectsApi(api)
    await custom.create_namespaced_custom_object("canaryd.io", "v1alpha1", NS, "rollouts",
                                                 rollout("waited"))
    status = {"phase": "Succeeded", "conditions": [
        {"type": "Completed", "status": "True", "reason": "Promoted", "message": "done",
         "lastTransitionTime": "2026-12-01T00:00:00Z"}]}
    await custom.patch_namespaced_custom_object_status(
        "canaryd.io", "v1alpha1", NS, "rollouts", "waited", {"status": status},
        _content_type="application/merge-patch+json")
    done = kubectl(real_kube, "wait", "--for=condition=Completed", "rollout/waited", "-n", NS,
                   "--timeout=30s")
    assert done.returncode == 0, done.stderr
    assert "condition met" in done.stdout


def _samples() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Objects of each kind the project copies must judge as upstream does: the example
    app's own, and broken variants (name, object, expected to be accepted)."""
    app = {(m["kind"], m["metadata"]["name"]): m for m in example_app.load_manifests()}
    vs = app[("VirtualService", "podinfo")]
    dr = app[("DestinationRule", "podinfo")]
    route = next(m for (kind, _), m in app.items()
                 if kind == "HTTPRoute" and m["apiVersion"].startswith("gateway.networking"))

    def broken(obj: dict[str, Any], edit: Any) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        edit(out["spec"])
        return out

    return {
        "virtualservices.networking.istio.io": [
            ("example", vs),
            ("hosts-not-a-list", broken(vs, lambda s: s.update(hosts="podinfo"))),
            ("weight-a-string", broken(
                vs, lambda s: s["http"][0]["route"][0].update(weight="100"))),
        ],
        "destinationrules.networking.istio.io": [
            ("example", dr),
            ("subsets-not-a-list", broken(dr, lambda s: s.update(subsets={"name": "x"}))),
        ],
        "httproutes.gateway.networking.k8s.io": [
            ("example", route),
            ("weight-negative", broken(
                route, lambda s: s["rules"][0]["backendRefs"][0].update(weight=-1))),
            ("too-many-parents", broken(
                route, lambda s: s.update(parentRefs=[{"name": f"g{i}"} for i in range(33)]))),
        ],
    }


async def _verdict(api: client.ApiClient, group: str, version: str, plural: str,
                   obj: dict[str, Any]) -> bool:
    body = copy.deepcopy(obj)
    body["apiVersion"] = f"{group}/{version}"
    body["metadata"] = {"name": "sample", "namespace": NS}
    try:
        await client.CustomObjectsApi(api).create_namespaced_custom_object(
            group, version, NS, plural, body, dry_run="All")
    except ApiException as exc:
        assert exc.status == 422, exc.body
        return False
    return True


async def test_project_crd_copies_judge_objects_as_upstream_does(
    real_kube: RealKube, api: client.ApiClient
) -> None:
    """Upstream's CRD under its own group and the project's copy under a renamed group, side
    by side in one server; every sample gets the same verdict from both."""
    ext = client.ApiextensionsV1Api(api)
    pairs = []
    for name, (_, copy_file) in UPSTREAM.items():
        ours = yaml.safe_load((ROOT / "deploy/crds" / copy_file).read_text())
        plural, group = name.split(".", 1)
        twin_group = f"{group.replace('.', '-')}.copy.canaryd.io"  # not a protected group
        ours["metadata"] = {"name": f"{plural}.{twin_group}"}
        ours["spec"]["group"] = twin_group
        theirs = upstream_crd(name)
        for doc in (ours, theirs):
            try:
                await ext.create_custom_resource_definition(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        version = next(v["name"] for v in ours["spec"]["versions"] if v.get("storage"))
        pairs.append((name, plural, group, twin_group, version))

    for name, plural, group, twin_group, version in pairs:
        async def served(g: str = twin_group, p: str = plural, v: str = version) -> bool:
            try:
                await client.CustomObjectsApi(api).list_namespaced_custom_object(g, v, NS, p)
            except ApiException:
                return False
            return True

        await eventually(served, timeout=60, what=f"{plural}.{twin_group} served")
        for sample, obj in _samples()[name]:
            upstream = await _verdict(api, group, version, plural, obj)
            project = await _verdict(api, twin_group, version, plural, obj)
            assert (sample, project) == (sample, upstream), f"{name}: {sample}"
