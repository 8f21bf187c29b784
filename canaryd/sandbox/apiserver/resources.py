"""Resource definitions and the registry that routes URLs to them.

The store is generic: everything it knows about a type (group, versions, kind,
plural, scope, subresources, schema, printer columns) lives in a `ResourceDef`.
Built-in types are declared here as data; CustomResourceDefinitions are turned
into `ResourceDef`s by `from_crd` when they are created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from canaryd.sandbox.apiserver.errors import Obj

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ScalePaths:
    """Where a scalable resource keeps its replica counts (CRD `subresources.scale`)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None


@dataclass
class Version:
    name: str
    served: bool = True
    storage: bool = False
    schema: Obj | None = None
    printer_columns: list[Obj] = field(default_factory=list)
    status: bool = False
    scale: ScalePaths | None = None
    selectable_fields: list[str] = field(default_factory=list)


@dataclass
class ResourceDef:
    group: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    versions: list[Version]
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    builtin: bool = True
    # CRs and Leases refuse a PUT without metadata.resourceVersion; Deployments allow it.
    update_requires_rv: bool = False
    # Custom resources bump generation on any change outside metadata; built-ins on spec.
    generation_from_all: bool = False
    # Only some types keep metadata.generation at all (ConfigMaps, Services... do not).
    has_generation: bool = False
    # DELETE answers the deleted object (else a Status): Namespaces, Pods, Services...
    return_deleted: bool = False
    # Field selectors beyond metadata.name/namespace (a type with a field-label conversion
    # answers unknown ones with "field label not supported"); None: only the two defaults.
    field_labels: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def version(self, name: str) -> Version | None:
        for v in self.versions:
            if v.name == name and v.served:
                return v
        return None

    @property
    def storage_version(self) -> Version:
        for v in self.versions:
            if v.storage:
                return v
        return self.versions[0]

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def has_status(self, version: str) -> bool:
        v = self.version(version) or self.storage_version
        return v.status


_EVENT_FIELDS = (
    "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
    "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
    "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
    "metadata.namespace", "metadata.name",
)
_EVENTS_V1_FIELDS = (
    "reason", "regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
    "regarding.apiVersion", "regarding.resourceVersion", "regarding.fieldPath",
    "reportingController", "type", "metadata.namespace", "metadata.name",
)


def _core(kind: str, plural: str, *, namespaced: bool = True, status: bool = False,
          short: list[str] | None = None, cats: list[str] | None = None,
          generation: bool = False, return_deleted: bool = False,
          fields: tuple[str, ...] | None = None) -> ResourceDef:
    return ResourceDef(
        group="", kind=kind, plural=plural, singular=kind.lower(), namespaced=namespaced,
        versions=[Version("v1", storage=True, status=status)],
        short_names=short or [], categories=cats or [], has_generation=generation,
        return_deleted=return_deleted, field_labels=fields,
    )


def builtin_resources() -> list[ResourceDef]:
    return [
        _core("Namespace", "namespaces", namespaced=False, status=True, short=["ns"],
              return_deleted=True, fields=("status.phase", "metadata.name")),
        _core("Service", "services", status=True, short=["svc"], cats=["all"],
              return_deleted=True, fields=("metadata.namespace", "metadata.name",
                                           "spec.clusterIP", "spec.type")),
        _core("Event", "events", short=["ev"], fields=_EVENT_FIELDS),
        _core("ConfigMap", "configmaps", short=["cm"]),
        _core("Secret", "secrets", fields=("type", "metadata.namespace", "metadata.name")),
        _core("Pod", "pods", status=True, short=["po"], cats=["all"], generation=True,
              return_deleted=True, fields=(
                  "metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
                  "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork",
                  "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName")),
        _core("ServiceAccount", "serviceaccounts", short=["sa"], return_deleted=True),
        ResourceDef(
            group="apps", kind="Deployment", plural="deployments", singular="deployment",
            namespaced=True,
            versions=[Version("v1", storage=True, status=True,
                              scale=ScalePaths(label_selector=".status.selector"))],
            short_names=["deploy"], categories=["all"], has_generation=True,
        ),
        # Job hooks: the sandbox's simulated Job controller (jobs.py) finishes them.
        ResourceDef(
            group="batch", kind="Job", plural="jobs", singular="job", namespaced=True,
            versions=[Version("v1", storage=True, status=True)], categories=["all"],
            has_generation=True,
        ),
        ResourceDef(
            group="coordination.k8s.io", kind="Lease", plural="leases", singular="lease",
            namespaced=True, versions=[Version("v1", storage=True)],
            update_requires_rv=True,
        ),
        ResourceDef(
            group="apiextensions.k8s.io", kind="CustomResourceDefinition",
            plural="customresourcedefinitions", singular="customresourcedefinition",
            namespaced=False, versions=[Version("v1", storage=True, status=True)],
            short_names=["crd", "crds"], categories=["api-extensions"], has_generation=True,
        ),
        ResourceDef(
            group="events.k8s.io", kind="Event", plural="events", singular="event",
            namespaced=True, versions=[Version("v1", storage=True)], short_names=["ev"],
            field_labels=_EVENTS_V1_FIELDS,
        ),
        # What `kubectl apply -k deploy/` installs besides the types above.
        *_rbac(),
        ResourceDef(
            group="policy", kind="PodDisruptionBudget", plural="poddisruptionbudgets",
            singular="poddisruptionbudget", namespaced=True,
            versions=[Version("v1", storage=True, status=True)], short_names=["pdb"],
            has_generation=True,
        ),
        ResourceDef(
            group="autoscaling", kind="HorizontalPodAutoscaler",
            plural="horizontalpodautoscalers", singular="horizontalpodautoscaler",
            namespaced=True, versions=[Version("v2", storage=True, status=True)],
            short_names=["hpa"], categories=["all"],
        ),
        ResourceDef(
            group="networking.k8s.io", kind="NetworkPolicy", plural="networkpolicies",
            singular="networkpolicy", namespaced=True, versions=[Version("v1", storage=True)],
            short_names=["netpol"], has_generation=True,
        ),
    ]


def _rbac() -> list[ResourceDef]:
    group = "rbac.authorization.k8s.io"
    return [
        ResourceDef(group=group, kind=kind, plural=f"{kind.lower()}s", singular=kind.lower(),
                    namespaced=namespaced, versions=[Version("v1", storage=True)])
        for kind, namespaced in (("Role", True), ("RoleBinding", True),
                                 ("ClusterRole", False), ("ClusterRoleBinding", False))
    ]


def _scale_paths(sub: Obj) -> ScalePaths | None:
    scale = sub.get("scale")
    if not isinstance(scale, dict):
        return None
    return ScalePaths(
        spec_replicas=str(scale.get("specReplicasPath", ".spec.replicas")),
        status_replicas=str(scale.get("statusReplicasPath", ".status.replicas")),
        label_selector=scale.get("labelSelectorPath"),
    )


def from_crd(crd: Obj) -> ResourceDef:
    """Build the served resource from a (validated) CustomResourceDefinition object."""
    spec = crd["spec"]
    names = spec["names"]
    versions: list[Version] = []
    for v in spec.get("versions", []):
        sub = v.get("subresources") or {}
        versions.append(Version(
            name=v["name"],
            served=bool(v.get("served", True)),
            storage=bool(v.get("storage", False)),
            schema=(v.get("schema") or {}).get("openAPIV3Schema"),
            printer_columns=list(v.get("additionalPrinterColumns") or []),
            status="status" in sub,
            scale=_scale_paths(sub),
            selectable_fields=[f["jsonPath"].lstrip(".") for f in v.get("selectableFields") or []],
        ))
    return ResourceDef(
        group=spec["group"],
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        versions=versions,
        short_names=list(names.get("shortNames") or []),
        categories=list(names.get("categories") or []),
        builtin=False,
        update_requires_rv=True,
        generation_from_all=True,
        has_generation=True,
    )


class Registry:
    """Every servable resource, keyed by `group/plural`, in registration order."""

    def __init__(self) -> None:
        self._by_key: dict[str, ResourceDef] = {}

    def add(self, rdef: ResourceDef) -> None:
        self._by_key[rdef.key] = rdef

    def remove(self, key: str) -> None:
        self._by_key.pop(key, None)

    def get(self, key: str) -> ResourceDef | None:
        return self._by_key.get(key)

    def lookup(self, group: str, version: str, plural: str) -> ResourceDef | None:
        rdef = self._by_key.get(f"{group}/{plural}")
        if rdef is None or rdef.version(version) is None:
            return None
        return rdef

    def all(self) -> list[ResourceDef]:
        return list(self._by_key.values())

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions, preferred (storage) version first."""
        out: dict[str, list[str]] = {}
        for rdef in self._by_key.values():
            served = [v.name for v in rdef.versions if v.served]
            pref = rdef.storage_version.name
            ordered = _by_priority(served, pref)
            have = out.setdefault(rdef.group, [])
            for name in ordered:
                if name not in have:
                    have.append(name)
        return out


def _by_priority(names: list[str], preferred: str) -> list[str]:
    return sorted(names, key=lambda n: (n != preferred, _version_rank(n)))


def _version_rank(name: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", name)
    if not m:
        return (3, 0, 0)
    major = int(m.group(1))
    level = {"alpha": 2, "beta": 1, None: 0}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (level, -major, -minor)
