"""Gateway API HTTPRoute router: `gateway.networking.k8s.io`, or Linkerd's `policy.linkerd.io`.

canaryd manages two backendRefs of one rule (the stable and the canary Service). It writes
their weights as integers summing to 100 with a JSON Patch that first `test`s that the rule
and both entries still hold what was read (every field but the weights): a concurrent edit
that reorders the rules or the backendRefs makes the patch fail (422) instead of landing on
the wrong entry. The patch does not test `metadata.resourceVersion`, because a mesh writing
the route's status would then fail every write. Other rules, other backendRefs, parentRefs,
filters and status are never sent, so they stay exactly as they were.

Gateway API weights are relative (an absent weight means 1): `read` reports the two managed
weights as percentages of their sum, so 1/1 reads 50/50, and 0/0 (no traffic at all) reads
0/0. A managed rule that also sends traffic to a backendRef canaryd does not manage cannot be
split safely: that is a RouterError, as is a missing route, rule or backendRef.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes_asyncio import client

from canaryd.adapters.kube import TIMEOUT
from canaryd.adapters.routers.base import (
    JSON_PATCH,
    RouterError,
    call,
    read_back,
    shares,
    weight_op,
)
from canaryd.core.model import Weights
from canaryd.core.routerspec import BackendRef
from canaryd.core.routerspec import GatewayApiRouter as GatewayApiSpec

# The storage version of each group's HTTPRoute CRD (canaryd/data/crds/*-httproute.yaml).
VERSIONS = {"gateway.networking.k8s.io": "v1", "policy.linkerd.io": "v1beta3"}
PLURAL = "httproutes"
DEFAULT_WEIGHT = 1  # Gateway API: a backendRef without a weight gets weight 1
T = TypeVar("T")


@dataclass(frozen=True)
class _Located:
    rule: int  # index into spec.rules
    stable: int  # indexes into the rule's backendRefs
    canary: int
    body: dict[str, Any]  # the rule as read

    @property
    def refs(self) -> list[dict[str, Any]]:
        refs: list[dict[str, Any]] = self.body.get("backendRefs") or []
        return refs


def weight_of(ref: dict[str, Any]) -> int:
    value = ref.get("weight", DEFAULT_WEIGHT)
    return max(0, value) if isinstance(value, int) else DEFAULT_WEIGHT


def _pointer(token: str) -> str:
    """One JSON Pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _describe(ref: BackendRef) -> str:
    return ref.name if ref.port is None else f"{ref.name}:{ref.port}"


def _listed(refs: list[dict[str, Any]]) -> str:
    names = [
        str(r.get("name")) + (f":{r['port']}" if "port" in r else "") for r in refs
    ]
    return ", ".join(names) or "none"


class GatewayApiRouter:
    def __init__(self, api: client.ApiClient, namespace: str, spec: GatewayApiSpec) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.spec = spec
        self.group = spec.api_group
        self.version = VERSIONS[spec.api_group]
        self.name = f"httproute.{self.group} {namespace}/{spec.http_route}"

    async def _call(self, verb: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await call(verb, self.name, fn, served=f"{self.group}/{self.version} {PLURAL}")

    async def _get(self) -> dict[str, Any]:
        obj: dict[str, Any] = await self._call(
            "get",
            lambda: self.custom.get_namespaced_custom_object(
                self.group, self.version, self.namespace, PLURAL, self.spec.http_route,
                _request_timeout=TIMEOUT,
            ),
        )
        return obj

    def _rule(self, rules: list[dict[str, Any]]) -> tuple[int, str]:
        """Index of the managed rule and how to name it in errors."""
        if self.spec.rule_name is not None:
            names = [r.get("name") for r in rules]
            if self.spec.rule_name not in names:
                raise RouterError(f"{self.name} has no rule named {self.spec.rule_name!r}")
            return names.index(self.spec.rule_name), f"rule {self.spec.rule_name!r}"
        index = self.spec.rule or 0
        if index >= len(rules):
            raise RouterError(f"{self.name} has no rule {index} (it has {len(rules)})")
        return index, f"rule {index}"

    def _is(self, ref: dict[str, Any], want: BackendRef) -> bool:
        return (
            ref.get("group", "") in ("", "core")
            and ref.get("kind", "Service") == "Service"
            and ref.get("namespace", self.namespace) == self.namespace
            and ref.get("name") == want.name
            and (want.port is None or ref.get("port") == want.port)
        )

    def _locate(self, obj: dict[str, Any]) -> _Located:
        rules: list[dict[str, Any]] = (obj.get("spec") or {}).get("rules") or []
        if not rules:
            raise RouterError(f"{self.name} has no rules")
        index, label = self._rule(rules)
        refs: list[dict[str, Any]] = rules[index].get("backendRefs") or []
        where = f"{self.name} {label}"
        found: dict[str, int] = {}
        for role, want in (("stable", self.spec.stable), ("canary", self.spec.canary)):
            hits = [i for i, ref in enumerate(refs) if self._is(ref, want)]
            if not hits:
                raise RouterError(
                    f"{where}: {role} backendRef {_describe(want)} is not in its backendRefs "
                    f"(it has: {_listed(refs)})"
                )
            if len(hits) > 1:
                raise RouterError(
                    f"{where}: {role} backendRef {_describe(want)} matches {len(hits)} "
                    "backendRefs; name its port so canaryd knows which one to manage"
                )
            found[role] = hits[0]
        others = [
            ref for i, ref in enumerate(refs)
            if i not in found.values() and weight_of(ref) > 0
        ]
        if others:
            raise RouterError(
                f"{where} also sends traffic to {_listed(others)}, which canaryd does not "
                "manage; refusing to split it"
            )
        return _Located(index, found["stable"], found["canary"], rules[index])

    @staticmethod
    def _weights(loc: _Located) -> Weights:
        return shares(weight_of(loc.refs[loc.stable]), weight_of(loc.refs[loc.canary]))

    async def read(self) -> Weights:
        return self._weights(self._locate(await self._get()))

    async def write(self, weights: Weights) -> Weights:
        if min(weights.stable, weights.canary) < 0 or weights.stable + weights.canary != 100:
            raise RouterError(f"{self.name}: refusing weights {weights}: they must sum to 100")
        loc = self._locate(await self._get())
        if self._weights(loc) == weights:
            return weights
        base = f"/spec/rules/{loc.rule}"
        # The rule must still be the rule that was read (same name, matches, filters...).
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": f"{base}/{_pointer(key)}", "value": value}
            for key, value in loc.body.items()
            if key != "backendRefs"
        ]
        for index, weight in ((loc.stable, weights.stable), (loc.canary, weights.canary)):
            ref = loc.refs[index]
            path = f"{base}/backendRefs/{index}"
            ops.extend(
                {"op": "test", "path": f"{path}/{_pointer(key)}", "value": value}
                for key, value in ref.items()
                if key != "weight"
            )
            ops.append(weight_op(ref, f"{path}/weight", weight))
        await self._call(
            "patch",
            lambda: self.custom.patch_namespaced_custom_object(
                self.group, self.version, self.namespace, PLURAL, self.spec.http_route, ops,
                _content_type=JSON_PATCH, _request_timeout=TIMEOUT,
            ),
        )
        return await read_back(self, self.name, weights)
