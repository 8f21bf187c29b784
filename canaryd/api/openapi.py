"""The OpenAPI 3.1 document, built from the pydantic models and the route table.

`python -m canaryd.api.openapi > docs/openapi.json` regenerates the committed copy; a test
checks that it matches what the server serves.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from canaryd import __version__
from canaryd.api import schemas
from canaryd.api.rollouts import CONTINUE_PATTERN
from canaryd.core import transitions
from canaryd.core.durations import DURATION_PATTERN, format_duration
from canaryd.core.manifest import RolloutManifest
from canaryd.core.model import Phase

REF = "#/components/schemas/{model}"
_ACTION_TEXT = {
    "pause": "Pause a Progressing rollout (analysis and steps stop; traffic stays).",
    "resume": "Resume a Paused rollout (a manual gate is approved; otherwise the step restarts).",
    "promote": "Skip the remaining steps: send all traffic to the canary.",
    "abort": "Roll back: all traffic back to stable; the rollout ends Aborted.",
}
ACTIONS = {a: _ACTION_TEXT[a] for a in transitions.ACTIONS}  # the machine's, described


EXAMPLE: dict[str, Any] = {
    "apiVersion": "canaryd.io/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": "podinfo-v2", "namespace": "demo"},
    "spec": {
        "target": "podinfo",
        "version": "ghcr.io/stefanprodan/podinfo:6.5.0",
        "router": {"istio": {"virtualService": "podinfo", "route": "primary",
                             "stable": {"host": "podinfo", "subset": "stable"},
                             "canary": {"host": "podinfo", "subset": "canary"}}},
        "workloads": {"stable": "podinfo-stable", "canary": "podinfo-canary"},
        "plan": {"steps": [{"weight": 10}, {"weight": 30}, {"weight": 60}]},
        "analysis": {"profile": "sandbox"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _tidy(node: Any) -> Any:
    """Durations default to seconds in Python; show them as the strings the schema wants."""
    if isinstance(node, list):
        return [_tidy(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _tidy(v) for k, v in node.items()}
    if out.get("pattern") == DURATION_PATTERN and isinstance(out.get("default"), int | float):
        out["default"] = format_duration(float(out["default"]))
    return out


def components() -> dict[str, Any]:
    models: list[type[BaseModel]] = [RolloutManifest, *schemas.COMPONENTS]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    defs: dict[str, Any] = _tidy(top["$defs"])
    return defs


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _json(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": _ref(schema)}}}
    if headers:
        out["headers"] = headers
    return out


AUTH = {
    "401": _problem("no valid bearer token"),
    "403": _problem("the token's role is too low"),
}
NAME_PARAMS = [
    {"name": "namespace", "in": "path", "required": True, "example": "demo",
     "schema": {"type": "string", "maxLength": 63,
                "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
    {"name": "name", "in": "path", "required": True, "example": "podinfo-v2",
     "schema": {"type": "string", "maxLength": 253,
                "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"}},
]
ONE = {"400": _problem("malformed path"), "404": _problem("no such rollout"),
       "503": _problem("Kubernetes unavailable")}


def _label_query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", "maxLength": 63,
                       "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"}}


def _links() -> dict[str, Any]:
    """From a created rollout to the calls on it (clients and test generators follow these)."""
    parameters = {"namespace": "$response.body#/metadata/namespace",
                  "name": "$response.body#/metadata/name"}
    ops = {"getRollout": "getRollout", **{f"{a}Rollout": f"{a}Rollout" for a in ACTIONS}}
    return {link: {"operationId": op, "parameters": parameters} for link, op in ops.items()}


def paths() -> dict[str, Any]:
    location = {"Location": {"description": "the rollout's URL", "schema": {"type": "string"}}}
    manifest = {"schema": _ref("RolloutManifest"), "example": EXAMPLE}
    warning = {"Warning": {"description": "deprecated fields in use: 299 canaryd \"...\"",
                           "schema": {"type": "string"}}}
    created = _json("created (or replayed, with Idempotent-Replayed: true)", "Rollout",
                    {**location, **warning})
    created["links"] = _links()
    out: dict[str, Any] = {
        "/healthz": {"get": {"operationId": "healthz", "summary": "The process is alive.",
                             "security": [],
                             "responses": {"200": _json("alive", "Health")}}},
        "/readyz": {"get": {
            "operationId": "readyz", "security": [],
            "summary": "Kubernetes (rollout cache synced) and Prometheus reachable, config ok.",
            "responses": {"200": _json("ready", "Readiness"),
                          "503": _json("not ready", "Readiness")}}},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics of the daemon.",
            "security": [],
            "responses": {"200": {"description": "text exposition format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/api/v1/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document.", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": {"application/json": {"schema": {
                                      "type": "object"}}}}}}},
        "/api/v1/whoami": {"get": {
            "operationId": "whoami", "summary": "The calling token's name and role (read).",
            "responses": {"200": _json("the caller", "WhoAmI"), **AUTH}}},
        "/api/v1/profiles": {"get": {
            "operationId": "listProfiles",
            "summary": "The live configuration's analysis profiles: checks, thresholds, "
                       "limits (read).",
            "responses": {"200": _json("every profile", "ProfileList"), **AUTH}}},
        "/api/v1/rollouts": {
            "get": {
                "operationId": "listRollouts",
                "summary": "List rollouts from the watch-fed cache (read).",
                "parameters": [
                    _label_query("namespace", "only this namespace"),
                    _label_query("target", "only rollouts of this spec.target"),
                    {"name": "phase", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": [p.value for p in Phase]}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                "default": 100}},
                    {"name": "continue", "in": "query", "required": False,
                     "description": "metadata.continue of the previous page",
                     "schema": {"type": "string", "maxLength": 317,
                                "pattern": CONTINUE_PATTERN}},
                ],
                "responses": {"200": _json("one page of rollouts", "RolloutList"),
                              "400": _problem("a bad query parameter"), **AUTH,
                              "503": _problem("the rollout cache is not synced yet")},
            },
            "post": {
                "operationId": "submitRollout",
                "summary": "Submit a Rollout manifest (submit; operate for spec.supersede).",
                "parameters": [{
                    "name": "Idempotency-Key", "in": "header", "required": False,
                    "description": "a retried POST with the same key returns the same rollout",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                               "pattern": "^[\\x21-\\x7e]+$"},
                }, {
                    "name": "dryRun", "in": "query", "required": False,
                    "description": "All: validate everything, including Kubernetes' schema "
                                   "and admission (dryRun=All), and create nothing (200)",
                    "schema": {"type": "string", "enum": ["All"]},
                }],
                "requestBody": {"required": True, "content": {
                    "application/json": manifest, "application/yaml": manifest}},
                "responses": {
                    "200": _json("dryRun=All: valid; the rollout as it would be created "
                                 "(nothing was)", "Rollout", warning),
                    "201": created,
                    "400": _problem("malformed body or Idempotency-Key"), **AUTH,
                    "409": _problem("an active rollout owns the target, or the name is taken"),
                    "413": _problem("body over the size limit"),
                    "415": _problem("not JSON or YAML"),
                    "422": _problem(
                        "invalid fields, each with a JSON pointer: against the schema, and "
                        "against rules it cannot carry (plan vs strategy, one router kind, "
                        "stable != canary, the live configuration's profiles, thresholds "
                        "only tightening them)"),
                    "502": _problem("Kubernetes refused the write"),
                    "503": _problem("Kubernetes unavailable"),
                },
            },
        },
        "/api/v1/events": {"get": {
            "operationId": "watchRollouts",
            "summary": "Server-sent events of the rollout list (read): the list, then one "
                       "event per change. Resume with Last-Event-ID.",
            "parameters": [
                _label_query("namespace", "only this namespace"),
                _label_query("target", "only rollouts of this spec.target"),
                {"name": "phase", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": [*(p.value for p in Phase), "Unknown"]}},
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9]{1,15}$"}}],
            "responses": {"200": {
                "description": "text/event-stream; events: reset, added, modified, deleted, "
                               "synced, bookmark (schemas ListRow, ListDeleted, ListSynced)",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                "400": _problem("a bad query parameter or Last-Event-ID"), **AUTH,
                "429": _problem("the token holds too many event streams"),
                "503": _problem("the rollout cache is not synced yet, or too many streams")}}},
        "/api/v1/rollouts/{namespace}/{name}": {"get": {
            "operationId": "getRollout", "summary": "One rollout, from the cache (read).",
            "parameters": NAME_PARAMS,
            "responses": {"200": _json("the rollout", "Rollout"), **AUTH, **ONE}}},
        "/api/v1/rollouts/{namespace}/{name}/events": {"get": {
            "operationId": "followRollout",
            "summary": "Server-sent events: every transition and check, then the verdict "
                       "(read). Resume with Last-Event-ID.",
            "parameters": [*NAME_PARAMS, {
                "name": "Last-Event-ID", "in": "header", "required": False,
                "schema": {"type": "string", "pattern": "^[0-9]+(\\.([0-9]+|final))?$"}}],
            "responses": {"200": {
                "description": "text/event-stream; events: state, transition, check, gap, "
                               "verdict (schemas StateEvent, TransitionEvent, CheckEvent, "
                               "GapEvent, VerdictEvent)",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                **AUTH, **ONE}}},
        "/api/v1/rollouts/{namespace}/{name}/analysis": {"get": {
            "operationId": "getRolloutAnalysis",
            "summary": "What the rollout is judged by: its profile's checks after the "
                       "rollout's overrides and dry-run checks (read).",
            "parameters": NAME_PARAMS,
            "responses": {"200": _json("the effective analysis", "AnalysisView"), **AUTH, **ONE,
                          "409": _problem("the spec does not resolve against the live "
                                          "configuration (the reason is given)")}}},
    }
    for action, summary in ACTIONS.items():
        out[f"/api/v1/rollouts/{{namespace}}/{{name}}/{action}"] = {"post": {
            "operationId": f"{action}Rollout", "summary": f"{summary} (operate)",
            "parameters": NAME_PARAMS,
            "responses": {"202": _json("requested; the controller acts on it", "Rollout"),
                          **AUTH, **ONE,
                          "409": _problem("the action does not apply in the current phase"),
                          "502": _problem("Kubernetes refused the write")}}}
    return out


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "canaryd",
            "version": __version__,
            "description": "Submit canary rollouts, follow them live, act on them. "
                           "Roles: read < submit < operate < admin (see docs/api.md).",
        },
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "schemas": components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
