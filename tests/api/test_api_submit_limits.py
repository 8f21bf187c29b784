"""What a submit token may not get through the API: metadata beyond what a rollout needs,
non-finite numbers, promotion without analysis, control characters, error amplification."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client

from canaryd.core.settings import parse_settings
from tests.api.conftest import Served
from tests.api.support import CONFIG, GROUP, PLURAL, VERSION, auth, manifest

BASE = "/api/v1/rollouts"


async def submit(http: aiohttp.ClientSession, body: Any, role: str = "submit",
                 content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type, **auth(role)}
    async with http.post(BASE, data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def pointers(problem: dict[str, Any]) -> dict[str, str]:
    return {e["pointer"]: e["detail"] for e in problem.get("errors", [])}


async def nothing_stored(kube: client.ApiClient) -> bool:
    body = await client.CustomObjectsApi(kube).list_namespaced_custom_object(
        GROUP, VERSION, "demo", PLURAL)
    return body["items"] == []


async def test_metadata_beyond_name_labels_and_annotations_is_refused_naming_the_field(
    http: aiohttp.ClientSession, kube: client.ApiClient,
) -> None:
    body = manifest()
    body["metadata"].update(
        finalizers=["example.com/hold-forever"],
        ownerReferences=[{"apiVersion": "v1", "kind": "Namespace", "name": "demo",
                          "uid": "6f2b1d9e-0000-4000-8000-000000000000"}],
        uid="6f2b1d9e-0000-4000-8000-000000000001",
        annotations={"canaryd.io/action": "promote", "canaryd.io/anything": "x",
                     "example.com/team": "web"},
        labels={"app": "podinfo", "bad label": "x"},
    )
    status, problem = await submit(http, body)
    assert status == 422, problem
    found = pointers(problem)
    for field in ("finalizers", "ownerReferences", "uid"):
        assert "metadata may only hold name, generateName" in found[f"/metadata/{field}"]
    assert any(p.startswith("/metadata/labels/bad label") for p in found), found
    assert "set by canaryd" in found["/metadata/annotations/canaryd.io~1action"]
    assert "set by canaryd" in found["/metadata/annotations/canaryd.io~1anything"]
    assert not any("example.com" in p for p in found)
    assert await nothing_stored(kube)


@pytest.mark.parametrize("document", [
    "min: .nan", "max: .inf", "min: -.Inf", "maxRatioToStable: .NaN",
])
async def test_non_finite_thresholds_are_refused_before_kubernetes_sees_them(
    http: aiohttp.ClientSession, kube: client.ApiClient, document: str,
) -> None:
    body = manifest()
    body["spec"]["analysis"]["thresholds"] = {"istio-success-rate": {"min": 99.5}}
    text = yaml.safe_dump(body).replace("min: 99.5", document)
    status, problem = await submit(http, text.encode(), content_type="application/yaml")
    assert status == 422, problem
    [(where, detail)] = pointers(problem).items()
    assert where.startswith("/spec/analysis/thresholds/istio-success-rate/")
    assert "finite" in detail
    # JSON has no NaN; an overflowing literal is infinite all the same.
    raw = json.dumps(manifest()).replace('"weight": 10', '"weight": 10, "pause": 1e999')
    status, problem = await submit(http, raw.encode())
    assert status == 422 and "/spec/plan/steps/0/pause" in pointers(problem)
    assert await nothing_stored(kube)


async def test_generate_name_is_checked_and_reported_against_itself(
    http: aiohttp.ClientSession,
) -> None:
    body = manifest()
    body["metadata"] = {"namespace": "demo", "generateName": "Bad_Prefix-"}
    status, problem = await submit(http, body)
    assert status == 422
    assert list(pointers(problem)) == ["/metadata/generateName"]
    body["metadata"]["generateName"] = "podinfo-"
    assert (await submit(http, body))[0] == 201


@pytest.mark.parametrize("char", ["\x7f", "\x85", "\x00", "\n"])
async def test_spec_version_refuses_control_characters(
    http: aiohttp.ClientSession, char: str,
) -> None:
    status, problem = await submit(http, manifest(version=f"v1{char}2"))
    assert status == 422 and list(pointers(problem)) == ["/spec/version"]


@pytest.mark.parametrize("steps", [
    [{"weight": 50, "analysis": False}, {"weight": 100, "analysis": False}],
    [{"weight": 20}, {"weight": 100, "analysis": False}],
    [{"weight": 20}, {"weight": 60, "analysis": False}],
])
async def test_promotion_without_analysis_needs_operate_or_a_profile_allowing_it(
    http: aiohttp.ClientSession, served: Served, steps: list[dict[str, Any]],
) -> None:
    body = manifest(plan={"steps": steps})
    status, problem = await submit(http, body)
    assert status == 403, problem
    assert "needs role operate" in problem["detail"]
    assert "spec.plan.steps" in problem["detail"]
    assert (await submit(http, body, role="operate"))[0] == 201
    # The same plan with a profile that allows it: role submit suffices.
    config = yaml.safe_load(CONFIG.read_text())
    config["profiles"]["sandbox"]["allowUnanalysedPromotion"] = True
    served.daemon.settings.current = parse_settings(config)
    other = manifest("other", target="other", own="other", plan={"steps": steps})
    assert (await submit(http, other))[0] == 201


async def test_analysed_plans_and_partly_analysed_ones_stay_with_submit(
    http: aiohttp.ClientSession,
) -> None:
    steps = [{"weight": 10, "analysis": False}, {"weight": 50}]
    assert (await submit(http, manifest(plan={"steps": steps})))[0] == 201


async def test_thousands_of_unknown_keys_get_a_bounded_answer(
    http: aiohttp.ClientSession,
) -> None:
    """The probe's 223 KB body with 20,000 unknown keys got 1.3 MB listing 18,000 errors."""
    for keys, status in ((4_000, 422), (20_000, 413)):
        body = manifest()
        body["spec"].update({f"u{i}": 0 for i in range(keys)})
        request = json.dumps(body, separators=(",", ":")).encode()
        async with http.post(BASE, data=request, headers={
                "Content-Type": "application/json", **auth("submit")}) as resp:
            raw = await resp.read()
        problem = json.loads(raw)
        assert resp.status == status, problem
        assert len(raw) < 16_000 < len(request)
        if status == 422:
            assert len(problem["errors"]) == 50 and problem["errorsOmitted"] == keys - 50
            assert f"{keys} invalid fields" in problem["detail"]
        else:
            assert "more than 10000 values" in problem["detail"]
