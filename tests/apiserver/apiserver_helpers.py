"""Objects the sandbox API server tests create: a small CRD, widgets, deployments."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.testing import eventually

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wd"], "categories": ["all"]},
        "versions": [
            {
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object", "required": ["name"],
                            "properties": {
                                "name": {"type": "string", "pattern": "^[a-z]+$",
                                         "maxLength": 10},
                                "size": {"type": "integer", "minimum": 1, "maximum": 9,
                                         "default": 1},
                                "mode": {"type": "string", "enum": ["fast", "slow"]},
                                "extra": {"type": "object",
                                          "x-kubernetes-preserve-unknown-fields": True},
                            },
                        },
                        "status": {"type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True},
                    },
                }},
            },
            {
                "name": "v1beta1", "served": True, "storage": False,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object",
                                               "x-kubernetes-preserve-unknown-fields": True}},
            },
        ],
    },
}


def widget(obj_name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": obj_name},
            "spec": {"name": "abc", **spec}}


def deployment(name: str, replicas: int = 2, **annotations: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
        },
    }


class Kubectl:
    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        self.base = ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache)]

    async def run(self, *args: str, stdin: str | None = None, check: bool = True,
                  timeout: float = 20) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.base, *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin else None), timeout)
        rc = proc.returncode or 0
        if check and rc != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({rc}): {err.decode()}")
        return rc, out.decode(), err.decode()


async def ensure_crd(api: client.ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    """Create a CRD unless it exists; wait until it is Established and served."""
    ext = client.ApiextensionsV1Api(api)
    name = body["metadata"]["name"]
    try:
        await ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    group, plural = body["spec"]["group"], body["spec"]["names"]["plural"]
    version = next(v["name"] for v in body["spec"]["versions"] if v.get("storage"))
    objects = client.CustomObjectsApi(api)

    async def ready() -> bool:
        got = await ext.read_custom_resource_definition(name)
        conds = {c.type: c.status for c in (got.status.conditions or [])}
        if conds.get("Established") != "True":
            return False
        try:
            await objects.list_cluster_custom_object(group, version, plural, limit=1)
        except ApiException:
            return False
        return True

    await eventually(ready, timeout=60, what=f"{name} established and served")
    got = await ext.read_custom_resource_definition(name)
    return api.sanitize_for_serialization(got)  # type: ignore[no-any-return]


@dataclass
class Kube:
    """One API server as the tests see it."""

    backend: str  # "emulator" or "real"
    url: str
    namespace: str  # this test's own
    kubeconfig: Path  # its context's namespace is `namespace`
    headers: dict[str, str]
    ssl_context: ssl.SSLContext | None
    emulator: ApiServer | None = None
    real: RealKube | None = None

    @property
    def is_real(self) -> bool:
        return self.real is not None

    def name(self, base: str) -> str:
        """A cluster-scoped name of this test's own (the real control plane is shared)."""
        return f"{self.namespace}-{base}"

    async def compact(self) -> None:
        """Forget history: older resourceVersions and continue tokens expire (410)."""
        if self.emulator is not None:
            self.emulator.compact()
        else:
            assert self.real is not None
            await self.real.compact_etcd()


def _ruled_crd() -> dict[str, Any]:
    """A CRD whose schema carries x-kubernetes-validations (CEL) rules, one per kind of rule:
    on an object, on a map's keys, on a scalar, and a transition rule (oldSelf)."""
    spec_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            # Bounded sizes: kube-apiserver refuses rules whose estimated cost is unbounded.
            "name": {"type": "string", "maxLength": 20,
                     "x-kubernetes-validations": [{"rule": "self != 'zzz'"}]},
            "mode": {"type": "string", "maxLength": 10},
            "size": {"type": "integer"},
            "tags": {"type": "object", "maxProperties": 10,
                     "additionalProperties": {"type": "string", "maxLength": 10},
                     "x-kubernetes-validations": [{"rule": "self.all(k, k.size() <= 5)",
                                                   "message": "keys of at most 5 characters"}]},
        },
        "x-kubernetes-validations": [
            {"rule": "self.name != 'forbiddn'", "message": "name must not be forbiddn"},
            {"rule": "!has(oldSelf.mode) || !has(self.mode) || self.mode == oldSelf.mode",
             "message": "mode is immutable"},
            {"rule": "!has(self.size) || self.size < 100", "messageExpression":
             "self.size >= 1000 ? 'size is far too large' : 'size is too large'",
             "reason": "FieldValueForbidden", "fieldPath": ".size"},
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "ruleds.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "ruleds", "singular": "ruled", "kind": "Ruled"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}}}]},
    }


RULED_CRD = _ruled_crd()
