"""The API's Kubernetes calls: create a Rollout, set its action annotation, read one.

Each call has a timeout and goes through `kube_call` (bounded retries on transient errors).
Kubernetes' answers become HTTP problems here: its validation errors are the caller's
(422), its refusals and outages are ours (502 / 503).
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from canaryd.adapters.errors import Conflict, Forbidden, Invalid, KubeError, NotFound
from canaryd.adapters.retry import kube_call
from canaryd.adapters.secrets import SecretError, read_secret
from canaryd.api import problems
from canaryd.api.problems import FieldError, Problem
from canaryd.core import model
from canaryd.core.settings import Settings

TIMEOUT = 10.0
MERGE = "application/merge-patch+json"


class AlreadyExists(Exception):
    pass


def _problem(exc: KubeError, what: str) -> Problem:
    """Kubernetes' answer as this API's: its refusal of the rollout is the caller's (422),
    its refusing canaryd (401/403) and its outages are ours (502 / 503)."""
    message = (exc.message or exc.reason or "")[:500]
    if isinstance(exc, Invalid):
        errors = [FieldError(detail=c.message, pointer=problems.from_dotted(c.field))
                  for c in exc.causes] or [FieldError(detail=message, pointer="")]
        return problems.invalid(errors, f"Kubernetes rejected the rollout: {message}")
    if isinstance(exc, Forbidden):
        return Problem(502, "Bad gateway", f"Kubernetes refused to {what}: {message}")
    if not exc.status:
        return problems.unavailable(f"Kubernetes API unreachable: {exc.reason}")
    return problems.unavailable(f"Kubernetes API unavailable ({exc.status}) to {what}")


class RolloutWriter:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)

    async def hook_secrets(self, spec: model.RolloutSpec, namespace: str,
                           settings: Settings) -> list[FieldError]:
        """Every hook secret of `spec` that cannot be read, as the field to fix."""
        errors = []
        for i, hook in enumerate(spec.hooks):
            try:
                await read_secret(hook, namespace, settings, self.api, f"spec.hooks[{i}]")
            except SecretError as exc:
                field, _, detail = str(exc).partition(": ")
                errors.append(FieldError(detail=detail, pointer=problems.from_dotted(field)))
        return errors

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
        except Conflict:
            raise AlreadyExists(body["metadata"].get("name")) from None
        except NotFound:
            raise problems.invalid([FieldError(
                detail=f"namespace {ns!r} does not exist", pointer="/metadata/namespace"
            )]) from None
        except KubeError as exc:
            raise _problem(exc, "create the rollout") from None
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
        except NotFound:
            return None
        except KubeError as exc:
            raise _problem(exc, "read the rollout") from None
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
        except NotFound:
            raise problems.not_found(namespace, name) from None
        except KubeError as exc:
            raise _problem(exc, f"{action} the rollout") from None
        return obj
