"""Discovery documents: /version, /api, /apis, APIResourceLists and a minimal OpenAPI v3.

Everything is generated from the registry, so a CRD appears here as soon as it is
created. Aggregated discovery (`as=APIGroupDiscoveryList`) is not produced: the
server answers plain `application/json` and kubectl/client-go fall back to the
legacy per-group documents. `/openapi/v3` lists one document per group-version whose
PATCH operations carry `x-kubernetes-group-version-kind` and a `fieldValidation`
parameter: that is how kubectl decides the server validates fields itself, so
`kubectl apply` works without `--validate=false` and without `/openapi/v2`.
"""

from __future__ import annotations

import hashlib

from canaryd.sandbox.apiserver.errors import Obj
from canaryd.sandbox.apiserver.resources import ALL_VERBS, Registry, ResourceDef

GIT_VERSION = "v1.30.0"
_SUB_VERBS = ["get", "patch", "update"]


def version_info() -> Obj:
    return {
        "major": "1", "minor": "30", "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2024-04-17T00:00:00Z", "goVersion": "go1.22.2", "compiler": "gc",
        "platform": "linux/amd64",
    }


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
    names = sorted(r.key for r in registry.all() if r.group == group_name and r.version(version))
    return hashlib.sha256(",".join(names).encode()).hexdigest()[:16].upper()


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
            "paths": paths, "components": {"schemas": {}}}
