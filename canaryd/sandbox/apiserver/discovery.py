"""Discovery documents: /version, /api, /apis, APIResourceLists and a minimal OpenAPI v3.

Everything is generated from the registry, so a CRD appears here as soon as it is
created. `/api` and `/apis` also answer aggregated discovery (apidiscovery.k8s.io/v2,
`as=APIGroupDiscoveryList`) when the client asks for it first, as kubectl and client-go
do: one document with every group, version and resource. `/openapi/v3` lists one
document per group-version whose PATCH operations carry `x-kubernetes-group-version-kind`
and a `fieldValidation` parameter: that is how kubectl decides the server validates fields
itself, so
`kubectl apply` works without `--validate=false` and without `/openapi/v2`.
"""

from __future__ import annotations

import copy
import hashlib
import json

from canaryd.sandbox.apiserver.errors import Obj
from canaryd.sandbox.apiserver.resources import ALL_VERBS, Registry, ResourceDef

# The emulator follows kube-apiserver v1.36's behaviour but reports an older release on
# purpose: kubectl version dispatchers (the Cloud SDK's) pick a client by server version, and
# kubectl 1.33+ sends built-in objects as protobuf (`kubectl create namespace`), which the
# emulator does not decode; kubectl 1.32 and older send JSON.
GIT_VERSION = "v1.30.0"
_SUB_VERBS = ["get", "patch", "update"]
# A custom resource's verbs, in the order apiextensions lists them.
_CR_VERBS = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def version_info() -> Obj:
    return {
        "major": "1", "minor": "30", "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.26.0", "compiler": "gc",
        "platform": "linux/amd64",
    }


def wants_aggregated(accept: str) -> bool:
    """Is aggregated discovery the first media type the client accepts that we serve?"""
    for part in accept.split(","):
        media = part.strip()
        if "as=APIGroupDiscoveryList" in media:
            if "v=v2;" in media or media.endswith("v=v2"):
                return True
            continue
        if media.split(";")[0] in ("application/json", "*/*"):
            return False
    return False


def aggregated(registry: Registry, core: bool) -> Obj:
    """APIGroupDiscoveryList for `/api` (core) or `/apis` (every named group)."""
    items: list[Obj] = []
    for g, versions in registry.groups().items():
        if core != (g == ""):
            continue
        vdocs = []
        for v in versions:
            resources = []
            for rdef in sorted((r for r in registry.all() if r.group == g and r.version(v)),
                               key=lambda r: r.plural):
                vdef = rdef.version(v)
                assert vdef is not None
                kind: Obj = ({"group": "", "version": "", "kind": rdef.kind} if rdef.builtin
                             else {"group": g, "version": v, "kind": rdef.kind})
                res: Obj = {"resource": rdef.plural, "responseKind": kind,
                            "scope": "Namespaced" if rdef.namespaced else "Cluster",
                            "singularResource": rdef.singular,
                            "verbs": ALL_VERBS if rdef.builtin else _CR_VERBS}
                if rdef.short_names:
                    res["shortNames"] = rdef.short_names
                if rdef.categories:
                    res["categories"] = rdef.categories
                subs = []
                if vdef.scale is not None:
                    subs.append({"subresource": "scale", "responseKind": {
                        "group": "autoscaling", "version": "v1", "kind": "Scale"},
                        "verbs": _SUB_VERBS})
                if vdef.status:
                    subs.append({"subresource": "status", "responseKind": kind,
                                 "verbs": _SUB_VERBS})
                if subs:
                    res["subresources"] = subs
                resources.append(res)
            vdocs.append({"version": v, "resources": resources, "freshness": "Current"})
        items.append({"metadata": {"name": g} if g else {}, "versions": vdocs})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": items}


def core_versions(server_address: str) -> Obj:
    return {
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                        "serverAddress": server_address}],
    }


def _group_doc(group: str, versions: list[str]) -> Obj:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def group_list(registry: Registry) -> Obj:
    groups = [_group_doc(g, vs) for g, vs in registry.groups().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: Registry, name: str) -> Obj | None:
    versions = registry.groups().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(name, versions)}


def _hash(rdef: ResourceDef) -> str:
    return hashlib.sha256(rdef.key.encode()).hexdigest()[:12]


def resource_list(registry: Registry, group_name: str, version: str) -> Obj | None:
    items: list[Obj] = []
    for rdef in registry.all():
        v = rdef.version(version)
        if rdef.group != group_name or v is None:
            continue
        main: Obj = {
            "name": rdef.plural, "singularName": rdef.singular, "namespaced": rdef.namespaced,
            "kind": rdef.kind, "verbs": ALL_VERBS, "storageVersionHash": _hash(rdef),
        }
        if rdef.short_names:
            main["shortNames"] = rdef.short_names
        if rdef.categories:
            main["categories"] = rdef.categories
        items.append(main)
        if v.status:
            items.append({"name": f"{rdef.plural}/status", "singularName": "",
                          "namespaced": rdef.namespaced, "kind": rdef.kind,
                          "verbs": _SUB_VERBS})
        if v.scale is not None:
            items.append({"name": f"{rdef.plural}/scale", "singularName": "",
                          "namespaced": rdef.namespaced, "group": "autoscaling",
                          "version": "v1", "kind": "Scale", "verbs": _SUB_VERBS})
    if not items:
        return None
    gv = f"{group_name}/{version}" if group_name else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": items}


def _gv_path(group_name: str, version: str) -> str:
    return f"api/{version}" if not group_name else f"apis/{group_name}/{version}"


def openapi_v3_root(registry: Registry) -> Obj:
    paths: Obj = {}
    for g, versions in registry.groups().items():
        for v in versions:
            p = _gv_path(g, v)
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={_gv_hash(registry, g, v)}"}
    return {"paths": paths}


def _gv_hash(registry: Registry, group_name: str, version: str) -> str:
    """Changes whenever the document does: kubectl caches it by this hash."""
    doc = openapi_v3_group(registry, _gv_path(group_name, version))
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16].upper()


# Definitions are named as kube-apiserver names them: the group reversed, then version, kind.
META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers "
    "should convert recognized schemas to the latest internal value, and may reject "
    "unrecognized values. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#resources")
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers "
    "may infer this from the endpoint the client submits requests to. Cannot be updated. In "
    "CamelCase. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#types-kinds")
_METADATA_DOC = (
    "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#metadata")
_OBJECT_META: Obj = {
    "type": "object",
    "description": "ObjectMeta is metadata that all persisted resources must have, which "
                   "includes all objects users must create.",
    "properties": {
        "name": {"type": "string", "description": "Name must be unique within a namespace."},
        "generateName": {"type": "string", "description": "An optional prefix used by the "
                         "server to generate a unique name when name is not provided."},
        "namespace": {"type": "string", "description": "The namespace the object is in."},
        "labels": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "Map of string keys and values that can be used to "
                                  "organize and categorize objects."},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Annotations is an unstructured key value map stored "
                                       "with a resource."},
        "uid": {"type": "string", "description": "UID is the unique in time and space value "
                                                "for this object."},
        "resourceVersion": {"type": "string", "description": "An opaque value that "
                            "represents the internal version of this object."},
        "generation": {"type": "integer", "format": "int64", "description": "A sequence "
                       "number representing a specific generation of the desired state."},
        "creationTimestamp": {"type": "string", "format": "date-time",
                              "description": "When this object was created."},
    },
}


def definition_name(group_name: str, version: str, kind: str) -> str:
    return ".".join([*reversed(group_name.split(".")), version, kind]) if group_name \
        else f"io.k8s.api.core.{version}.{kind}"


def published_schema(rdef: ResourceDef, version: str, ref_prefix: str) -> Obj | None:
    """A CRD version's schema as kube-apiserver publishes it: apiVersion, kind and metadata
    filled in, tagged with its group-version-kind (how `kubectl explain` finds it)."""
    v = rdef.version(version)
    if v is None or not v.schema or rdef.builtin:
        return None
    schema: Obj = copy.deepcopy(v.schema)
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "description": _API_VERSION_DOC}
    props["kind"] = {"type": "string", "description": _KIND_DOC}
    props["metadata"] = {"allOf": [{"$ref": ref_prefix + META}], "description": _METADATA_DOC}
    schema["x-kubernetes-group-version-kind"] = [
        {"group": rdef.group, "kind": rdef.kind, "version": version}]
    return schema


def schemas(registry: Registry, group_name: str, version: str, ref_prefix: str) -> Obj:
    out: Obj = {}
    for rdef in registry.all():
        if rdef.group != group_name:
            continue
        schema = published_schema(rdef, version, ref_prefix)
        if schema is not None:
            out[definition_name(group_name, version, rdef.kind)] = schema
    if out:
        out[META] = copy.deepcopy(_OBJECT_META)
    return out


def openapi_v3_group(registry: Registry, gv_path: str) -> Obj | None:
    parts = gv_path.strip("/").split("/")
    if parts[0] == "api" and len(parts) == 2:
        group_name, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 3:
        group_name, version = parts[1], parts[2]
    else:
        return None
    paths: Obj = {}
    for rdef in registry.all():
        if rdef.group != group_name or rdef.version(version) is None:
            continue
        base = "/" + _gv_path(group_name, version)
        ns = "/namespaces/{namespace}" if rdef.namespaced else ""
        gvk = {"group": group_name, "version": version, "kind": rdef.kind}
        op = {
            "x-kubernetes-group-version-kind": gvk,
            "x-kubernetes-action": "patch",
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"{base}{ns}/{rdef.plural}/{{name}}"] = {"patch": op}
    if not paths:
        return None
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": paths, "components": {
                "schemas": schemas(registry, group_name, version, "#/components/schemas/")}}
