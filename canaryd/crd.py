"""The Rollout CustomResourceDefinition, generated from the pydantic models.

The models are the one source of truth; `deploy/crds/canaryd-rollout.yaml` is this output,
checked in and compared by a test. Pydantic's JSON Schema is turned into a structural
OpenAPI v3 schema: references inlined, nullable unions folded, titles dropped.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from canaryd.core import model, policy

# Not fields of apiextensions JSONSchemaProps (a real API server refuses them).
_DROP = {"title", "default", "propertyNames"}

# Maps keyed by a validated name (pydantic's patternProperties) become additionalProperties
# with a CEL rule on the keys: structural schemas refuse patternProperties. The bound on the
# number of keys keeps the rule's estimated cost inside the API server's budget.
_MAX_MAP_KEYS = 64


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            return _structural({**options[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "patternProperties":
            ((pattern, item),) = value.items()
            out["additionalProperties"] = _structural(item, defs)
            out["maxProperties"] = _MAX_MAP_KEYS
            out["x-kubernetes-validations"] = [
                {
                    "rule": f"self.all(k, k.size() <= 63 && k.matches('{pattern}'))",
                    "message": f"keys must be DNS-1123 labels ({pattern})",
                }
            ]
            continue
        if key == "description":
            out[key] = " ".join(str(value).split())  # docstrings: one paragraph
        elif key == "const":
            out["enum"] = [value]
        elif key == "exclusiveMinimum":  # OpenAPI 3.0 (Kubernetes): a bound and a flag
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum":
            out["maximum"] = value
            out["exclusiveMaximum"] = True
        elif key == "properties":
            out[key] = {k: _structural(v, defs) for k, v in value.items()}
        elif key == "additionalProperties" and value is False:
            continue  # structural schemas prune unknown fields instead
        elif key == "additionalProperties" and value is True:
            continue  # an open object says x-kubernetes-preserve-unknown-fields instead
        else:
            out[key] = _structural(value, defs)
    return out


def spec_schema(of: type[BaseModel] = model.RolloutSpec) -> dict[str, Any]:
    raw = of.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _structural(raw, defs)
    return schema


def _crd(*, kind: str, plural: str, singular: str, short: list[str], description: str,
         spec: dict[str, Any], status: str, printer: list[dict[str, Any]]) -> dict[str, Any]:
    """A namespaced canaryd.io CRD: one served and stored version, a status subresource,
    `spec` structural, `status` canaryd's own (preserved as written)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{model.GROUP}"},
        "spec": {
            "group": model.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": singular,
                "shortNames": short,
                "listKind": f"{kind}List",
                "categories": ["canaryd"],
            },
            "versions": [
                {
                    "name": model.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": {
                                    "type": "object",
                                    "description": status,
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def rollout_crd() -> dict[str, Any]:
    printer: list[dict[str, Any]] = [
        {"name": "Target", "type": "string", "jsonPath": ".spec.target",
         "description": "the service being rolled out"},
        {"name": "Version", "type": "string", "jsonPath": ".spec.version",
         "description": "the version being rolled out"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Weight", "type": "integer", "jsonPath": ".status.weights.canary",
         "description": "percentage of traffic on the new version"},
        {"name": "Step", "type": "string", "jsonPath": ".status.stepProgress",
         "description": "current step / steps, 1-based"},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return _crd(
        kind=model.KIND, plural=model.PLURAL, singular="rollout", short=["ro", "cro"],
        description="A progressive rollout of a new version of a service.",
        spec=spec_schema(), printer=printer,
        status="The progress, written by canaryd only: phase, weights, step (stepIndex "
        "0-based, stepProgress '2/3' 1-based), every check result and transition.",
    )


def policy_crd() -> dict[str, Any]:
    """RolloutPolicy: a Rollout spec without a version, per GitOps target (docs/gitops.md)."""
    printer: list[dict[str, Any]] = [
        {"name": "Target", "type": "string", "jsonPath": ".spec.target",
         "description": "the service its rollouts release"},
        {"name": "Canary", "type": "string", "jsonPath": ".spec.workloads.canary",
         "description": "the Deployment whose pod template changes start rollouts"},
        {"name": "OnChange", "type": "string", "jsonPath": ".spec.onChange"},
        {"name": "Last", "type": "string", "jsonPath": ".status.lastRollout",
         "description": "the rollout it last started"},
        {"name": "Version", "type": "string", "jsonPath": ".status.lastVersion",
         "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return _crd(
        kind=policy.POLICY_KIND, plural=policy.POLICY_PLURAL, singular="rolloutpolicy",
        short=["rop"], spec=spec_schema(policy.PolicySpec), printer=printer,
        description="Start a Rollout whenever the canary Deployment's pod template changes "
        "(GitOps): the spec of every rollout of this target, without a version.",
        status="Written by canaryd only: the template last acted on (observedTemplateHash), "
        "the rollout last started (lastRollout, lastVersion), how many it started, "
        "conditions Ready and Waiting.",
    )


HEADER = "# Generated from canaryd.core.model by `python -m canaryd.crd`; do not edit.\n"


def render() -> str:
    return HEADER + yaml.safe_dump(rollout_crd(), sort_keys=False, width=100)


def render_policy() -> str:
    return HEADER.replace("`python -m canaryd.crd`", "`python -m canaryd.crd policy`") + \
        yaml.safe_dump(policy_crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    import sys

    print(render_policy() if sys.argv[1:] == ["policy"] else render(), end="")
