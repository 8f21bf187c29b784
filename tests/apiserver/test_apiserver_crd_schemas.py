"""CRDs the real kube-apiserver refuses are refused by the emulator too, with the same status,
message and causes; and the ones it accepts are accepted.

Every case is sent with `dryRun=All` (nothing is stored, so the shared real control plane
does not rebuild its OpenAPI document per case). The expected answers in
data/crd_refusals.json are kube-apiserver v1.36.3's; the real tier re-checks each of them,
so a new release that words something differently fails here until the file is refreshed
(send each case to the real server and record status, message and causes).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

KUBE_BACKENDS = ("emulator", "real")
EXPECTED: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "crd_refusals.json").read_text())
URL = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All"
S = {"type": "string"}


def crd(schema: dict[str, Any], *, status: bool = False) -> dict[str, Any]:
    version: dict[str, Any] = {"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": schema}}
    if status:
        version["subresources"] = {"status": {}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.bad.example.com"},
            "spec": {"group": "bad.example.com", "scope": "Namespaced",
                     "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
                     "versions": [version]}}


def spec_props(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"spec": {"type": "object", "properties": props}}}


def field(t: dict[str, Any]) -> dict[str, Any]:
    return crd(spec_props(t=t))


OK = spec_props(a=S)


def mutate(edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    body = crd(copy.deepcopy(OK))
    edit(body)
    return body


def rename(body: dict[str, Any], name: str) -> None:
    body["metadata"]["name"] = name


def second_version(body: dict[str, Any], **changes: Any) -> None:
    body["spec"]["versions"].append({**copy.deepcopy(body["spec"]["versions"][0]), **changes})


MAP_ITEM = {"type": "object", "properties": {"n": S}, "required": ["n"]}
EMBEDDED_LABELS = {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {
    "metadata": {"type": "object", "properties": {"labels": {
        "type": "object", "additionalProperties": {"type": "string", "default": "x"}}}}}}

SCHEMA_CASES: dict[str, dict[str, Any]] = {
    "patternProperties": field({"type": "object", "patternProperties": {"^a": S}}),
    "patternProperties-with-additional": field({"type": "object", "additionalProperties": {
        "type": "object"}, "patternProperties": {"^a": S}}),
    "missing-type-field": field({"properties": {"a": S}}),
    "missing-type-items": field({"type": "array", "items": {"properties": {"a": S}}}),
    "missing-type-root": crd({"properties": {"spec": {"type": "object"}}}),
    "root-not-object": crd({"type": "string"}),
    "array-without-items": field({"type": "array"}),
    "additionalProperties-with-properties": field({"type": "object", "properties": {"a": S},
                                                   "additionalProperties": S}),
    "additionalProperties-false": field({"type": "object", "additionalProperties": False}),
    "additionalProperties-false-with-properties": field({
        "type": "object", "properties": {"a": S}, "additionalProperties": False}),
    "additionalProperties-true-with-properties": field({
        "type": "object", "properties": {"a": S}, "additionalProperties": True}),
    "additionalProperties-root": crd({"type": "object", "additionalProperties": S}),
    "ref": field({"$ref": "#/definitions/x"}),
    "ref-with-type": field({"type": "object", "$ref": "#/definitions/x"}),
    "definitions": crd({"type": "object", "definitions": {"x": S},
                        "properties": {"spec": {"type": "object"}}}),
    "dependencies": field({"type": "object", "properties": {"a": S},
                           "dependencies": {"a": ["b"]}}),
    "id": field({"type": "string", "id": "x"}),
    "schema-keyword": field({"type": "string",
                             "$schema": "http://json-schema.org/draft-04/schema#"}),
    "additionalItems": field({"type": "array", "items": S, "additionalItems": False}),
    "nullable-root": crd({"type": "object", "nullable": True}),
    "nullable-in-anyOf": field({"type": "string", "anyOf": [{"nullable": True}]}),
    "type-null": field({"type": "null"}),
    "type-unknown": field({"type": "foo"}),
    "preserve-unknown-false": field({"type": "object",
                                     "x-kubernetes-preserve-unknown-fields": False}),
    "uniqueItems": field({"type": "array", "items": S, "uniqueItems": True}),
    "items-list": field({"type": "array", "items": [S, S]}),
    "int-or-string-with-type": field({"type": "string", "x-kubernetes-int-or-string": True}),
    "int-or-string-preserve": field({"x-kubernetes-int-or-string": True,
                                     "x-kubernetes-preserve-unknown-fields": True}),
    "int-or-string-anyOf-ok": field({"x-kubernetes-int-or-string": True, "anyOf": [
        {"type": "integer"}, {"type": "string"}]}),
    "anyOf-with-type": field({"type": "string", "anyOf": [{"type": "string"},
                                                          {"type": "integer"}]}),
    "allOf-with-description": field({"type": "string", "allOf": [{"description": "x"}]}),
    "oneOf-with-default": field({"type": "string", "oneOf": [{"default": "x"}]}),
    "not-with-preserve": field({"type": "object", "not": {
        "x-kubernetes-preserve-unknown-fields": True}}),
    "anyOf-new-field": field({"type": "object", "anyOf": [{"properties": {"z": S}}]}),
    "anyOf-metadata": field({"type": "object", "properties": {"metadata": {"type": "object"}},
                             "anyOf": [{"properties": {"metadata": {}}}]}),
    "default-wrong-type": field({"type": "integer", "default": "x"}),
    "default-out-of-range": field({"type": "integer", "minimum": 1, "default": 0}),
    "default-unknown-field": field({"type": "object", "properties": {"a": S},
                                    "default": {"a": "x", "b": "y"}}),
    "default-pattern": field({"type": "string", "pattern": "^a$", "default": "b"}),
    "default-in-metadata": crd({"type": "object", "properties": {"metadata": {
        "type": "object", "properties": {"name": {"type": "string", "default": "x"}}}}}),
    "default-root": crd({"type": "object", "default": {}}),
    "default-in-additionalProperties-under-metadata": crd({"type": "object", "properties": {
        "spec": EMBEDDED_LABELS}}),
    "default-required-missing": field({"type": "object", "required": ["a"],
                                       "properties": {"a": S}, "default": {}}),
    "metadata-extra": crd({"type": "object", "properties": {"metadata": {
        "type": "object", "properties": {"labels": {"type": "object"}}}}}),
    "metadata-not-object": crd({"type": "object", "properties": {"metadata": S}}),
    "kind-not-string": crd({"type": "object", "properties": {"kind": {"type": "integer"}}}),
    "embedded-not-object": field({"type": "string", "x-kubernetes-embedded-resource": True}),
    "embedded-no-props": field({"type": "object", "x-kubernetes-embedded-resource": True}),
    "list-type-map-no-keys": field({"type": "array", "x-kubernetes-list-type": "map",
                                    "items": MAP_ITEM}),
    "list-type-bad": field({"type": "array", "x-kubernetes-list-type": "bag", "items": S}),
    "list-type-on-object": field({"type": "object", "x-kubernetes-list-type": "set"}),
    "list-map-key-not-required": field({
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["n"],
        "items": {"type": "object", "properties": {"n": S}}}),
    "list-map-key-missing": field({
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["z"],
        "items": {"type": "object", "properties": {"n": S}}}),
    "list-set-of-objects": field({"type": "array", "x-kubernetes-list-type": "set",
                                  "items": {"type": "object", "properties": {"n": S}}}),
    "map-type-bad": field({"type": "object", "x-kubernetes-map-type": "bag"}),
    "pattern-invalid-re2": field({"type": "string", "pattern": "(?<=a)b"}),
    "pattern-invalid": field({"type": "string", "pattern": "(a"}),
    "status-root-extra": crd({"type": "object", "minProperties": 1,
                              "properties": {"status": {"type": "object"}}}, status=True),
    "cel-bad-rule": field({"type": "string", "x-kubernetes-validations": [{"rule": "self >"}]}),
    "cel-empty-rule": field({"type": "string", "x-kubernetes-validations": [{"rule": " "}]}),
    "cel-bad-reason": field({"type": "string", "x-kubernetes-validations": [
        {"rule": "true", "reason": "Nope"}]}),
    "cel-in-anyOf": field({"type": "string", "anyOf": [
        {"x-kubernetes-validations": [{"rule": "true"}]}]}),
    "format-unknown": field({"type": "string", "format": "no-such-format"}),
    "two-problems": crd(spec_props(t={"type": "array"}, u={"properties": {"a": S}})),
}

CRD_CASES: dict[str, dict[str, Any]] = {
    "no-schema": mutate(lambda c: c["spec"]["versions"][0].pop("schema")),
    "no-group": mutate(lambda c: c["spec"].pop("group")),
    "group-one-label": mutate(lambda c: (c["spec"].update(group="example"),
                                         rename(c, "things.example"))),
    "group-bad": mutate(lambda c: (c["spec"].update(group="Bad_Group.com"),
                                   rename(c, "things.Bad_Group.com"))),
    "name-mismatch": mutate(lambda c: rename(c, "others.bad.example.com")),
    "scope-bad": mutate(lambda c: c["spec"].update(scope="Global")),
    "scope-missing": mutate(lambda c: c["spec"].pop("scope")),
    "plural-missing": mutate(lambda c: c["spec"]["names"].pop("plural")),
    "kind-missing": mutate(lambda c: c["spec"]["names"].pop("kind")),
    "plural-bad": mutate(lambda c: (c["spec"]["names"].update(plural="Things"),
                                    rename(c, "Things.bad.example.com"))),
    "kind-bad": mutate(lambda c: c["spec"]["names"].update(kind="Th ing")),
    "listkind-same": mutate(lambda c: c["spec"]["names"].update(listKind="Thing")),
    "shortname-bad": mutate(lambda c: c["spec"]["names"].update(shortNames=["T_1"])),
    "no-versions": mutate(lambda c: c["spec"].update(versions=[])),
    "two-storage": mutate(lambda c: second_version(c, name="v2")),
    "no-storage": mutate(lambda c: c["spec"]["versions"][0].update(storage=False)),
    "dup-versions": mutate(lambda c: second_version(c, storage=False)),
    "version-name-bad": mutate(lambda c: c["spec"]["versions"][0].update(name="V1")),
    "preserve-unknown-true": mutate(lambda c: c["spec"].update(preserveUnknownFields=True)),
    "printer-type-bad": mutate(lambda c: c["spec"]["versions"][0].update(
        additionalPrinterColumns=[{"name": "X", "type": "float", "jsonPath": ".spec.a"}])),
    "printer-path-bad": mutate(lambda c: c["spec"]["versions"][0].update(
        additionalPrinterColumns=[{"name": "X", "type": "string", "jsonPath": "spec.a"}])),
    "printer-format-bad": mutate(lambda c: c["spec"]["versions"][0].update(
        additionalPrinterColumns=[{"name": "X", "type": "string", "format": "x",
                                   "jsonPath": ".spec.a"}])),
    "printer-no-name": mutate(lambda c: c["spec"]["versions"][0].update(
        additionalPrinterColumns=[{"type": "string", "jsonPath": ".spec.a"}])),
    "scale-bad": mutate(lambda c: c["spec"]["versions"][0].update(subresources={"scale": {
        "specReplicasPath": ".status.r", "statusReplicasPath": "status.r"}})),
    "scale-missing": mutate(lambda c: c["spec"]["versions"][0].update(
        subresources={"scale": {}})),
    "per-version-schema-diff": mutate(lambda c: second_version(
        c, name="v2", storage=False, schema={"openAPIV3Schema": {
            "type": "object", "properties": {"spec": {"type": "array"}}}})),
    "per-version-schema-same-bad": (lambda c: (second_version(c, name="v2", storage=False),
                                               c)[1])(field({"type": "array"})),
    "selectable-bad": mutate(lambda c: c["spec"]["versions"][0].update(
        selectableFields=[{"jsonPath": ".spec.nope"}])),
    "selectable-metadata": mutate(lambda c: c["spec"]["versions"][0].update(
        selectableFields=[{"jsonPath": ".metadata.name"}])),
    "selectable-object": mutate(lambda c: c["spec"]["versions"][0].update(
        selectableFields=[{"jsonPath": ".spec"}])),
    "conversion-webhook-no-config": mutate(lambda c: c["spec"].update(
        conversion={"strategy": "Webhook"})),
    "conversion-bad": mutate(lambda c: c["spec"].update(conversion={"strategy": "Magic"})),
    "deprecation-warning-not-deprecated": mutate(lambda c: c["spec"]["versions"][0].update(
        deprecationWarning="x")),
    "k8s-io-group": mutate(lambda c: (c["spec"].update(group="bad.k8s.io"),
                                      rename(c, "things.bad.k8s.io"))),
    "name-bad-chars": mutate(lambda c: (c["spec"]["names"].update(plural="th_ings"),
                                        rename(c, "th_ings.bad.example.com"))),
}

CASES = {**SCHEMA_CASES, **CRD_CASES}


def test_every_case_has_the_real_servers_answer() -> None:
    assert set(CASES) == set(EXPECTED)
    assert sum(1 for e in EXPECTED.values() if e["status"] == 422) >= 90


@pytest.mark.parametrize("case", sorted(CASES))
async def test_crd_judged_as_kube_apiserver_judges_it(bare_http: aiohttp.ClientSession,
                                                      case: str) -> None:
    resp = await bare_http.post(URL, json=CASES[case])
    expected = EXPECTED[case]
    body = await resp.json()
    assert resp.status == expected["status"], body.get("message")
    if expected["status"] == 201:
        return
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "CustomResourceDefinition"
    assert body["details"]["group"] == "apiextensions.k8s.io"
    assert body["message"] == expected["message"]
    assert body["details"]["causes"] == expected["causes"]
