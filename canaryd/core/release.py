"""Release after release: the two Deployments as the state machine sees them, and the
actions that move a new version onto the canary and, after promotion, onto stable.

Pure: plain data in, plain data out. The steady state between rollouts of a target: 100% of
traffic on stable, stable runs the last promoted version, the canary at zero replicas.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from canaryd.core.model import RolloutSpec, RolloutStatus

# An image reference with a tag or a digest: `registry/name:tag`, `name@sha256:...`.
# A bare version ("v2", "1.4.0") is not one: then the user updates the canary themselves.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE = re.compile(
    rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


def image_of(version: str) -> str | None:
    """`version` when it reads as an image reference with a tag or digest, else None."""
    if (":" in version or "@" in version) and IMAGE.match(version):
        return version
    return None


def template_hash(template: Mapping[str, Any] | None, ignore_labels: Iterable[str]) -> str:
    """A pod template's identity, leaving out the labels that tell stable from canary (the
    Deployments' selector keys): the same hash on both means the same version."""
    body = json.loads(json.dumps(template or {}))
    labels = (body.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        for key in ignore_labels:
            labels.pop(key, None)
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def stable_template(canary: Mapping[str, Any], stable: Mapping[str, Any],
                    keep: Iterable[str]) -> dict[str, Any]:
    """The canary's pod template with the labels in `keep` (selector keys) as stable has
    them: what promotion writes onto the stable Deployment."""
    out: dict[str, Any] = json.loads(json.dumps(canary))
    labels = out.setdefault("metadata", {}).setdefault("labels", {})
    stable_labels = (stable.get("metadata") or {}).get("labels") or {}
    for key in keep:
        if key in stable_labels:
            labels[key] = stable_labels[key]
        else:
            labels.pop(key, None)
    return out


def to_idle_colour(spec: RolloutSpec, status: RolloutStatus) -> RolloutSpec:
    """The spec as this release runs it. Blue-green goes to the colour idle when it started:
    when that is blue (green was live), stable and canary, and the selector values, are
    taken the other way round, so the machine's "canary" is always the new version."""
    r, router = status.release, spec.router.service
    if spec.strategy != "blueGreen" or r is None or r.colour != "blue" or router is None:
        return spec
    w = spec.workloads
    return spec.model_copy(update={
        "workloads": w.model_copy(update={"stable": w.canary, "canary": w.stable}),
        "router": spec.router.model_copy(update={"service": router.model_copy(
            update={"blue": router.green, "green": router.blue})}),
    })


@dataclass(frozen=True)
class DeploymentView:
    """One Deployment, read: spec, status and the HorizontalPodAutoscaler targeting it."""

    name: str
    exists: bool = True
    generation: int = 0
    observed_generation: int = 0
    replicas: int = 0  # spec.replicas
    updated: int = 0
    available: int = 0
    template_hash: str = ""
    images: tuple[tuple[str, str], ...] = ()  # (container, image)
    autoscaler_min: int | None = None  # an HPA targets it: its minReplicas
    current: int | None = None  # status.replicas: old pods still there while above replicas

    @property
    def rolled_out(self) -> bool:
        """Its current spec is rolled out, as `kubectl rollout status` judges it: observed,
        every replica updated and available, no old replica left."""
        return (self.exists and self.observed_generation >= self.generation
                and self.updated >= self.replicas and self.available >= self.replicas
                and (self.current is None or self.current <= self.replicas))

    @property
    def progress(self) -> str:
        if not self.exists:
            return f"{self.name} not found"
        if self.observed_generation < self.generation:
            return (f"{self.name}: generation {self.generation} not observed yet "
                    f"({self.observed_generation})")
        return (f"{self.name}: {self.updated}/{self.replicas} updated, "
                f"{self.available} available")

    def image(self, container: str) -> str | None:
        return dict(self.images).get(container)


@dataclass(frozen=True)
class ReleaseObservation:
    stable: DeploymentView
    canary: DeploymentView


@dataclass(frozen=True)
class ReleasePlan:
    """What a rollout does to the Deployments (from the spec), for the state machine."""

    stable: str
    canary: str
    image: str | None = None  # set on the canary's container; None: record what it runs
    container: str | None = None
    replicas: int | None = None  # canary replicas; None: the stable's, at most max_replicas
    max_replicas: int = 10
    keep_on_rollback: bool = False
    copy_to_stable: bool = True  # canary strategy; blue-green switches colours instead
    template_hash: str | None = None  # started for this canary template (a RolloutPolicy)


@dataclass(frozen=True)
class PrepareCanary:
    """Set the image (when given) and replicas (when given) on the canary Deployment."""

    deployment: str
    container: str | None
    image: str | None
    replicas: int | None


@dataclass(frozen=True)
class CopyTemplate:
    """Write the canary's pod template onto stable (keeping stable's selector labels), only
    if the canary still has the analysed template `template_hash`."""

    source: str
    target: str
    template_hash: str


def pick_container(plan: ReleasePlan, canary: DeploymentView) -> tuple[str | None, str | None]:
    """(container, None) or (None, error) for setting plan.image on the canary."""
    names = [name for name, _ in canary.images]
    if plan.container is not None:
        if plan.container in names:
            return plan.container, None
        return None, (f"spec.workloads.container: {canary.name} has no container "
                      f"{plan.container!r} (it has {', '.join(names) or 'none'})")
    if len(names) == 1:
        return names[0], None
    return None, (f"spec.workloads.container: {canary.name} has {len(names)} containers "
                  f"({', '.join(names)}); name the one spec.version is the image of")


def canary_replicas(plan: ReleasePlan, obs: ReleaseObservation) -> int | None:
    """Replicas to give the canary; None: leave them to its HorizontalPodAutoscaler."""
    canary = obs.canary
    if canary.autoscaler_min is not None:
        return None if canary.replicas > 0 else max(canary.autoscaler_min, 1)
    if plan.replicas is not None:
        return plan.replicas
    return max(1, min(obs.stable.replicas, plan.max_replicas))


def images_text(images: Mapping[str, str]) -> str:
    return ", ".join(f"{name}={image}" for name, image in sorted(images.items())) or "no image"


__all__ = [
    "CopyTemplate",
    "DeploymentView",
    "PrepareCanary",
    "ReleaseObservation",
    "ReleasePlan",
    "canary_replicas",
    "image_of",
    "images_text",
    "pick_container",
    "stable_template",
    "template_hash",
    "to_idle_colour",
]
