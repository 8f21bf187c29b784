"""The API's Kubernetes calls: create a Rollout, set its action annotation, read one.

Each call has a timeout and goes through `kube_call` (bounded retries on transient errors).
Kubernetes' answers become HTTP problems here: its validation errors are the caller's
(422), its refusals and outages are ours (502 / 503).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.adapters.retry import kube_call
from canaryd.api import problems
from canaryd.api.problems import FieldError, Problem
from canaryd.core import model

TIMEOUT = 10.0
MERGE = "application/merge-patch+json"


class AlreadyExists(Exception):
    pass


NETWORK_ERRORS = (OSError, TimeoutError, aiohttp.ClientError)


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _problem(exc: ApiException, what: str) -> Problem:
    body = _status_body(exc)
    message = str(body.get("message") or exc.reason or "")[:500]
    if exc.status == 422 or exc.status == 400:
        causes = (body.get("details") or {}).get("causes") or []
        errors = [
            FieldError(detail=str(c.get("message", ""))[:300],
                       pointer=problems.from_dotted(str(c.get("field", ""))))
            for c in causes if isinstance(c, dict)
        ] or [FieldError(detail=message, pointer="")]
        return problems.invalid(errors, f"Kubernetes rejected the rollout: {message}")
    if exc.status in (401, 403):
        return Problem(502, "Bad gateway", f"Kubernetes refused to {what}: {message}")
    return problems.unavailable(f"Kubernetes API unavailable ({exc.status}) to {what}")


class RolloutWriter:
    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    async def create(self, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Create the Rollout; with `dry_run`, Kubernetes runs everything (defaulting, the
        CRD schema, admission webhooks) but stores nothing (dryRun=All)."""
        ns = body["metadata"]["namespace"]
        extra = {"dry_run": "All"} if dry_run else {}
        try:
            created: dict[str, Any] = await kube_call(
                f"create rollout in {ns}" + (" (dry run)" if dry_run else ""),
                lambda: self.custom.create_namespaced_custom_object(
                    model.GROUP, model.VERSION, ns, model.PLURAL, body,
                    _request_timeout=TIMEOUT, **extra,
                ),
                attempts=3, max_seconds=15,
            )
        except ApiException as exc:
            if exc.status == 409:
                raise AlreadyExists(body["metadata"].get("name")) from None
            if exc.status == 404:
                raise problems.invalid([FieldError(
                    detail=f"namespace {ns!r} does not exist", pointer="/metadata/namespace"
                )]) from None
            raise _problem(exc, "create the rollout") from None
        except NETWORK_ERRORS as exc:
            raise problems.unavailable(f"Kubernetes API unreachable: {type(exc).__name__}") \
                from None
        return created

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await kube_call(
                f"get rollout {namespace}/{name}",
                lambda: self.custom.get_namespaced_custom_object(
                    model.GROUP, model.VERSION, namespace, model.PLURAL, name,
                    _request_timeout=TIMEOUT,
                ),
                attempts=2, max_seconds=10,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _problem(exc, "read the rollout") from None
        except NETWORK_ERRORS as exc:
            raise problems.unavailable(f"Kubernetes API unreachable: {type(exc).__name__}") \
                from None
        return obj

    async def set_action(self, namespace: str, name: str, action: str) -> dict[str, Any]:
        body = {"metadata": {"annotations": {model.ACTION_ANNOTATION: action}}}
        try:
            obj: dict[str, Any] = await kube_call(
                f"{action} rollout {namespace}/{name}",
                lambda: self.custom.patch_namespaced_custom_object(
                    model.GROUP, model.VERSION, namespace, model.PLURAL, name, body,
                    _content_type=MERGE, _request_timeout=TIMEOUT,
                ),
                attempts=3, max_seconds=15,
            )
        except ApiException as exc:
            if exc.status == 404:
                raise problems.not_found(namespace, name) from None
            raise _problem(exc, f"{action} the rollout") from None
        except NETWORK_ERRORS as exc:
            raise problems.unavailable(f"Kubernetes API unreachable: {type(exc).__name__}") \
                from None
        return obj
