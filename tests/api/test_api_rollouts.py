"""Submitting, reading and acting on rollouts through the real server and API server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client

from canaryd.api.admission import IDEMPOTENCY_ANNOTATION
from canaryd.sandbox.testing import eventually
from tests.api.conftest import Served
from tests.api.support import GROUP, PLURAL, VERSION, StatusWriter, auth, manifest

BASE = "/api/v1/rollouts"


async def post(http: aiohttp.ClientSession, body: Any, *, role: str = "submit",
               **headers: str) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", **auth(role), **headers}
    async with http.post(BASE, data=data, headers=hdrs) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def stored(kube: client.ApiClient, namespace: str = "demo") -> list[dict[str, Any]]:
    body = await client.CustomObjectsApi(kube).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL)
    return list(body["items"])


async def cached(served: Served, key: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        return served.state.deps.cache.get(key)

    return await eventually(probe, timeout=10, what=f"{key} in the cache")


async def test_a_valid_manifest_is_created_and_answered_201_with_its_url(
    http: aiohttp.ClientSession, kube: client.ApiClient,
) -> None:
    status, body, headers = await post(http, manifest())
    assert status == 201
    assert headers["Location"] == f"{BASE}/demo/podinfo-v2"
    assert body["metadata"]["namespace"] == "demo" and body["spec"]["target"] == "podinfo"
    assert "managedFields" not in body["metadata"]
    [created] = await stored(kube)
    # Stored as written: no defaults filled in, durations kept as strings.
    assert created["spec"]["workloads"]["readyTimeout"] == "2m"
    assert "minAvailable" not in created["spec"]["workloads"]


async def test_yaml_bodies_are_accepted(http: aiohttp.ClientSession) -> None:
    data = yaml.safe_dump(manifest()).encode()
    for ctype in ("application/yaml", None):
        headers = {**auth("submit"), **({"Content-Type": ctype} if ctype else {})}
        async with http.post(BASE, data=data, headers=headers) as resp:
            # the second is the same rollout again: 409, but parsed (not 400/415)
            assert resp.status in (201, 409), await resp.text()


async def test_an_invalid_manifest_lists_every_bad_field_by_pointer_and_creates_nothing(
    http: aiohttp.ClientSession, kube: client.ApiClient,
) -> None:
    body = manifest()
    body["spec"]["workloads"]["canary"] = "Not_A_Name"
    body["spec"]["workloads"]["minAvailable"] = 0
    body["spec"]["plan"]["steps"] = [{"weight": 50}, {"weight": 10}]
    body["spec"]["surprise"] = True
    status, problem, headers = await post(http, body)
    assert status == 422
    assert headers["Content-Type"].startswith("application/problem+json")
    pointers = {e["pointer"]: e["detail"] for e in problem["errors"]}
    assert set(pointers) == {"/spec/workloads/canary", "/spec/workloads/minAvailable",
                             "/spec/plan", "/spec/surprise"}
    assert "must not decrease" in pointers["/spec/plan"]
    assert "not permitted" in pointers["/spec/surprise"]
    assert await stored(kube) == []


@pytest.mark.parametrize(("change", "pointer"), [
    ({"analysis": {"profile": "nope"}}, "/spec/analysis/profile"),
    ({"analysis": {"profile": "sandbox", "interval": "1s"}}, "/spec/analysis/interval"),
    ({"analysis": {"profile": "sandbox", "thresholds": {"istio-success-rate": {"min": 90}}}},
     "/spec/analysis/thresholds/istio-success-rate/min"),
    ({"analysis": {"profile": "sandbox", "thresholds": {"unknown-metric": {"min": 1}}}},
     "/spec/analysis/thresholds/unknown-metric"),
])
async def test_what_the_controller_would_refuse_is_refused_up_front(
    http: aiohttp.ClientSession, kube: client.ApiClient, change: dict[str, Any], pointer: str,
) -> None:
    status, problem, _ = await post(http, manifest(**change))
    assert status == 422, problem
    assert [e["pointer"] for e in problem["errors"]] == [pointer]
    assert await stored(kube) == []


async def test_canaryd_annotations_cannot_be_set_by_a_request(
    http: aiohttp.ClientSession,
) -> None:
    body = manifest()
    body["metadata"]["annotations"] = {"canaryd.io/action": "promote"}
    status, problem, _ = await post(http, body)
    assert status == 422
    assert problem["errors"][0]["pointer"] == "/metadata/annotations/canaryd.io~1action"


@pytest.mark.parametrize(("data", "ctype", "status"), [
    (b"{not json", "application/json", 400),
    (b"a: [1, 2", "application/yaml", 400),
    (b"a: &x 1\nb: *x\n", "application/yaml", 400),
    (b"---\na: 1\n---\nb: 2\n", "application/yaml", 400),
    (b"[1, 2]", "application/json", 422),
    (b'{"x": NaN}', "application/json", 400),
    (b"<rollout/>", "application/xml", 415),
])
async def test_malformed_bodies_are_refused_with_a_problem(
    http: aiohttp.ClientSession, data: bytes, ctype: str, status: int,
) -> None:
    got, problem, headers = await post(http, data, **{"Content-Type": ctype})
    assert got == status, problem
    assert headers["Content-Type"].startswith("application/problem+json")


async def test_bodies_over_the_limit_get_413(http: aiohttp.ClientSession) -> None:
    body = manifest()
    body["metadata"]["labels"] = {"padding": "x" * 300_000}
    status, problem, _ = await post(http, body)
    assert status == 413 and problem["status"] == 413

    async def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: chunked
        for _ in range(40):
            yield b" " * 10_000

    async with http.post(BASE, data=chunks(), headers={**auth("submit"),
                                                       "Content-Type": "application/json"}) as r:
        assert r.status == 413


async def test_a_retried_post_with_the_same_idempotency_key_returns_the_same_rollout(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
) -> None:
    body = manifest()
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "podinfo-"
    first, created, _ = await post(http, body, **{"Idempotency-Key": "pipeline-42"})
    # Immediately (the watch may not have delivered it yet) and after the cache has it.
    second, again, headers = await post(http, body, **{"Idempotency-Key": "pipeline-42"})
    assert (first, second) == (201, 201)
    assert again["metadata"]["uid"] == created["metadata"]["uid"]
    assert headers["Idempotent-Replayed"] == "true"
    name = created["metadata"]["name"]
    await cached(served, f"demo/{name}")
    third, replayed, _ = await post(http, body, **{"Idempotency-Key": "pipeline-42"})
    assert third == 201 and replayed["metadata"]["uid"] == created["metadata"]["uid"]
    assert [o["metadata"]["name"] for o in await stored(kube)] == [name]
    assert created["metadata"]["annotations"][IDEMPOTENCY_ANNOTATION] == "pipeline-42"


async def test_concurrent_retries_create_one_rollout(
    http: aiohttp.ClientSession, kube: client.ApiClient,
) -> None:
    body = manifest()
    answers = await asyncio.gather(*(post(http, body, **{"Idempotency-Key": "same"})
                                     for _ in range(8)))
    assert {a[0] for a in answers} == {201}
    assert len({a[1]["metadata"]["uid"] for a in answers}) == 1
    assert len(await stored(kube)) == 1


async def test_an_idempotency_key_reused_for_another_request_is_refused(
    http: aiohttp.ClientSession, served: Served,
) -> None:
    await post(http, manifest(), **{"Idempotency-Key": "k1"})
    await cached(served, "demo/podinfo-v2")
    status, problem, _ = await post(http, manifest(version="other"),
                                    **{"Idempotency-Key": "k1"})
    assert status == 422 and "different request" in problem["detail"]
    status, _, _ = await post(http, manifest(), **{"Idempotency-Key": "bad key with spaces"})
    assert status == 400


async def test_a_second_active_rollout_for_the_same_target_gets_409_naming_the_first(
    http: aiohttp.ClientSession, served: Served,
) -> None:
    assert (await post(http, manifest("first")))[0] == 201
    await cached(served, "demo/first")
    status, problem, _ = await post(http, manifest("second"))
    assert status == 409
    assert problem["conflictsWith"] == "demo/first" and "demo/first" in problem["detail"]
    # Another target on objects of its own is free; a taken name is not.
    assert (await post(http, manifest("other", target="frontend", own="frontend")))[0] == 201
    status, problem, _ = await post(http, manifest("first", target="free", own="free"))
    assert status == 409 and "already exists" in problem["detail"]


@pytest.mark.parametrize("change", ["route", "deployment", "preview-is-active"])
async def test_a_rollout_on_an_object_another_holds_gets_409_whatever_its_target(
    http: aiohttp.ClientSession, served: Served, change: str,
) -> None:
    """The router-aliasing finding: another `spec.target` on the same VirtualService route
    (or the same Deployment, or a blue-green preview that is another's active Service)."""
    first, second = manifest("first"), manifest("second", target="alias", own="alias")
    if change == "route":
        second["spec"]["router"]["istio"]["virtualService"] = "podinfo"
        shared = "VirtualService podinfo route primary"
    elif change == "deployment":
        second["spec"]["workloads"]["canary"] = "podinfo-canary"
        shared = "Deployment podinfo-canary"
    else:
        service = {"activeService": "shop", "previewService": "shop-preview",
                   "blue": "blue", "green": "green"}
        del first["spec"]["plan"], second["spec"]["plan"]
        first["spec"].update(strategy="blueGreen", router={"service": service})
        second["spec"].update(strategy="blueGreen", router={"service": {
            **service, "activeService": "shop-preview", "previewService": "shop-2"}})
        shared = "Service shop-preview"
    assert (await post(http, first))[0] == 201
    await cached(served, "demo/first")
    status, problem, _ = await post(http, second)
    assert status == 409, problem
    assert problem["conflictsWith"] == "demo/first" and problem["shared"] == shared
    assert shared in problem["detail"]
    # Rolling back the holder (operate) is the way to take it over.
    status, _, _ = await post(http, {**second, "spec": {**second["spec"], "supersede": True}},
                              role="operate")
    assert status == 201


async def test_a_finished_rollout_no_longer_blocks_its_target(
    http: aiohttp.ClientSession, served: Served, kube: client.ApiClient,
) -> None:
    await post(http, manifest("first"))
    writer = StatusWriter(kube, "demo", "first")
    await writer.transition("Failed", "canary never became ready")
    async def failed() -> bool:
        obj = served.state.deps.cache.get("demo/first") or {}
        return (obj.get("status") or {}).get("phase") == "Failed"
    await eventually(failed, timeout=10, what="the cache to see Failed")
    assert (await post(http, manifest("second")))[0] == 201


async def test_list_filters_and_pages_from_the_cache(
    http: aiohttp.ClientSession, served: Served,
) -> None:
    for i in range(5):
        await post(http, manifest(f"r{i}", target=f"t{i % 2}-{i}", own=f"o{i}"))
    await cached(served, "demo/r4")
    seen, token = [], None
    while True:
        params = {"limit": "2", **({"continue": token} if token else {})}
        async with http.get(BASE, params=params, headers=auth("read")) as resp:
            page = await resp.json()
        assert len(page["items"]) <= 2
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"]["continue"]
        if token is None:
            break
    assert seen == [f"r{i}" for i in range(5)]
    async with http.get(BASE, params={"target": "t1-3"}, headers=auth("read")) as resp:
        assert [i["metadata"]["name"] for i in (await resp.json())["items"]] == ["r3"]
    async with http.get(BASE, params={"namespace": "elsewhere"}, headers=auth("read")) as resp:
        assert (await resp.json())["items"] == []
    async with http.get(BASE, params={"phase": "Pending"}, headers=auth("read")) as resp:
        assert len((await resp.json())["items"]) == 5
    for bad in ({"limit": "0"}, {"limit": "x"}, {"phase": "Sleeping"},
                {"continue": "garbage!"}, {"namespace": "Bad_NS"}):
        async with http.get(BASE, params=bad, headers=auth("read")) as resp:
            assert resp.status == 400, bad
            assert (await resp.json())["errors"][0]["parameter"] == next(iter(bad))


async def test_get_serves_one_rollout_and_404s_an_unknown_one(
    http: aiohttp.ClientSession, served: Served,
) -> None:
    await post(http, manifest())
    async with http.get(f"{BASE}/demo/podinfo-v2", headers=auth("read")) as resp:
        assert resp.status == 200 and (await resp.json())["metadata"]["name"] == "podinfo-v2"
    async with http.get(f"{BASE}/demo/absent", headers=auth("read")) as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
    async with http.get(f"{BASE}/demo/UPPER", headers=auth("read")) as resp:
        assert resp.status == 400


async def test_actions_set_the_annotation_the_controller_consumes(
    http: aiohttp.ClientSession, served: Served, kube: client.ApiClient,
) -> None:
    await post(http, manifest())
    writer = StatusWriter(kube, "demo", "podinfo-v2")
    await writer.transition("Progressing", "step 1/3 at 10%", canary=10)

    async def progressing() -> bool:
        obj = served.state.deps.cache.get("demo/podinfo-v2") or {}
        return (obj.get("status") or {}).get("phase") == "Progressing"

    await eventually(progressing, timeout=10, what="Progressing in the cache")
    async with http.post(f"{BASE}/demo/podinfo-v2/pause", headers=auth("operate")) as resp:
        assert resp.status == 202
        body = await resp.json()
    assert body["metadata"]["annotations"]["canaryd.io/action"] == "pause"
    # resume applies to a Paused rollout only: refused with the reason, nothing written
    async with http.post(f"{BASE}/demo/podinfo-v2/resume", headers=auth("operate")) as resp:
        assert resp.status == 409
        assert "Progressing" in (await resp.json())["detail"]
    async with http.post(f"{BASE}/demo/absent/abort", headers=auth("operate")) as resp:
        assert resp.status == 404


async def test_actions_on_a_finished_rollout_get_409(
    http: aiohttp.ClientSession, served: Served, kube: client.ApiClient,
) -> None:
    await post(http, manifest())
    await StatusWriter(kube, "demo", "podinfo-v2").transition("Aborted", "aborted")

    async def aborted() -> bool:
        obj = served.state.deps.cache.get("demo/podinfo-v2") or {}
        return (obj.get("status") or {}).get("phase") == "Aborted"

    await eventually(aborted, timeout=10, what="Aborted in the cache")
    for action in ("pause", "resume", "promote", "abort"):
        async with http.post(f"{BASE}/demo/podinfo-v2/{action}",
                             headers=auth("operate")) as resp:
            assert resp.status == 409
            assert "has finished" in (await resp.json())["detail"]


async def test_unknown_routes_and_methods_answer_problems(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/nothing-here") as resp:
        assert resp.status == 404 and resp.content_type == "application/problem+json"
    async with http.delete(BASE, headers=auth("admin")) as resp:
        assert resp.status == 405 and resp.content_type == "application/problem+json"
        assert "POST" in resp.headers["Allow"]


async def test_readiness_reflects_prometheus(
    kube: client.ApiClient, tmp_path: Any,
) -> None:
    from tests.api.conftest import serve_api

    async with serve_api(tmp_path / "kubeconfig", None, "http://127.0.0.1:9") as s, \
            aiohttp.ClientSession(base_url=s.url) as http:
        async with http.get("/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"]["prometheus"] == "unreachable"
        async with http.get("/healthz") as resp:
            assert resp.status == 200


async def test_readiness_answers_in_its_own_time_while_prometheus_hangs(
    kube: client.ApiClient, tmp_path: Any,
) -> None:
    """A Prometheus that accepts connections and never answers (config timeout 5 s, two
    retries): /readyz still answers 503 within its own short timeout."""

    from tests.api.conftest import serve_api

    release = asyncio.Event()

    async def swallow(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    hung = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = hung.sockets[0].getsockname()[1]
    try:
        # The hung endpoint never answers: only /readyz's own timeout gets an answer
        # (without it, this request would wait the 60 s out). No bound on how fast: a
        # busy machine answers later, never not at all.
        async with serve_api(tmp_path / "kubeconfig", None, f"http://127.0.0.1:{port}") as s, \
                aiohttp.ClientSession(base_url=s.url) as http, \
                asyncio.timeout(60), http.get("/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"]["prometheus"] == "unreachable"
    finally:
        release.set()
        hung.close()
        await hung.wait_closed()


async def test_metrics_count_requests_per_route_and_open_streams(
    http: aiohttp.ClientSession,
) -> None:
    async with http.get(f"{BASE}/demo/absent", headers=auth("read")) as resp:
        assert resp.status == 404
    async with http.get("/metrics") as resp:
        text = await resp.text()
    assert ('canaryd_api_request_duration_seconds_count{method="GET",'
            'route="/api/v1/rollouts/{namespace}/{name}",status="404"} 1.0') in text
    assert "canaryd_api_event_streams 0.0" in text


async def test_metrics_series_of_a_thousand_rollouts_go_when_they_are_deleted(
    http: aiohttp.ClientSession, served: Served, kube: client.ApiClient,
) -> None:
    """Per-rollout series are bounded by the rollouts canaryd knows: 1,000 created, then
    deleted, and the series count is back where it started."""
    custom = client.CustomObjectsApi(kube)
    names = [f"m{i:04d}" for i in range(1000)]

    async def series() -> int:
        async with http.get("/metrics") as resp:
            text = await resp.text()
        return sum(1 for line in text.splitlines()
                   if 'rollout="' in line and not line.startswith("#"))

    async def each(call: Any) -> None:
        sem = asyncio.Semaphore(32)

        async def one(name: str) -> None:
            async with sem:
                await call(name)

        await asyncio.gather(*(one(n) for n in names))

    async def cache_holds(count: int) -> bool:
        return len(served.state.deps.cache) == count

    before = await series()
    await each(lambda name: custom.create_namespaced_custom_object(
        GROUP, VERSION, "demo", PLURAL, manifest(name, target=name, own=name)))
    await eventually(lambda: cache_holds(1000), timeout=60, what="1000 rollouts cached")
    during = await series()
    await each(lambda name: custom.delete_namespaced_custom_object(
        GROUP, VERSION, "demo", PLURAL, name))
    await eventually(lambda: cache_holds(0), timeout=60, what="the cache emptied")
    after = await series()
    print(f"per-rollout series: before {before}, with 1000 rollouts {during}, after {after}")
    assert during >= before + 1000
    assert after == before
