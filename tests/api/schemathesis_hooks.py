"""Schemathesis hooks (SCHEMATHESIS_HOOKS): half the generated schema-valid submissions
become valid Rollouts on objects of their own, so that creates succeed and the stateful
phase follows the document's links (get, pause, resume, promote, abort) to real rollouts.
The rest stay as generated (schema-invalid ones always): data the server must answer
correctly.

Loaded by the `st` process from this file's path; it imports nothing from the tests."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import schemathesis
import yaml

EXAMPLE = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "config" / "examples" / "canary.yaml").read_text())


def valid(seed: Any) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(seed, sort_keys=True, default=str).encode())
    name = f"st-{digest.hexdigest()[:12]}"
    body: dict[str, Any] = copy.deepcopy(EXAMPLE)
    body["metadata"] = {"name": name, "namespace": "demo"}
    body["spec"]["target"] = name
    body["spec"]["router"]["istio"]["virtualService"] = name
    body["spec"]["workloads"].update(stable=f"{name}-stable", canary=f"{name}-canary")
    return body


@schemathesis.hook("map_case")
def map_case(context: Any, case: Any) -> Any:
    operation = case.operation
    if operation.method.upper() != "POST" or operation.path != "/api/v1/rollouts":
        return case
    meta = getattr(case, "_meta", None)  # negative cases must stay invalid
    if meta is None or getattr(meta.generation.mode, "name", "") != "POSITIVE":
        return case
    seed = json.dumps(case.body, sort_keys=True, default=str)
    if int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 2:
        return case
    case.body = valid(case.body)
    return case
