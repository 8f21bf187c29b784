"""Kubernetes access: client construction, the Rollout store, Deployments, Events.

Every call carries a timeout and goes through `retry.kube_call`, which raises failures
classified (`canaryd.adapters.errors`). Status writes carry the resourceVersion the decision
was made from, so a stale writer (a paused old leader, a second process) is fenced by the
API server's 409: `Conflict`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes_asyncio import client, config, watch

from canaryd.adapters.errors import NotFound, from_status
from canaryd.adapters.retry import kube_call, kube_json
from canaryd.core import model
from canaryd.core.machine import WorkloadState

log = structlog.get_logger("canaryd.kube")
TIMEOUT = 10.0
MERGE = "application/merge-patch+json"


async def make_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster config when running in a pod, else the given (or default) kubeconfig."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        await config.load_kube_config(
            config_file=kubeconfig, client_configuration=configuration
        )
    return client.ApiClient(configuration=configuration)


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class RolloutStore:
    """Rollout custom resources: list, watch, fenced status writes, action clearing."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    async def list(self) -> tuple[list[dict[str, Any]], str]:
        body = await kube_call(
            "list rollouts",
            lambda: self.custom.list_cluster_custom_object(
                model.GROUP, model.VERSION, model.PLURAL, _request_timeout=TIMEOUT
            ),
        )
        return list(body.get("items", [])), str(body["metadata"]["resourceVersion"])

    async def watch(self, resource_version: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        w = watch.Watch()
        try:
            async with w.stream(
                self.custom.list_cluster_custom_object,
                model.GROUP, model.VERSION, model.PLURAL,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=60,
                _request_timeout=90,
            ) as stream:
                async for event in stream:
                    if event["type"] == "ERROR":  # e.g. 410 Expired: the caller re-lists
                        raise from_status(event["raw_object"], "watch rollouts")
                    yield event["type"], event["raw_object"]
        finally:
            w.stop()

    async def get(self, ref: ObjectRef) -> dict[str, Any]:
        result: dict[str, Any] = await kube_call(
            f"get rollout {ref}",
            lambda: self.custom.get_namespaced_custom_object(
                model.GROUP, model.VERSION, ref.namespace, model.PLURAL, ref.name,
                _request_timeout=TIMEOUT,
            ),
        )
        return result

    async def write_status(
        self, ref: ObjectRef, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Replace .status, only if the object is still at `resource_version` (else
        Conflict)."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        result: dict[str, Any] = await kube_call(
            f"write status {ref}",
            lambda: self.custom.patch_namespaced_custom_object_status(
                model.GROUP, model.VERSION, ref.namespace, model.PLURAL, ref.name, body,
                _content_type=MERGE, _request_timeout=TIMEOUT,
            ),
        )
        return result

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Rollout (Conflict with `already_exists` when its name is taken)."""
        meta = body["metadata"]
        result: dict[str, Any] = await kube_call(
            f"create rollout {meta['namespace']}/{meta['name']}",
            lambda: self.custom.create_namespaced_custom_object(
                model.GROUP, model.VERSION, meta["namespace"], model.PLURAL, body,
                _request_timeout=TIMEOUT,
            ),
        )
        return result

    async def delete(self, ref: ObjectRef, *, uid: str, resource_version: str) -> None:
        """Delete the Rollout only if it is still the object read (same uid and
        resourceVersion; else Conflict): one changed since, by anyone, is not deleted."""
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(
            uid=uid, resource_version=resource_version))
        await kube_call(
            f"delete rollout {ref}",
            lambda: self.custom.delete_namespaced_custom_object(
                model.GROUP, model.VERSION, ref.namespace, model.PLURAL, ref.name, body=body,
                _request_timeout=TIMEOUT,
            ),
        )

    async def clear_action(self, ref: ObjectRef, resource_version: str) -> dict[str, Any]:
        body = {
            "metadata": {
                "resourceVersion": resource_version,
                "annotations": {model.ACTION_ANNOTATION: None},
            }
        }
        result: dict[str, Any] = await kube_call(
            f"clear action {ref}",
            lambda: self.custom.patch_namespaced_custom_object(
                model.GROUP, model.VERSION, ref.namespace, model.PLURAL, ref.name, body,
                _content_type=MERGE, _request_timeout=TIMEOUT,
            ),
        )
        return result

    async def emit_event(
        self, rollout: dict[str, Any], *, reason: str, message: str, warning: bool = False,
        component: str = "canaryd",
    ) -> None:
        meta = rollout["metadata"]
        now = datetime.now(UTC).replace(microsecond=0)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{meta['name']}.{uuid.uuid4().hex[:16]}", namespace=meta["namespace"]
            ),
            involved_object=client.V1ObjectReference(
                api_version=model.API_VERSION, kind=rollout.get("kind") or model.KIND,
                name=meta["name"],
                namespace=meta["namespace"], uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component=component),
            reporting_component=component,
        )
        try:
            await kube_call(
                f"event {meta['namespace']}/{meta['name']}",
                lambda: self.core.create_namespaced_event(
                    meta["namespace"], event, _request_timeout=TIMEOUT
                ),
                attempts=2,
            )
        except Exception as exc:  # an event is best effort, never fatal
            log.warning("event not recorded", rollout=meta["name"], error=str(exc)[:200])


class Workloads:
    def __init__(self, api: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api)

    async def state(self, ref: ObjectRef, *, min_available: int) -> WorkloadState:
        try:
            body = await kube_json(
                f"get deployment {ref}",
                lambda: self.apps.read_namespaced_deployment(
                    ref.name, ref.namespace, _request_timeout=TIMEOUT, _preload_content=False
                ),
            )
        except NotFound:
            return WorkloadState(exists=False, available=False, detail=f"{ref} not found")
        generation = body["metadata"].get("generation", 0)
        status = body.get("status") or {}
        observed = status.get("observedGeneration", 0)
        available = status.get("availableReplicas") or 0
        if observed < generation:
            return WorkloadState(True, False, f"{ref}: rollout of generation {generation} "
                                              f"not observed yet ({observed})")
        if available < min_available:
            return WorkloadState(True, False, f"{ref}: {available} available, "
                                              f"{min_available} required")
        return WorkloadState(True, True, f"{ref}: {available} available")

    async def scaled_to_zero(self, ref: ObjectRef) -> bool:
        try:
            body = await kube_json(
                f"get deployment {ref}",
                lambda: self.apps.read_namespaced_deployment(
                    ref.name, ref.namespace, _request_timeout=TIMEOUT, _preload_content=False
                ),
            )
        except NotFound:
            return True  # nothing left to scale down
        return int((body.get("spec") or {}).get("replicas", 1)) == 0

    async def scale_to_zero(self, ref: ObjectRef) -> None:
        await kube_call(
            f"scale deployment {ref}",
            lambda: self.apps.patch_namespaced_deployment_scale(
                ref.name, ref.namespace, {"spec": {"replicas": 0}},
                _content_type=MERGE, _request_timeout=TIMEOUT,
            ),
        )
