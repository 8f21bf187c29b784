"""batch/v1 Jobs of Job hooks: create, read, delete. Every call has a timeout and goes
through `retry.kube_json` (bounded retries of what may heal, failures classified)."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from canaryd.adapters.errors import NotFound
from canaryd.adapters.retry import kube_json

TIMEOUT = 10.0


class Jobs:
    def __init__(self, api: client.ApiClient) -> None:
        self.batch = client.BatchV1Api(api)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the Job; `Conflict` (already_exists) when one has its name."""
        meta = body["metadata"]
        return await kube_json(
            f"create job {meta['namespace']}/{meta['name']}",
            lambda: self.batch.create_namespaced_job(
                meta["namespace"], body, _request_timeout=TIMEOUT, _preload_content=False),
            attempts=3)

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        return await kube_json(
            f"get job {namespace}/{name}",
            lambda: self.batch.read_namespaced_job(
                name, namespace, _request_timeout=TIMEOUT, _preload_content=False),
            attempts=3)

    async def delete(self, namespace: str, name: str) -> bool:
        """Delete the Job and (in the background, by the garbage collector) its pods;
        False when it was gone already."""
        try:
            await kube_json(
                f"delete job {namespace}/{name}",
                lambda: self.batch.delete_namespaced_job(
                    name, namespace, body={"propagationPolicy": "Background"},
                    _request_timeout=TIMEOUT, _preload_content=False),
                attempts=3)
        except NotFound:
            return False
        return True
