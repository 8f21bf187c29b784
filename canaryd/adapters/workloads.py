"""The two Deployments of a release: read them (with any HorizontalPodAutoscaler), put the
new version on the canary, copy the analysed pod template onto stable.

Writes are JSON patches guarded by `test` operations (the container's name at its index,
the object's resourceVersion), so a patch made from a stale read fails instead of landing on
something else. Every call has a timeout and goes through `retry.kube_call`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from kubernetes_asyncio import client

from canaryd.adapters.errors import Conflict, Invalid, NotFound
from canaryd.adapters.kube import TIMEOUT, ObjectRef
from canaryd.adapters.retry import kube_call, kube_json
from canaryd.core import release as rel

log = structlog.get_logger("canaryd.workloads")
JSON_PATCH = "application/json-patch+json"


class ReleaseError(Exception):
    """A release write that must not go ahead (the object is not what the decision saw)."""


def _selector_keys(*deployments: dict[str, Any] | None) -> set[str]:
    keys: set[str] = set()
    for body in deployments:
        match = (((body or {}).get("spec") or {}).get("selector") or {}).get("matchLabels")
        keys.update((match or {}).keys())
    return keys


def _containers(body: dict[str, Any]) -> list[dict[str, Any]]:
    template = (body.get("spec") or {}).get("template") or {}
    return list((template.get("spec") or {}).get("containers") or [])


def view(name: str, body: dict[str, Any] | None, ignore: set[str],
         autoscaler_min: int | None = None) -> rel.DeploymentView:
    if body is None:
        return rel.DeploymentView(name=name, exists=False)
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return rel.DeploymentView(
        name=name,
        generation=int(body["metadata"].get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        replicas=int(spec.get("replicas", 1)),
        updated=int(status.get("updatedReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        template_hash=rel.template_hash(spec.get("template"), ignore),
        images=tuple((str(c.get("name")), str(c.get("image", ""))) for c in _containers(body)),
        autoscaler_min=autoscaler_min,
        current=int(status.get("replicas") or 0),
    )


class Releases:
    def __init__(self, api: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)

    async def _get(self, ref: ObjectRef) -> dict[str, Any] | None:
        try:
            return await kube_json(
                f"get deployment {ref}",
                lambda: self.apps.read_namespaced_deployment(
                    ref.name, ref.namespace, _request_timeout=TIMEOUT, _preload_content=False
                ),
            )
        except NotFound:
            return None

    async def autoscalers(self, namespace: str) -> dict[str, int]:
        """Deployment name -> minReplicas of the HPA that scales it."""
        body = await kube_json(
            f"list horizontalpodautoscalers {namespace}",
            lambda: self.autoscaling.list_namespaced_horizontal_pod_autoscaler(
                namespace, _request_timeout=TIMEOUT, _preload_content=False
            ),
        )
        out: dict[str, int] = {}
        for hpa in body.get("items") or []:
            spec = hpa.get("spec") or {}
            ref = spec.get("scaleTargetRef") or {}
            if ref.get("kind") == "Deployment" and ref.get("name"):
                out[str(ref["name"])] = int(spec.get("minReplicas") or 1)
        return out

    async def observe(self, namespace: str, plan: rel.ReleasePlan, *,
                      autoscalers: bool) -> rel.ReleaseObservation:
        stable, canary = await asyncio.gather(
            self._get(ObjectRef(namespace, plan.stable)),
            self._get(ObjectRef(namespace, plan.canary)),
        )
        hpas = await self.autoscalers(namespace) if autoscalers else {}
        ignore = _selector_keys(stable, canary)
        return rel.ReleaseObservation(
            stable=view(plan.stable, stable, ignore, hpas.get(plan.stable)),
            canary=view(plan.canary, canary, ignore, hpas.get(plan.canary)),
        )

    async def _patch(self, ref: ObjectRef, ops: list[dict[str, Any]]) -> None:
        try:
            await kube_call(
                f"patch deployment {ref}",
                lambda: self.apps.patch_namespaced_deployment(
                    ref.name, ref.namespace, ops, _content_type=JSON_PATCH,
                    _request_timeout=TIMEOUT,
                ),
            )
        except (Conflict, Invalid) as exc:  # a failed `test`: the object moved on
            raise ReleaseError(f"{ref} changed meanwhile ({exc.status}); re-reading") from None

    async def prepare_canary(self, namespace: str, action: rel.PrepareCanary) -> None:
        ref = ObjectRef(namespace, action.deployment)
        ops: list[dict[str, Any]] = []
        if action.image is not None and action.container is not None:
            body = await self._get(ref)
            if body is None:
                raise ReleaseError(f"{ref} not found")
            names = [c.get("name") for c in _containers(body)]
            if action.container not in names:
                raise ReleaseError(f"{ref} has no container {action.container!r}")
            i = names.index(action.container)
            path = f"/spec/template/spec/containers/{i}"
            ops += [{"op": "test", "path": f"{path}/name", "value": action.container},
                    {"op": "replace", "path": f"{path}/image", "value": action.image}]
        if action.replicas is not None:
            ops.append({"op": "replace", "path": "/spec/replicas", "value": action.replicas})
        if ops:
            await self._patch(ref, ops)
            log.info("canary prepared", deployment=str(ref), image=action.image,
                     replicas=action.replicas)

    async def copy_template(self, namespace: str, action: rel.CopyTemplate) -> None:
        src, dst = ObjectRef(namespace, action.source), ObjectRef(namespace, action.target)
        canary, stable = await asyncio.gather(self._get(src), self._get(dst))
        if canary is None or stable is None:
            raise ReleaseError(f"{src if canary is None else dst} not found")
        keep = _selector_keys(stable, canary)
        template = (canary.get("spec") or {}).get("template") or {}
        if rel.template_hash(template, keep) != action.template_hash:
            raise ReleaseError(f"{src}'s pod template is not the analysed one; stable left alone")
        new = rel.stable_template(template, (stable.get("spec") or {}).get("template") or {},
                                  keep)
        await self._patch(dst, [
            {"op": "test", "path": "/metadata/resourceVersion",
             "value": stable["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/template", "value": new},
        ])
        log.info("pod template copied", source=str(src), target=str(dst),
                 template_hash=action.template_hash)

    async def apply(self, namespace: str, action: rel.PrepareCanary | rel.CopyTemplate) -> None:
        if isinstance(action, rel.PrepareCanary):
            await self.prepare_canary(namespace, action)
        else:
            await self.copy_template(namespace, action)


def plan_for(spec: Any) -> rel.ReleasePlan:
    """The release plan of a validated RolloutSpec."""
    w = spec.workloads
    # Started by a RolloutPolicy for the template the canary runs: record it, set nothing
    # (a newer change on the canary must never be overwritten by an older rollout).
    image = rel.image_of(spec.version) if spec.template_hash is None else None
    return rel.ReleasePlan(
        stable=w.stable, canary=w.canary, image=image,
        container=w.container, replicas=w.replicas, max_replicas=w.max_replicas,
        keep_on_rollback=w.keep_on_rollback, copy_to_stable=spec.strategy == "canary",
        template_hash=spec.template_hash,
    )
