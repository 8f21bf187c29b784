"""Fault knobs (in-process and over HTTP) and the request audit log: the emulator's own."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver import ApiServer

pytestmark = pytest.mark.emulator_only


@pytest.mark.parametrize(("code", "reason"), [(500, "InternalError"), (503, "ServiceUnavailable"),
                                              (429, "TooManyRequests")])
async def test_fail_next_injects_status(api: client.ApiClient, server: ApiServer, code: int,
                                        reason: str) -> None:
    core = client.CoreV1Api(api)
    server.faults.fail_next(1, code, verb="list", resource="configmaps",
                            retry_after=2 if code == 429 else None)
    await core.list_namespaced_secret("default")  # other resources are unaffected
    with pytest.raises(ApiException) as err:
        await core.list_namespaced_config_map("default")
    assert err.value.status == code and f'"reason": "{reason}"' in err.value.body
    if code == 429:
        assert err.value.headers["Retry-After"] == "2"
    await core.list_namespaced_config_map("default")


async def test_fail_next_counts_down(api: client.ApiClient, server: ApiServer) -> None:
    core = client.CoreV1Api(api)
    server.faults.fail_next(2, 500, verb="create")
    for _ in range(2):
        with pytest.raises(ApiException):
            await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})


async def test_fail_next_by_name_and_subresource_until_stopped(
    api: client.ApiClient, server: ApiServer,
) -> None:
    apps = client.AppsV1Api(api)
    for name in ("held", "free"):
        await apps.create_namespaced_deployment("default", {
            "metadata": {"name": name}, "spec": {
                "replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                             "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    server.faults.fail_next(10**6, 422, verb="patch", resource="deployments",
                            subresource="scale", name="held")
    scale = {"spec": {"replicas": 0}}
    for _ in range(3):
        with pytest.raises(ApiException) as err:
            await apps.patch_namespaced_deployment_scale("held", "default", scale)
        assert err.value.status == 422
    # The object itself, and another one's scale, are not held.
    await apps.patch_namespaced_deployment("held", "default", {"metadata": {"labels": {"x": "1"}}})
    await apps.patch_namespaced_deployment_scale("free", "default", scale)
    assert server.faults.stop_failing(verb="patch", resource="deployments",
                                      subresource="scale", name="held") == 1
    await apps.patch_namespaced_deployment_scale("held", "default", scale)


async def test_latency(api: client.ApiClient, server: ApiServer) -> None:
    core = client.CoreV1Api(api)
    server.faults.set_latency(2.0, verb="get")
    await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})  # a POST
    start = time.monotonic()
    await core.read_namespaced_config_map("c", "default")
    assert time.monotonic() - start >= 2.0  # a lower bound: a busy machine only adds
    server.faults.set_latency(0, verb="get")
    start = time.monotonic()
    await core.read_namespaced_config_map("c", "default")
    assert time.monotonic() - start < 2.0  # the injected delay is gone (its length, not speed)


async def test_http_knobs(http: aiohttp.ClientSession, server: ApiServer) -> None:
    resp = await http.post("/sandbox/faults", json={"fail_next": {
        "count": 1, "status": 503, "verb": "get", "resource": "namespaces"}})
    assert resp.status == 200
    assert (await http.get("/api/v1/namespaces/default")).status == 503
    assert (await http.get("/api/v1/namespaces/default")).status == 200
    watch = await http.get("/api/v1/namespaces?watch=true")
    await asyncio.sleep(0.05)
    assert (await (await http.post("/sandbox/drop-watches")).json())["dropped"] == 1
    async with asyncio.timeout(3):
        await watch.content.read()
    assert (await http.post("/sandbox/compact")).status == 200
    assert server.store.oldest_rv == server.store.rv
    records = (await (await http.get("/sandbox/requests")).json())["items"]
    assert {"verb": "get", "api_group": "", "resource": "namespaces", "subresource": "",
            "namespace": "", "name": "default", "status": 503, "method": "GET",
            "path": "/api/v1/namespaces/default"} in records


async def test_audit_records_verbs(api: client.ApiClient, server: ApiServer) -> None:
    server.requests.clear()  # the fixture's own calls (creating the test's namespace)
    apps = client.AppsV1Api(api)
    await apps.list_namespaced_deployment("default")
    with pytest.raises(ApiException):
        await apps.patch_namespaced_deployment_status("x", "default", {"status": {}})
    got = [(r.verb, r.api_group, r.resource, r.subresource, r.namespace, r.name, r.status)
           for r in server.requests]
    assert got == [("list", "apps", "deployments", "", "default", "", 200),
                   ("patch", "apps", "deployments", "status", "default", "x", 404)]
