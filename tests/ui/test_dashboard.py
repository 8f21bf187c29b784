"""The web dashboard (/ui/) in a real browser: Debian's headless chromium, driven by
Playwright, against a `canaryd serve` process on the sandbox (API server emulator, simulated
mesh, real Prometheus). One sandbox, one daemon and one browser for the whole module; each
test opens a fresh browser context (its own sessionStorage).

Screenshots of every page go to build/artifacts/ui/ (CANARYD_ARTIFACTS overrides), printed.
Without chromium or playwright the module skips and says why; with CI=true it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "canaryd.yaml"
EXAMPLE = ROOT / "config" / "examples" / "canary.yaml"
ARTIFACTS = Path(os.environ.get("CANARYD_ARTIFACTS", ROOT / "build" / "artifacts")) / "ui"
TOKENS = {"read": "ui-read-token-5b1e0c7d9a", "submit": "ui-submit-token-3f9d2a61c4",
          "operate": "ui-operate-token-8c4b7e2f10"}
ROLLOUT = "podinfo-ui"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
# Keep the browser off the network: every name resolves to nothing but loopback, anything
# else would go to a proxy that is not there, and the background services are off.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-sync",
    "--disable-component-update", "--disable-default-apps", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--metrics-recording-only", "--no-pings",
    "--disable-features=OptimizationHints,Translate,MediaRouter,AutofillServerCommunication",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>;127.0.0.1",
]
pytestmark = [pytest.mark.browser, pytest.mark.prometheus]
T = TypeVar("T")


def _require() -> str:
    """The chromium binary; skip (fail in CI) without it, playwright or prometheus."""
    missing = []
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        missing.append("chromium is not installed (as root: apt-get install -y chromium, "
                       "or make chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is not installed (pip install '.[test]')")
    if shutil.which("prometheus") is None:
        missing.append("prometheus is not installed (make prometheus)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail("the browser tests need: " + "; ".join(missing))
        pytest.skip("; ".join(missing))
    assert chromium is not None
    return chromium


def until(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """The first truthy result of `probe`, polled; AssertionError naming `what` at the end."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")
        time.sleep(0.2)


def call(method: str, url: str, body: Any = None, *, token: str | None = None,
         content_type: str = "application/json") -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 (loopback)
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        text = exc.read()
        return exc.code, json.loads(text) if text else None


def _line(proc: subprocess.Popen[bytes], timeout: float, what: str) -> dict[str, Any]:
    """The first JSON line `proc` prints, read in a thread so that the wait is bounded."""
    out: list[bytes] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(timeout)
    if not out or not out[0]:
        raise AssertionError(f"{what} did not say it was ready within {timeout}s "
                             f"(exit code {proc.poll()})")
    data: dict[str, Any] = json.loads(out[0])
    return data


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    url: str
    kube_url: str
    tmp: Path
    browser: Any
    serve: subprocess.Popen[bytes]
    serve_args: list[str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_serve(self) -> None:
        log = (self.tmp / "serve.log").open("ab")
        self.serve = subprocess.Popen(self.serve_args, stdout=subprocess.PIPE, stderr=log,
                                      cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.procs.append(self.serve)
        ready = _line(self.serve, 60, "canaryd serve")
        assert ready.get("url") == self.url, ready

    def api(self, method: str, path: str, body: Any = None, role: str = "operate"
            ) -> tuple[int, Any]:
        return call(method, self.url + path, body, token=TOKENS[role])

    def rollout(self, name: str = ROLLOUT) -> dict[str, Any]:
        status, body = self.api("GET", f"/api/v1/rollouts/demo/{name}", role="read")
        assert status == 200, body
        return dict(body)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    chromium = _require()
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("ui")
    procs: list[subprocess.Popen[bytes]] = []
    python = [sys.executable, "-m", "canaryd"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        with (tmp / "sandbox.log").open("wb") as log:
            sandbox = subprocess.Popen([*python, "sandbox", "--no-daemon", "--json",
                                        "--rps", "200"],
                                       stdout=subprocess.PIPE, stderr=log, cwd=ROOT, env=env)
        procs.append(sandbox)
        endpoints = _line(sandbox, 90, "canaryd sandbox")
        tokens = tmp / "tokens.yaml"
        tokens.write_text(yaml.safe_dump([{"name": f"ui-{role}", "role": role, "token": token}
                                          for role, token in TOKENS.items()]))
        port = _free_port()
        args = [*python, "serve", "--config", str(CONFIG),
                "--kubeconfig", endpoints["kubeconfig"], "--host", "127.0.0.1",
                "--port", str(port), "--prometheus-url", endpoints["prometheus_url"],
                "--tokens-file", str(tokens), "--no-leader-elect", "--identity", "ui-test"]
        url = f"http://127.0.0.1:{port}"
        stack = Stack(url=url, kube_url=endpoints["kube_api_url"], tmp=tmp, browser=None,
                      serve=sandbox, serve_args=args, procs=procs)
        stack.start_serve()
        manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
        manifest["metadata"]["name"] = ROLLOUT
        manifest["spec"]["plan"] = {"steps": [{"weight": 20, "pause": "30m"}, {"weight": 60}]}
        manifest["spec"]["analysis"] = {"profile": "sandbox", "interval": "2s"}
        status, body = stack.api("POST", "/api/v1/rollouts", manifest, role="submit")
        assert status == 201, body
        with sync_playwright() as pw:
            stack.browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            try:
                yield stack
            finally:
                stack.browser.close()
    finally:
        _stop(procs)


@pytest.fixture
def page(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context; fails the test on any page error, CSP violation or request
    that leaves the daemon's origin (no CDN, nothing external)."""
    context = stack.browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
          if msg.type == "error" and not msg.text.startswith("Failed to load resource")
          else None)
    pg.on("request", lambda req: None if req.url.startswith(stack.url + "/")
          else problems.append(f"request off the daemon's origin: {req.url}"))
    try:
        yield pg
    finally:
        context.close()
    assert not problems, problems


def sign_in(page: Any, stack: Stack, role: str, hash_: str = "") -> None:
    page.goto(f"{stack.url}/ui/{hash_}")
    page.fill("#token", TOKENS[role])
    page.click("#login button[type=submit]")
    page.wait_for_selector("#whoami")


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def runs(page: Any, metric: str) -> int:
    value = page.get_attribute(f"figure.check[data-metric='{metric}'] svg", "data-runs")
    return int(value or 0)


def wait_runs(page: Any, metric: str, above: int, timeout_s: float = 30) -> None:
    page.wait_for_function(
        "([m, n]) => { const svg = document.querySelector(`figure.check[data-metric='${m}'] svg`);"
        " return svg !== null && Number(svg.dataset.runs) > n; }",
        arg=[metric, above], timeout=timeout_s * 1000)


def test_the_ui_is_served_with_a_strict_policy_and_the_token_is_never_a_cookie(
    stack: Stack, page: Any,
) -> None:
    response = page.goto(f"{stack.url}/ui/")
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert page.wait_for_selector("#login")
    sign_in(page, stack, "read")
    assert page.text_content("#whoami") == "ui-read (read; all namespaces)"
    assert page.context.cookies() == []
    assert page.evaluate("sessionStorage.getItem('canaryd.token')") == TOKENS["read"]
    assert TOKENS["read"] not in page.url


def test_the_list_shows_the_running_rollout_and_filters_it(stack: Stack, page: Any) -> None:
    started = time.perf_counter()
    sign_in(page, stack, "read")
    row = f"tr[data-rollout='demo/{ROLLOUT}']"
    page.wait_for_selector(f"{row} .phase-Progressing", timeout=60_000)
    print(f"list page: signed in and rollout shown after {time.perf_counter() - started:.2f}s")
    assert page.text_content(f"{row} td:nth-child(3)") == "podinfo"
    screenshot(page, "rollouts")
    page.fill("input[name=namespace]", "elsewhere")
    page.wait_for_selector("text=no rollouts match")
    page.fill("input[name=namespace]", "demo")
    page.select_option("select[name=phase]", "Progressing")
    page.wait_for_selector(row)
    assert "phase=Progressing" in page.url
    page.select_option("select[name=phase]", "Succeeded")
    page.wait_for_selector("text=no rollouts match")


def test_the_check_plot_gains_a_point_when_an_analysis_run_arrives(
    stack: Stack, page: Any,
) -> None:
    started = time.perf_counter()
    sign_in(page, stack, "read", f"#/rollouts/demo/{ROLLOUT}")
    page.wait_for_selector("figure.check[data-metric='istio-success-rate'] svg")
    print(f"detail page: first plot drawn {time.perf_counter() - started:.2f}s after load")
    page.evaluate("window.__sameDocument = true")
    # Passing band and threshold from the rollout's effective analysis; the plan marks
    # step 1 as current; the weight timeline has the change to 20%.
    plot = "figure.check[data-metric='istio-success-rate'] svg"
    assert page.locator(f"{plot} rect.band").count() == 1
    assert page.locator("#plan li.step-current").get_attribute("data-step") == "1"
    assert int(page.get_attribute("svg.timeline", "data-changes") or 0) >= 1
    wait_runs(page, "istio-success-rate", 0)
    before = runs(page, "istio-success-rate")
    wait_runs(page, "istio-success-rate", before)
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    # Stable's value is plotted beside the canary's once both get traffic.
    page.wait_for_function(f"document.querySelectorAll(\"{plot} circle.stable\").length > 0")
    screenshot(page, "rollout")


def test_the_stream_resumes_after_the_daemon_restarts(stack: Stack, page: Any) -> None:
    sign_in(page, stack, "read", f"#/rollouts/demo/{ROLLOUT}")
    wait_runs(page, "istio-success-rate", 0)
    page.evaluate("window.__sameDocument = true")
    stack.serve.send_signal(signal.SIGTERM)
    stack.serve.wait(timeout=30)
    page.wait_for_function("document.querySelector('#stream-state')?.textContent"
                           ".startsWith('reconnecting')")
    before = runs(page, "istio-success-rate")
    stack.start_serve()
    page.wait_for_selector("#stream-state:text-is('live')", timeout=30_000)
    wait_runs(page, "istio-success-rate", before)
    assert page.evaluate("window.__sameDocument") is True
    ids = page.locator("#check-results tbody tr td:first-child").all_text_contents()
    assert len(ids) == len(set(ids)), f"an analysis run was shown twice: {ids}"


def test_profiles_are_shown_read_only(stack: Stack, page: Any) -> None:
    sign_in(page, stack, "read", "#/profiles")
    sandbox = "section.profile[data-profile='sandbox']"
    page.wait_for_selector(sandbox)
    cells = page.locator(f"{sandbox} tbody tr").first.locator("td").all_text_contents()
    assert cells[:3] == ["istio-success-rate", "≥ 99%", "%"]
    assert page.locator("main button").count() == 0
    status, _ = call("GET", f"{stack.url}/api/v1/profiles")
    assert status == 401
    screenshot(page, "profiles")


def test_a_read_token_has_no_buttons_and_the_api_refuses_it(stack: Stack, page: Any) -> None:
    sign_in(page, stack, "read", f"#/rollouts/demo/{ROLLOUT}")
    page.wait_for_selector("figure.check svg")
    page.wait_for_selector("#stream-state:text-is('live')")
    assert page.locator("button.action").count() == 0
    status = page.evaluate("""async (name) => {
        const resp = await fetch(`/api/v1/rollouts/demo/${name}/abort`, {method: 'POST',
            headers: {Authorization: `Bearer ${sessionStorage.getItem('canaryd.token')}`}});
        return resp.status; }""", ROLLOUT)
    assert status == 403
    assert stack.rollout()["status"]["phase"] == "Progressing"


def test_html_in_a_reason_or_an_annotation_stays_text(stack: Stack, page: Any) -> None:
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"] = {"name": "xss", "namespace": "demo", "annotations": {"note": XSS}}
    manifest["spec"].update(target="xss", version=XSS)
    manifest["spec"]["router"]["istio"]["virtualService"] = "xss"
    manifest["spec"]["workloads"].update(stable="xss-stable", canary="xss-canary")
    status, body = stack.api("POST", "/api/v1/rollouts", manifest, role="submit")
    assert status == 201, body
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # A status written by someone else (any client with status access may): a finished
    # rollout whose reasons hold markup. canaryd reads it and leaves it alone.
    final = {"phase": "Failed", "sequence": 2, "reason": XSS, "phaseStartedAt": now,
             "weights": {"stable": 100, "canary": 0},
             "history": [{"seq": 1, "time": now, "source": "Pending", "phase": "Failed",
                          "trigger": "Test", "reason": XSS}],
             "checks": [{"seq": 2, "metric": "istio-success-rate", "query": "vector(1)",
                         "value": 1, "threshold": XSS, "verdict": "Fail", "reason": XSS,
                         "time": now, "stepIndex": 0}]}
    path = "/apis/canaryd.io/v1alpha1/namespaces/demo/rollouts/xss/status"

    def written() -> bool:
        code, _ = call("PATCH", stack.kube_url + path, {"status": final},
                       content_type="application/merge-patch+json")
        assert code == 200
        got = stack.rollout("xss").get("status") or {}
        return got.get("reason") == XSS and got.get("phase") == "Failed"

    until(written, timeout=20, what="the hand-written status")
    sign_in(page, stack, "operate", "#/rollouts/demo/xss")
    page.wait_for_selector("#verdict")
    assert page.text_content("#reason") == XSS
    assert page.text_content("td.annotation") == XSS
    assert page.locator("#history td.reason").first.text_content() == XSS
    assert page.locator("#check-results td.reason").first.text_content() == XSS
    assert page.locator("main img, main script, main [onerror]").count() == 0
    assert page.locator("button.action").count() == 0  # finished: nothing to act on
    screenshot(page, "xss")
    page.goto(f"{stack.url}/ui/#/?namespace=demo")
    page.wait_for_selector("tr[data-rollout='demo/xss']")
    assert page.text_content("tr[data-rollout='demo/xss'] td.version") == XSS
    assert page.locator("main img, main script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_an_operate_token_aborts_the_rollout_after_confirming(stack: Stack, page: Any) -> None:
    # Last in the module: it ends the shared rollout.
    sign_in(page, stack, "operate", f"#/rollouts/demo/{ROLLOUT}")
    page.wait_for_selector("button[data-action='abort']")
    assert sorted(page.locator("button.action").evaluate_all(
        "els => els.map(e => e.dataset.action)")) == ["abort", "pause", "promote", "resume"]
    questions: list[str] = []

    def dismiss(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("button[data-action='abort']")
    assert questions and questions[0].startswith("Abort the rollout?")
    assert stack.rollout()["status"]["phase"] == "Progressing"  # dismissed: nothing sent
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[data-action='abort']")
    page.wait_for_selector("#action-message.ok")
    page.wait_for_selector("#verdict", timeout=60_000)
    assert "Aborted" in (page.text_content("#verdict") or "")
    status = stack.rollout()["status"]
    assert status["phase"] == "Aborted" and status["weights"] == {"stable": 100, "canary": 0}
    code, vs = call("GET", stack.kube_url + "/apis/networking.istio.io/v1/namespaces/demo/"
                    "virtualservices/podinfo")
    assert code == 200
    route = next(r for r in vs["spec"]["http"] if r.get("name") == "primary")
    assert [d["weight"] for d in route["route"]] == [100, 0]  # traffic back on stable
    assert page.locator("button.action").count() == 0
    screenshot(page, "aborted")
