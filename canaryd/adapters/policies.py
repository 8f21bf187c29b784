"""RolloutPolicy objects: list, watch, status writes fenced by resourceVersion.

Every call has a timeout and goes through `retry.kube_call` (failures raised classified).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from kubernetes_asyncio import client, watch

from canaryd.adapters.errors import from_status
from canaryd.adapters.kube import MERGE, TIMEOUT, ObjectRef
from canaryd.adapters.retry import kube_call
from canaryd.core import model
from canaryd.core.policy import POLICY_PLURAL


class PolicyStore:
    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    async def list(self) -> tuple[list[dict[str, Any]], str]:
        body = await kube_call(
            "list rolloutpolicies",
            lambda: self.custom.list_cluster_custom_object(
                model.GROUP, model.VERSION, POLICY_PLURAL, _request_timeout=TIMEOUT),
        )
        return list(body.get("items", [])), str(body["metadata"]["resourceVersion"])

    async def watch(self, resource_version: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        w = watch.Watch()
        try:
            async with w.stream(
                self.custom.list_cluster_custom_object,
                model.GROUP, model.VERSION, POLICY_PLURAL,
                resource_version=resource_version, allow_watch_bookmarks=True,
                timeout_seconds=60, _request_timeout=90,
            ) as stream:
                async for event in stream:
                    if event["type"] == "ERROR":  # e.g. 410 Expired: the caller re-lists
                        raise from_status(event["raw_object"], "watch rolloutpolicies")
                    yield event["type"], event["raw_object"]
        finally:
            w.stop()

    async def write_status(self, ref: ObjectRef, status: dict[str, Any],
                           resource_version: str) -> dict[str, Any]:
        """Merge .status, only if the policy is still at `resource_version` (else Conflict)."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        result: dict[str, Any] = await kube_call(
            f"write status rolloutpolicy {ref}",
            lambda: self.custom.patch_namespaced_custom_object_status(
                model.GROUP, model.VERSION, ref.namespace, POLICY_PLURAL, ref.name, body,
                _content_type=MERGE, _request_timeout=TIMEOUT),
        )
        return result
