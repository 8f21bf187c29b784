"""Authentication and roles: 401 without a valid token, 403 below the role, tokens never logged."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
import structlog
import yaml
from kubernetes_asyncio import client

from canaryd.api.auth import Role, TokenError, TokenSource, TokenTable, parse_entries
from canaryd.sandbox.testing import eventually
from tests.api.conftest import Served, serve_api
from tests.api.support import TOKENS, auth, manifest, tokens_yaml

ROLLOUT = "/api/v1/rollouts/demo/podinfo-v2"
# Every guarded endpoint with the least role it needs.
GUARDED = [
    ("GET", "/api/v1/whoami", "read"),
    ("GET", "/api/v1/rollouts", "read"),
    ("GET", ROLLOUT, "read"),
    ("GET", ROLLOUT + "/events", "read"),
    ("POST", "/api/v1/rollouts", "submit"),
    ("POST", ROLLOUT + "/pause", "operate"),
    ("POST", ROLLOUT + "/resume", "operate"),
    ("POST", ROLLOUT + "/promote", "operate"),
    ("POST", ROLLOUT + "/abort", "operate"),
]
ROLES = ["read", "submit", "operate", "admin"]


@pytest.mark.parametrize(("method", "path", "_role"), GUARDED)
async def test_requests_without_a_valid_token_get_401_problem(
    http: aiohttp.ClientSession, method: str, path: str, _role: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-known-token-at-all"},
                    {"Authorization": f"Basic {TOKENS['admin']}"}):
        async with http.request(method, path, headers=headers, json=manifest()) as resp:
            assert resp.status == 401
            assert resp.content_type == "application/problem+json"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await resp.json())["status"] == 401


@pytest.mark.parametrize(("method", "path", "needed"), GUARDED)
async def test_each_role_reaches_exactly_the_endpoints_at_or_below_it(
    http: aiohttp.ClientSession, method: str, path: str, needed: str
) -> None:
    for role in ROLES:
        data = json.dumps(manifest(f"r-{role}", target=f"t-{role}", own=f"t-{role}")).encode()
        async with http.request(method, path, headers={**auth(role), "Content-Type":
                                                       "application/json"}, data=data) as resp:
            if Role[role.upper()] < Role[needed.upper()]:
                assert resp.status == 403, (role, await resp.text())
                body = await resp.json()
                assert needed in body["detail"] and f"ci-{role}" in body["detail"]
            else:
                # Authorized: whatever the answer (404 for a rollout that does not exist),
                # it is not an auth failure.
                assert resp.status not in (401, 403), (role, await resp.text())


async def test_whoami_names_the_token_and_its_role(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/whoami", headers=auth("operate")) as resp:
        assert await resp.json() == {"name": "ci-operate", "role": "operate", "namespaces": "*"}


async def test_superseding_needs_operate_because_it_rolls_back_another_rollout(
    http: aiohttp.ClientSession,
) -> None:
    body = manifest(supersede=True)
    async with http.post("/api/v1/rollouts", json=body, headers=auth("submit")) as resp:
        assert resp.status == 403
        assert "supersede" in (await resp.json())["detail"]
    async with http.post("/api/v1/rollouts", json=body, headers=auth("operate")) as resp:
        assert resp.status == 201


async def test_health_readiness_metrics_and_openapi_need_no_token(
    http: aiohttp.ClientSession,
) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"):
        async with http.get(path) as resp:
            assert resp.status == 200, path


async def test_with_no_tokens_configured_the_api_refuses_everyone(
    kube: client.ApiClient, tmp_path: Path, prometheus: str,
) -> None:
    async with (
        serve_api(tmp_path / "kubeconfig", None, prometheus) as s,
        aiohttp.ClientSession(base_url=s.url) as http,
        http.get("/api/v1/rollouts", headers=auth("admin")) as resp,
    ):
        assert resp.status == 401
        assert "no API tokens" in (await resp.json())["detail"]


async def test_tokens_come_from_the_environment_too(
    kube: client.ApiClient, tmp_path: Path, prometheus: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CANARYD_TOKENS", json.dumps(
        [{"name": "from-env", "role": "read", "token": "env-token-0123456789"}]))
    async with serve_api(tmp_path / "kubeconfig", None, prometheus) as s, \
            aiohttp.ClientSession(base_url=s.url) as http:
        headers = {"Authorization": "Bearer env-token-0123456789"}
        async with http.get("/api/v1/whoami", headers=headers) as resp:
            assert await resp.json() == {"name": "from-env", "role": "read", "namespaces": "*"}


async def test_a_rotated_token_file_takes_effect_and_a_broken_one_is_ignored(
    served: Served, http: aiohttp.ClientSession, tokens_file: Path,
) -> None:
    rotated = {"Authorization": "Bearer rotated-token-0123456789"}
    tokens_file.write_text(json.dumps([{"name": "new", "role": "admin",
                                        "token": "rotated-token-0123456789"}]))
    tokens = served.state.tokens
    assert tokens.reload_if_changed()
    async with http.get("/api/v1/whoami", headers=auth("admin")) as resp:
        assert resp.status == 401
    async with http.get("/api/v1/whoami", headers=rotated) as resp:
        assert (await resp.json())["name"] == "new"
    tokens_file.write_text("- {name: broken}")
    assert not tokens.reload_if_changed()
    assert tokens.last_error is not None
    async with http.get("/api/v1/whoami", headers=rotated) as resp:
        assert resp.status == 200


async def test_removing_the_tokens_file_revokes_its_tokens(
    served: Served, http: aiohttp.ClientSession, tokens_file: Path,
) -> None:
    async with http.get("/api/v1/whoami", headers=auth("read")) as resp:
        assert resp.status == 200
    tokens_file.unlink()

    async def revoked() -> bool:
        async with http.get("/api/v1/whoami", headers=auth("read")) as resp:
            return resp.status == 401

    # Through the watch the server runs, not a direct reload.
    await eventually(revoked, timeout=10, what="the removed file's tokens refused")
    assert served.state.tokens.last_error is None
    tokens_file.write_text(tokens_yaml())
    assert served.state.tokens.reload_if_changed()
    async with http.get("/api/v1/whoami", headers=auth("read")) as resp:
        assert resp.status == 200


async def test_a_token_scoped_to_namespaces_is_refused_elsewhere_with_403(
    served: Served, http: aiohttp.ClientSession, tokens_file: Path, kube: client.ApiClient,
) -> None:
    await client.CoreV1Api(kube).create_namespace({"metadata": {"name": "other"}})
    scoped = {"Authorization": "Bearer scoped-token-0123456789"}
    entries = [*yaml.safe_load(tokens_yaml()),
               {"name": "team-demo", "role": "operate", "token": "scoped-token-0123456789",
                "namespaces": ["demo"]}]
    tokens_file.write_text(yaml.safe_dump(entries))
    assert served.state.tokens.reload_if_changed()
    async with http.get("/api/v1/whoami", headers=scoped) as resp:
        assert await resp.json() == {"name": "team-demo", "role": "operate",
                                     "namespaces": ["demo"]}
    for ns in ("demo", "other"):  # an admin token puts one rollout in each
        async with http.post("/api/v1/rollouts", json=manifest(f"r-{ns}", namespace=ns),
                             headers=auth("admin")) as resp:
            assert resp.status == 201, await resp.text()
    async with http.post("/api/v1/rollouts", json=manifest("mine", namespace="other",
                                                           own="mine"),
                         headers=scoped) as resp:
        problem = await resp.json()
        assert resp.status == 403 and "'other'" in problem["detail"], problem
    for method, path in (("GET", "/api/v1/rollouts/other/r-other"),
                         ("GET", "/api/v1/rollouts/other/r-other/events"),
                         ("POST", "/api/v1/rollouts/other/r-other/abort"),
                         ("GET", "/api/v1/rollouts?namespace=other")):
        async with http.request(method, path, headers=scoped) as resp:
            assert resp.status == 403, (method, path, resp.status)
    async with http.get("/api/v1/rollouts/demo/r-demo", headers=scoped) as resp:
        assert resp.status == 200

    async def listed() -> list[str]:
        async with http.get("/api/v1/rollouts", headers=scoped) as resp:
            body = await resp.json()
        return [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in body["items"]]

    await eventually(listed, timeout=10, what="the scoped list")
    assert await listed() == ["demo/r-demo"]
    async with http.post("/api/v1/rollouts/demo/r-demo/abort", headers=scoped) as resp:
        assert resp.status == 202


def test_token_namespaces_are_checked() -> None:
    base = {"name": "t", "role": "read", "token": "t" * 16}
    for bad in ([], ["Bad_NS"], "demo", ["*"]):
        with pytest.raises(TokenError):
            parse_entries(json.dumps([{**base, "namespaces": bad}]), source="f")
    [entry] = parse_entries(json.dumps([base]), source="f")
    assert entry.namespaces == "*"


def test_token_errors_never_echo_a_token() -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    with pytest.raises(TokenError) as info:
        parse_entries(json.dumps([{"name": "x", "role": "root", "token": secret}]), source="f")
    assert secret not in str(info.value)
    with pytest.raises(TokenError) as info:
        TokenTable(parse_entries(json.dumps(
            [{"name": "a", "role": "read", "token": secret},
             {"name": "b", "role": "read", "token": secret}]), source="f"))
    assert secret not in str(info.value)


def test_short_tokens_are_refused() -> None:
    with pytest.raises(TokenError):
        parse_entries('[{"name": "a", "role": "read", "token": "short"}]', source="f")


def test_an_unreadable_token_file_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(TokenError):
        TokenSource(tmp_path / "missing.yaml", {})


async def test_access_log_names_the_token_never_the_token_itself(
    http: aiohttp.ClientSession,
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with http.get("/api/v1/rollouts", headers=auth("read")) as resp:
            assert resp.status == 200
    access = [e for e in logs if e["event"] == "http request"]
    assert access and access[0]["token_name"] == "ci-read"
    assert {"method", "path", "status", "duration_ms"} <= set(access[0])
    assert TOKENS["read"] not in repr(logs)
