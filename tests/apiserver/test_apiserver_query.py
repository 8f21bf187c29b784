"""Query parameters: Go booleans, dryRun, selectors, pagination, list resourceVersion.

Secrets stand in for "some namespaced object": no controller of a real control plane makes
any (it does make a ConfigMap, kube-root-ca.crt, in every namespace).
"""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest
from apiserver_helpers import Kube
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.apiserver.handlers import go_bool

KUBE_BACKENDS = ("emulator", "real")


@pytest.mark.emulator_only  # a unit test of the emulator's query parsing
@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("True", True), ("1", True), ("yes", True), ("0", False),
    ("false", False), ("FALSE", False), (None, False),
])
def test_go_bool(raw: str | None, expected: bool) -> None:
    assert go_bool(raw) is expected


async def make(core: client.CoreV1Api, ns: str, name: str, **labels: str) -> None:
    await core.create_namespaced_secret(ns, {"metadata": {"name": name, "labels": labels}})


async def test_dry_run_writes_nothing(api: client.ApiClient, kube: Kube, ns: str) -> None:
    core = client.CoreV1Api(api)
    rv = kube.emulator.store.rv if kube.emulator else 0
    obj = await core.create_namespaced_secret(ns, {"metadata": {"name": "c"}}, dry_run="All")
    assert obj.metadata.name == "c" and obj.metadata.uid
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_secret("c", ns)
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_secret(ns, {"metadata": {"name": "c"}}, dry_run="Some")
    assert err.value.status == 422
    assert json.loads(err.value.body)["message"] == (
        'CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ["Some"]: '
        'supported values: "All"')
    await make(core, ns, "d")
    before = await core.read_namespaced_secret("d", ns)
    if kube.emulator:
        rv = kube.emulator.store.rv
    await core.patch_namespaced_secret("d", ns, {"stringData": {"a": "b"}}, dry_run="All")
    await core.delete_namespaced_secret("d", ns, dry_run="All")
    after = await core.read_namespaced_secret("d", ns)
    assert after.data is None
    assert after.metadata.resource_version == before.metadata.resource_version
    if kube.emulator:  # nothing written at all
        assert kube.emulator.store.rv == rv


@pytest.mark.parametrize(("selector", "names"), [
    ("app=web", ["a", "b"]),
    ("app==web", ["a", "b"]),
    ("app!=web", ["c", "d"]),
    ("app in (web,db)", ["a", "b", "c"]),
    ("app notin (web)", ["c", "d"]),
    ("tier", ["a"]),
    ("!tier", ["b", "c", "d"]),
    ("app=web,tier=front", ["a"]),
])
async def test_label_selectors(api: client.ApiClient, ns: str, selector: str,
                               names: list[str]) -> None:
    core = client.CoreV1Api(api)
    await make(core, ns, "a", app="web", tier="front")
    await make(core, ns, "b", app="web")
    await make(core, ns, "c", app="db")
    await make(core, ns, "d")
    got = await core.list_namespaced_secret(ns, label_selector=selector)
    assert [i.metadata.name for i in got.items] == names


@pytest.mark.parametrize(("selector", "message"), [
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("a gt 1", "unable to parse requirement: found 'gt', expected: in, notin, =, ==, !=, gt, lt"),
    ("a=%", "unable to parse requirement: values[0][a]: Invalid value: \"%\": a valid label must "
            "be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
            "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
])
async def test_bad_label_selectors(http: aiohttp.ClientSession, ns: str, selector: str,
                                   message: str) -> None:
    resp = await http.get(f"/api/v1/namespaces/{ns}/secrets",
                          params={"labelSelector": selector})
    assert resp.status == 400
    assert (await resp.json())["message"] == message


async def test_pagination_is_a_consistent_snapshot(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    for n in "abcde":
        await make(core, ns, n)
    page = await core.list_namespaced_secret(ns, limit=2)
    assert [i.metadata.name for i in page.items] == ["a", "b"]
    assert page.metadata.remaining_item_count == 3
    token = json.loads(base64.urlsafe_b64decode(page.metadata._continue + "=="))
    assert token == {"v": "meta.k8s.io/v1", "rv": int(page.metadata.resource_version),
                     "start": "/b\u0000"}
    # Later pages are read at the first page's resourceVersion: changes made meanwhile
    # do not show.
    await make(core, ns, "bb")
    await core.delete_namespaced_secret("d", ns)
    names = [i.metadata.name for i in page.items]
    first_rv = page.metadata.resource_version
    while page.metadata._continue:
        page = await core.list_namespaced_secret(ns, limit=2, _continue=page.metadata._continue)
        assert page.metadata.resource_version == first_rv
        names += [i.metadata.name for i in page.items]
    assert names == list("abcde")
    selected = await core.list_namespaced_secret(ns, limit=1, label_selector="x!=y")
    assert selected.metadata._continue and selected.metadata.remaining_item_count is None


async def test_bad_continue_tokens(http: aiohttp.ClientSession, ns: str) -> None:
    url = f"/api/v1/namespaces/{ns}/secrets"
    for raw, detail in (
            ({"v": "x", "rv": 1, "start": "/a"},
             "continue key is not valid: server does not recognize this encoded version x"),
            ({"v": "meta.k8s.io/v1", "rv": 0, "start": "/a"},
             "continue key is not valid: incorrect encoded start resourceVersion (version "
             "meta.k8s.io/v1)"),
            ({"v": "meta.k8s.io/v1", "rv": 5, "start": ""},
             "continue key is not valid: encoded start key empty (version meta.k8s.io/v1)")):
        token = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
        resp = await http.get(url, params={"limit": "1", "continue": token})
        assert resp.status == 400
        assert (await resp.json())["message"] == f"invalid continue token: {detail}"


@pytest.mark.emulator_only  # kube-apiserver serves pages from its watch cache's snapshots,
# which outlive an etcd compaction; only a cold cache turns an old token into a 410
async def test_compacted_continue_token_expires(server: ApiServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http:
        for n in "abc":
            await http.post("/api/v1/namespaces/default/secrets", json={"metadata": {"name": n}})
        page = await (await http.get("/api/v1/namespaces/default/secrets?limit=1")).json()
        await http.post("/api/v1/namespaces/default/secrets", json={"metadata": {"name": "d"}})
        server.compact()  # the history after the first page is gone
        resp = await http.get("/api/v1/namespaces/default/secrets",
                              params={"limit": "1", "continue": page["metadata"]["continue"]})
        status = await resp.json()
        assert resp.status == 410 and status["reason"] == "Expired"
        assert status["message"].startswith("The provided continue parameter is too old")
        # The Status offers a token that goes on at the latest resourceVersion.
        resp = await http.get("/api/v1/namespaces/default/secrets",
                              params={"limit": "5", "continue": status["metadata"]["continue"]})
        assert [i["metadata"]["name"] for i in (await resp.json())["items"]] == ["b", "c", "d"]


async def test_list_options_the_server_refuses(http: aiohttp.ClientSession, ns: str) -> None:
    url = f"/api/v1/namespaces/{ns}/secrets"
    for params, detail in (
            ({"sendInitialEvents": "true"},
             "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"),
            ({"resourceVersionMatch": "Exact"}, "resourceVersionMatch: Forbidden: "
             "resourceVersionMatch is forbidden unless resourceVersion is provided"),
            ({"watch": "1", "sendInitialEvents": "true"}, "resourceVersionMatch: Forbidden: "
             "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"),
            ({"watch": "1", "resourceVersionMatch": "NotOlderThan"}, "resourceVersionMatch: "
             "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents "
             "is provided")):
        resp = await http.get(url, params=params)
        assert resp.status == 422
        assert (await resp.json())["message"] == f'ListOptions.meta.k8s.io "" is invalid: {detail}'


async def test_list_at_an_exact_resource_version(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    await make(core, ns, "a")
    rv = (await core.list_namespaced_secret(ns)).metadata.resource_version
    await make(core, ns, "b")
    then = await core.list_namespaced_secret(ns, resource_version=rv,
                                             resource_version_match="Exact")
    assert [i.metadata.name for i in then.items] == ["a"] and then.metadata.resource_version == rv


async def test_list_across_namespaces(api: client.ApiClient, kube: Kube, ns: str) -> None:
    core = client.CoreV1Api(api)
    other = kube.name("x")
    await core.create_namespace({"metadata": {"name": other}})
    for where in (other, ns):
        await core.create_namespaced_secret(where, {"metadata": {
            "name": "c", "labels": {"test": ns}}})
    got = await core.list_secret_for_all_namespaces(label_selector=f"test={ns}")
    # In etcd's key order, "<namespace>/<name>": "t-x-x/c" sorts before "t-x/c".
    assert [(i.metadata.namespace, i.metadata.name) for i in got.items] == [
        (other, "c"), (ns, "c")]


async def test_field_selectors_per_type(api: client.ApiClient, http: aiohttp.ClientSession,
                                        ns: str) -> None:
    core = client.CoreV1Api(api)
    for name, pod in (("e1", "p1"), ("e2", "p2")):
        await core.create_namespaced_event(ns, {
            "metadata": {"name": name}, "reason": "Started",
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns}})
    got = await core.list_namespaced_event(ns, field_selector="involvedObject.name=p2")
    assert [e.metadata.name for e in got.items] == ["e2"]
    await core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "type": "x/y"})
    got_s = await core.list_namespaced_secret(ns, field_selector="type=x/y")
    assert [s.metadata.name for s in got_s.items] == ["s"]
    for path, selector, message in (
            ("events", "foo=x", "field label not supported: foo"),
            ("pods", "spec.foo=x", "field label not supported: spec.foo"),
            ("configmaps", "data.a=x",
             '"data.a" is not a known field selector: only "metadata.name", '
             '"metadata.namespace"'),
            ("configmaps", "metadata.name", "invalid selector: 'metadata.name'; can't "
                                            "understand 'metadata.name'")):
        resp = await http.get(f"/api/v1/namespaces/{ns}/{path}",
                              params={"fieldSelector": selector})
        assert resp.status == 400
        assert (await resp.json())["message"] == message


async def test_events_must_name_their_namespace(http: aiohttp.ClientSession, ns: str) -> None:
    resp = await http.post(f"/api/v1/namespaces/{ns}/events", json={
        "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"}})
    assert resp.status == 422
    assert (await resp.json())["message"] == (
        'Event "e" is invalid: involvedObject.namespace: Invalid value: "": does not match '
        "event.namespace")
    resp = await http.post(f"/apis/events.k8s.io/v1/namespaces/{ns}/events", json={
        "metadata": {"name": "e3"}, "regarding": {"kind": "Pod", "name": "p", "namespace": ns}})
    assert resp.status == 422
    assert (await resp.json())["message"] == (
        'Event "e3" is invalid: [eventTime: Required value, type: Invalid value: "": has '
        "invalid value: ]")
