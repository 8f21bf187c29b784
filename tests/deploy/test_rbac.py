"""Least privilege, checked against reality: two `canaryd serve` replicas drive a canary to
the end in the sandbox (with an operator pause and resume, a graceful shutdown releasing
the Lease), each through an audited door; every API call they made must be allowed by the
RBAC objects `kubectl apply -k deploy/` installed, and every permission granted must have
been used, or be listed below with the reason this run cannot use it."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from canaryd.sandbox.runner import Sandbox
from tests.deploy.support import kubectl
from tests.ha.cluster import Call, Cluster, LeaseWatch, Rollouts, rollout_manifest

pytestmark = [pytest.mark.prometheus, pytest.mark.kubectl]

NAMESPACE = "canaryd"  # where deploy/ runs canaryd, and so where its Lease lives
# Granted on purpose, not exercised by this run: (apiGroup, resource, verb) -> why.
UNUSED_BY_DESIGN = {
    ("", "secrets", "get"): "webhook hooks signed with a secretRef (canaryd/adapters/secrets.py, "
                            "tests/hooks); this run has no hooks",
    ("batch", "jobs", "create"): "Job hooks (canaryd/runtime/jobhooks.py, "
                                 "tests/real/test_job_hooks_real.py); this run has no hooks",
    ("batch", "jobs", "get"): "Job hooks: the Job is read until it finishes",
    ("batch", "jobs", "delete"): "Job hooks: the Job is deleted once its outcome is recorded",
    ("canaryd.io", "rollouts", "create"): "POST /api/v1/rollouts creates the Rollout "
                                          "(canaryd/api/writer.py), and so does a "
                                          "RolloutPolicy (tests/api/test_gitops_train.py); "
                                          "this run submits with a client of its own",
    ("canaryd.io", "rolloutpolicies/status", "patch"): "what a RolloutPolicy last started "
                                                       "(tests/api/test_gitops_train.py); "
                                                       "this run has no policy",
    ("canaryd.io", "rollouts", "get"): "the HTTP API reads a rollout back after a submit",
    ("canaryd.io", "rollouts", "delete"): "retention: finished Rollouts past "
                                          "controller.keepFinished per target "
                                          "(tests/e2e/test_retention.py); this run has one",
    ("gateway.networking.k8s.io", "httproutes", "get"): "Gateway API router (tests/routers)",
    ("gateway.networking.k8s.io", "httproutes", "patch"): "Gateway API router",
    ("policy.linkerd.io", "httproutes", "get"): "Linkerd HTTPRoute router",
    ("policy.linkerd.io", "httproutes", "patch"): "Linkerd HTTPRoute router",
    ("split.smi-spec.io", "trafficsplits", "get"): "SMI TrafficSplit router",
    ("split.smi-spec.io", "trafficsplits", "patch"): "SMI TrafficSplit router",
    ("", "services", "get"): "Service-selector router and blue-green",
    ("", "services", "patch"): "Service-selector router and blue-green selector switch",
}


@dataclass(frozen=True)
class Rule:
    namespace: str | None  # None: a ClusterRole, valid everywhere
    groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    names: frozenset[str]

    def allows(self, call: Call) -> bool:
        resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
        return (
            (self.namespace is None or self.namespace == call.namespace)
            and ({call.group, "*"} & self.groups != set())
            and ({resource, "*"} & self.resources != set())
            and ({call.verb, "*"} & self.verbs != set())
            # A rule naming objects never covers create (the name is not known yet).
            and (not self.names or (call.verb != "create" and call.name in self.names))
        )


def rules_of(role: dict[str, Any], namespace: str | None) -> list[Rule]:
    return [
        Rule(namespace, frozenset(r.get("apiGroups") or ()), frozenset(r.get("resources") or ()),
             frozenset(r["verbs"]), frozenset(r.get("resourceNames") or ()))
        for r in role.get("rules") or ()
    ]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(rps=200) as sb:
        yield sb


async def installed_rules(api: client.ApiClient) -> list[Rule]:
    """The RBAC objects as stored by the API server, bindings followed to their roles."""
    custom = client.CustomObjectsApi(api)
    group = ("rbac.authorization.k8s.io", "v1")
    subject = {"kind": "ServiceAccount", "name": "canaryd", "namespace": NAMESPACE}
    rules: list[Rule] = []
    for binding in (await custom.list_cluster_custom_object(*group, "clusterrolebindings"))[
            "items"]:
        if subject in binding.get("subjects", []):
            role = await custom.get_cluster_custom_object(*group, "clusterroles",
                                                          binding["roleRef"]["name"])
            rules += rules_of(role, None)
    for binding in (await custom.list_namespaced_custom_object(*group, NAMESPACE,
                                                               "rolebindings"))["items"]:
        if subject in binding.get("subjects", []):
            role = await custom.get_namespaced_custom_object(*group, NAMESPACE, "roles",
                                                             binding["roleRef"]["name"])
            rules += rules_of(role, NAMESPACE)
    return rules


async def test_the_daemon_needs_every_permission_it_has_and_no_other(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    await kubectl(sandbox.kubeconfig or Path(), "apply", "-k", "deploy/")
    assert sandbox.api_server is not None
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    cluster = Cluster(server=sandbox.api_server, workdir=tmp_path,
                      prometheus_url=sandbox.prometheus_url, lease_namespace=NAMESPACE)
    rollouts = Rollouts(api)
    try:
        async with LeaseWatch(api, NAMESPACE, cluster.lease_name) as lease:
            replicas = await cluster.start("r1", "r2")
            await lease.wait_holder(bool, timeout=10, what="a leader")
            await rollouts.create(rollout_manifest("podinfo-v2"))
            await rollouts.wait_phase("podinfo-v2", {"Progressing"}, timeout=30)
            await rollouts.act("podinfo-v2", "pause")  # the leader clears the annotation
            await rollouts.wait_phase("podinfo-v2", {"Paused"}, timeout=15)
            await rollouts.act("podinfo-v2", "resume")
            status = await rollouts.wait_phase("podinfo-v2", {"Succeeded", "RolledBack",
                                                              "Failed", "Aborted"}, timeout=90)
            assert status["phase"] == "Succeeded", status["reason"]
            for replica in replicas:
                replica.signal(signal.SIGTERM)
            for replica in replicas:
                assert await replica.wait_exit(timeout=20) == 0
        rules = await installed_rules(api)
    finally:
        await cluster.close()
        await api.close()

    calls = cluster.calls
    assert calls, "no call was recorded"
    refused = sorted({(c.verb, c.group, c.resource, c.subresource, c.namespace, c.name)
                      for c in calls if not any(rule.allows(c) for rule in rules)})
    assert not refused, f"calls RBAC would refuse: {refused}"
    for replica in replicas:
        assert not replica.door.non_resource, "non-resource URLs need their own RBAC rules"

    used = {(c.group, f"{c.resource}/{c.subresource}" if c.subresource else c.resource, c.verb)
            for c in calls}
    granted = {(g, r, v) for rule in rules for g in rule.groups for r in rule.resources
               for v in rule.verbs}
    assert not [g for g in granted if "*" in g], "wildcards grant more than canaryd uses"
    unused = granted - used
    assert unused <= set(UNUSED_BY_DESIGN), (
        f"granted but never used (drop them, or say why in UNUSED_BY_DESIGN): "
        f"{sorted(unused - set(UNUSED_BY_DESIGN))}")
    stale = set(UNUSED_BY_DESIGN) & used
    assert not stale, f"used after all; remove from UNUSED_BY_DESIGN: {sorted(stale)}"
    assert set(UNUSED_BY_DESIGN) <= granted, "UNUSED_BY_DESIGN names rules no longer granted"
    # The Lease: created once, then read and renewed by name, only in canaryd's namespace.
    lease_calls = {(c.verb, c.namespace, c.name) for c in calls if c.resource == "leases"}
    assert lease_calls == {("create", NAMESPACE, ""), ("get", NAMESPACE, "canaryd-leader"),
                           ("update", NAMESPACE, "canaryd-leader")}
