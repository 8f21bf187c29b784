"""The dashboard's server side, through the real server: the static files under /ui/ (their
headers, the fixed file set, the package data that ships them) and the read-only profile
and analysis endpoints the pages call. The pages themselves run in a browser in tests/ui/."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import aiohttp

from canaryd.api import ui
from tests.api.conftest import Served
from tests.api.support import ROOT, auth, manifest

UI = ROOT / "canaryd" / "ui"
# Ways to turn text into markup or code; the pages build every element with createElement
# and text nodes (canaryd/ui/dom.js).
UNSAFE = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|"
                    r"new Function|setAttribute\(['\"]style|\.src\s*=|javascript:")


async def test_the_pages_are_served_with_a_strict_content_security_policy(
    http: aiohttp.ClientSession,
) -> None:
    async with http.get("/ui", allow_redirects=False) as resp:
        assert resp.status == 308 and resp.headers["Location"] == "/ui/"
    async with http.get("/ui/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        csp = resp.headers["Content-Security-Policy"]
        etag = resp.headers["ETag"]
        assert "<script type=\"module\" src=\"app.js\"></script>" in await resp.text()
    directives = dict(d.split(" ", 1) for d in csp.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp
    async with http.get("/ui/", headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
    async with http.get("/ui/app.js") as resp:
        assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Security-Policy"] == csp


async def test_only_the_shipped_files_are_served(http: aiohttp.ClientSession) -> None:
    for path in ("/ui/missing.js", "/ui/..%2Fapi%2Fapp.py", "/ui/%2e%2e/config.py",
                 "/ui/__init__.py", "/ui/.hidden"):
        async with http.get(path) as resp:
            assert resp.status == 404, path
            assert resp.headers["Content-Type"] == "application/problem+json", path


def test_every_ui_file_is_package_data_and_builds_no_markup_from_text() -> None:
    shipped = {p.name for p in UI.iterdir() if p.is_file()}
    assert {"index.html", "app.js", "style.css"} <= shipped
    assert set(ui.load_assets()) == shipped
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["canaryd"]
    for name in shipped:
        assert any(fnmatch.fnmatch(f"ui/{name}", g) for g in globs), f"{name} is not shipped"
    for path in UI.glob("*.js"):
        found = UNSAFE.search(path.read_text())
        assert found is None, f"{path.name}: {found.group(0) if found else ''}"
    html = (UI / "index.html").read_text()
    assert "<style" not in html and " style=" not in html
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert sum(Path(UI, n).stat().st_size for n in shipped) < 100_000  # no framework


async def test_profiles_are_listed_for_a_read_token(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/profiles") as resp:
        assert resp.status == 401
    async with http.get("/api/v1/profiles", headers=auth("read")) as resp:
        assert resp.status == 200
        body = await resp.json()
    profiles = {p["name"]: p for p in body["items"]}
    sandbox = profiles["sandbox"]
    assert sandbox["interval"] == "5s" and sandbox["minRequests"] == 20
    assert sandbox["limits"]["consecutiveFailures"] == 1
    rate, p99 = sandbox["checks"]
    assert (rate["metric"], rate["min"], rate["unit"]) == ("istio-success-rate", 99, "%")
    assert (p99["metric"], p99["max"], p99["unit"]) == ("istio-latency-p99", 200, "ms")
    sequential = profiles["default"]["checks"][2]
    assert sequential["sequential"]["alpha"] == 0.001
    assert "query" not in sequential


async def test_a_rollouts_analysis_is_its_profile_after_its_overrides(
    served: Served, http: aiohttp.ClientSession,
) -> None:
    body = manifest(analysis={"profile": "sandbox", "interval": "3s",
                              "thresholds": {"istio-success-rate": {"min": 99.5}}})
    async with http.post("/api/v1/rollouts", json=body, headers=auth("submit")) as resp:
        assert resp.status == 201, await resp.text()
    path = "/api/v1/rollouts/demo/podinfo-v2/analysis"
    async with http.get(path) as resp:
        assert resp.status == 401
    async with http.get(path, headers=auth("read")) as resp:
        assert resp.status == 200, await resp.text()
        analysis = await resp.json()
    assert analysis["rollout"] == "demo/podinfo-v2" and analysis["profile"] == "sandbox"
    assert analysis["interval"] == "3s"
    assert [(c["metric"], c["min"], c["max"]) for c in analysis["checks"]] == [
        ("istio-success-rate", 99.5, None), ("istio-latency-p99", None, 200)]
    async with http.get("/api/v1/rollouts/demo/nothing/analysis", headers=auth("read")) as resp:
        assert resp.status == 404
