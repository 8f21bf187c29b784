"""The web dashboard (/ui/) in a real browser: Debian's headless chromium, driven by
Playwright, against a `canaryd serve` process on the sandbox (API server emulator, simulated
mesh, real Prometheus). One sandbox, one daemon and one browser for the whole module; each
test opens a fresh browser context (its own sessionStorage).

Screenshots of every page go to build/artifacts/ui/ (CANARYD_ARTIFACTS overrides), printed.
Without chromium or playwright the module skips and says why; with CI=true it fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ui.support import (
    ARTIFACTS,
    CHROMIUM_FLAGS,
    CONFIG,
    EXAMPLE,
    ROOT,
    TOKEN_ENTRIES,
    TOKENS,
    Stack,
    call,
    free_port,
    hook_receiver,
    read_line,
    require,
    until,
)

ROLLOUT = "podinfo-ui"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
HOOK_REASON = "smoke test passed: <b>40 of 40</b> requests"
pytestmark = [pytest.mark.browser, pytest.mark.prometheus]


def _manifest(hook_url: str) -> dict[str, Any]:
    """The shared rollout: step 1 holds for 30 minutes (the tests end it), analysed every
    2 s by the sandbox profile, plus two dry-run checks (a sequential one, a comparison with
    stable) that draw the other kinds of band, and a step hook."""
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["name"] = ROLLOUT
    manifest["spec"]["plan"] = {"steps": [{"weight": 20, "pause": "30m"}, {"weight": 60}]}
    manifest["spec"]["analysis"] = {"profile": "sandbox", "interval": "2s", "checks": [
        {"metric": "istio-error-count", "sequential": {"alpha": 0.001}, "dryRun": True},
        {"metric": "istio-latency-p99", "maxRatioToStable": 1.5, "dryRun": True}]}
    manifest["spec"]["hooks"] = [{"name": "smoke", "stage": "step", "timeout": "5s",
                                  "webhook": {"url": f"{hook_url}/smoke"}}]
    return manifest


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    chromium = require()
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("ui")
    python = [sys.executable, "-m", "canaryd"]
    settings = yaml.safe_load(CONFIG.read_text())
    settings["hooks"] = {"denyNetworks": []}  # the hook receiver is on loopback
    config = tmp / "canaryd.yaml"
    config.write_text(yaml.safe_dump(settings))
    tokens = tmp / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKEN_ENTRIES))
    with hook_receiver({"reason": HOOK_REASON}) as (hook_url, _calls):
        with (tmp / "sandbox.log").open("wb") as log:
            sandbox = subprocess.Popen([*python, "sandbox", "--no-daemon", "--json",
                                        "--rps", "200"], stdout=subprocess.PIPE, stderr=log,
                                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        port = free_port()
        stack = Stack(url=f"http://127.0.0.1:{port}", kube_url="", tmp=tmp, serve_args=[],
                      hook_url=hook_url, procs=[sandbox])
        try:
            endpoints = read_line(sandbox, 120, "canaryd sandbox")
            stack.kube_url = endpoints["kube_api_url"]
            stack.serve_args = [
                *python, "serve", "--config", str(config),
                "--kubeconfig", endpoints["kubeconfig"], "--host", "127.0.0.1",
                "--port", str(port), "--prometheus-url", endpoints["prometheus_url"],
                "--tokens-file", str(tokens), "--no-leader-elect", "--identity", "ui-test"]
            stack.start_serve()
            status, body = stack.api("POST", "/api/v1/rollouts", _manifest(hook_url),
                                     role="submit")
            assert status == 201, body
            with sync_playwright() as pw:
                stack.browser = pw.chromium.launch(executable_path=chromium,
                                                   args=CHROMIUM_FLAGS)
                try:
                    yield stack
                finally:
                    stack.browser.close()
        finally:
            stack.stop()


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


def runs(page: Any, check: str) -> int:
    value = page.get_attribute(f"figure.check[data-check='{check}'] svg", "data-runs")
    return int(value or 0)


def wait_runs(page: Any, check: str, above: int, timeout_s: float = 30) -> None:
    page.wait_for_function(
        "([c, n]) => { const svg = document.querySelector(`figure.check[data-check='${c}'] svg`);"
        " return svg !== null && Number(svg.dataset.runs) > n; }",
        arg=[check, above], timeout=timeout_s * 1000)


def test_the_ui_is_served_with_a_strict_policy_and_the_token_is_never_a_cookie(
    stack: Stack, page: Any,
) -> None:
    response = page.goto(f"{stack.url}/ui/")
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    page.fill("#token", "not-a-token-of-this-server")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-message.error:text-is('unknown token')")
    assert page.evaluate("sessionStorage.getItem('canaryd.token')") is None
    screenshot(page, "signin")
    sign_in(page, stack, "read")
    assert page.text_content("#whoami") == "ui-read (read; all namespaces)"
    assert page.context.cookies() == []
    assert page.evaluate("sessionStorage.getItem('canaryd.token')") == TOKENS["read"]
    assert TOKENS["read"] not in page.url
    page.click("#signout")
    page.wait_for_selector("#login")
    assert page.evaluate("sessionStorage.getItem('canaryd.token')") is None


def test_the_browser_enforces_the_policy_inline_script_does_not_run(stack: Stack) -> None:
    context = stack.browser.new_context()
    try:
        pg = context.new_page()
        pg.goto(f"{stack.url}/ui/")
        pg.wait_for_selector("#login")
        violated = pg.evaluate("""() => new Promise((resolve) => {
            document.addEventListener('securitypolicyviolation',
                (e) => resolve(e.violatedDirective), {once: true});
            const el = document.createElement('script');
            el.textContent = 'window.__inline = 1';
            document.body.append(el);
            setTimeout(() => resolve('none'), 5000);  // no violation: the script ran
        })""")
        assert violated.startswith("script-src")
        assert pg.evaluate("window.__inline") is None
    finally:
        context.close()


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
    plot = "figure.check[data-check='istio-success-rate'] svg"
    page.wait_for_selector(plot)
    print(f"detail page: first plot drawn {time.perf_counter() - started:.2f}s after load")
    page.evaluate("window.__sameDocument = true")
    # Passing band and threshold from the rollout's effective analysis; the plan marks
    # step 1 as current; the weight timeline has the change to 20%.
    assert page.locator(f"{plot} rect.band").count() == 1
    assert page.locator("#plan li.step-current").get_attribute("data-step") == "1"
    assert page.text_content("#analysis-profile") == "sandbox, every 2s"
    assert int(page.get_attribute("svg.timeline", "data-changes") or 0) >= 1
    wait_runs(page, "istio-success-rate", 0)
    before = runs(page, "istio-success-rate")
    wait_runs(page, "istio-success-rate", before)
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    # Stable's value is plotted beside the canary's once both get traffic; the dry-run
    # comparison draws each run's limit from it, the sequential check its e-value limit.
    page.wait_for_function(f"document.querySelectorAll(\"{plot} circle.stable\").length > 0")
    ratio = "figure.check[data-check='istio-latency-p99:dry-run']"
    page.wait_for_selector(f"{ratio} svg line.ratio", state="attached")  # lines have no area
    assert "(dry run)" in (page.text_content(f"{ratio} figcaption") or "")
    sequential = "figure.check[data-check='istio-error-count:dry-run'] svg"
    page.wait_for_selector(f"{sequential} circle.canary")
    assert page.locator(f"{sequential} line.threshold").count() == 1
    # The step hook ran, and its receiver's reason (markup included) is shown as text.
    hook = page.locator("#hooks tbody tr").first
    hook.locator("td.outcome-Passed").wait_for()
    assert hook.locator("td.reason").text_content() == f"HTTP 200: {HOOK_REASON}"
    assert page.locator("#hooks b").count() == 0
    # Its start and finish are events of the stream, in the history by their seq.
    assert page.locator("#history tr.hook-event td:nth-child(4)").all_text_contents() == [
        "Running", "Passed"]
    sizes = page.evaluate("""() => performance.getEntriesByType('resource')
        .filter((r) => r.name.includes('/ui/'))
        .map((r) => r.decodedBodySize)""")
    nav = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    print(f"detail page: {len(sizes) + 1} files from /ui/, {sum(sizes)} bytes of assets "
          f"besides the page; DOMContentLoaded at {nav:.0f} ms")
    screenshot(page, "rollout")


def test_the_stream_resumes_after_the_daemon_restarts(stack: Stack, page: Any) -> None:
    sign_in(page, stack, "read", f"#/rollouts/demo/{ROLLOUT}")
    wait_runs(page, "istio-success-rate", 0)
    page.evaluate("window.__sameDocument = true")
    resumed: list[str] = []  # the Last-Event-ID of every reconnection attempt
    page.on("request", lambda req: resumed.append(req.headers.get("last-event-id", ""))
            if req.url.endswith("/events") else None)
    stack.stop_serve()
    page.wait_for_function("document.querySelector('#stream-state')?.textContent"
                           ".startsWith('reconnecting')")
    before = runs(page, "istio-success-rate")
    shown = page.locator("#check-results tbody tr td:first-child").all_text_contents()
    stack.start_serve()
    page.wait_for_selector("#stream-state:text-is('live')", timeout=30_000)
    wait_runs(page, "istio-success-rate", before)
    assert page.evaluate("window.__sameDocument") is True
    assert resumed and all(re.fullmatch(r"[0-9]+(\.[0-9]+)?", i) for i in resumed), resumed
    assert int(resumed[0].split(".")[0]) >= max(int(i.split(".")[0]) for i in shown)
    ids = page.locator("#check-results tbody tr td:first-child").all_text_contents()
    assert len(ids) == len(set(ids)), f"an analysis run was shown twice: {ids}"


def test_the_list_follows_its_stream_a_phase_change_shows_without_reload_or_polling(
    stack: Stack, page: Any,
) -> None:
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url)
            if "/api/v1/" in req.url else None)
    sign_in(page, stack, "read")
    row = f"tr[data-rollout='demo/{ROLLOUT}']"
    page.wait_for_selector(f"{row} .phase-Progressing", timeout=60_000)
    page.wait_for_selector("#stream-state:text-is('live')")
    page.evaluate("window.__sameDocument = true")
    seen = len(requests)
    # The real controller moves the rollout to Paused, then back to Progressing.
    status, body = stack.api("POST", f"/api/v1/rollouts/demo/{ROLLOUT}/pause")
    assert status == 202, body
    page.wait_for_selector(f"{row} .phase-Paused", timeout=30_000)
    status, body = stack.api("POST", f"/api/v1/rollouts/demo/{ROLLOUT}/resume")
    assert status == 202, body
    page.wait_for_selector(f"{row} .phase-Progressing", timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    after = requests[seen:]
    assert after == [], f"the list page asked the API again: {after}"
    lists = [u for u in requests if u.split("?")[0].endswith("/api/v1/rollouts")]
    streams = [u for u in requests if u.split("?")[0].endswith("/api/v1/events")]
    assert lists == [] and len(streams) == 1, requests


def test_the_list_says_reconnecting_when_the_stream_drops_and_relists(
    stack: Stack, page: Any,
) -> None:
    sign_in(page, stack, "read")
    row = f"tr[data-rollout='demo/{ROLLOUT}']"
    page.wait_for_selector(row, timeout=60_000)
    page.wait_for_selector("#stream-state:text-is('live')")
    page.evaluate("window.__sameDocument = true")
    resumed: list[str] = []
    page.on("request", lambda req: resumed.append(req.headers.get("last-event-id", ""))
            if "/api/v1/events" in req.url else None)
    stack.stop_serve()
    page.wait_for_selector("#stream-state.reconnecting", timeout=30_000)
    assert (page.text_content("#stream-state") or "").startswith("reconnecting")
    assert page.locator(row).count() == 1  # the rows stay while reconnecting
    stack.start_serve()
    page.wait_for_selector("#stream-state:text-is('live')", timeout=30_000)
    page.wait_for_selector(row)
    assert page.evaluate("window.__sameDocument") is True
    # Every attempt names where the page was; the restarted daemon re-lists.
    assert resumed and all(re.fullmatch(r"[0-9a-f]{8}-[0-9]+", i) for i in resumed), resumed


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
    assert stack.rollout(ROLLOUT)["status"]["phase"] == "Progressing"
    # An operator of another namespace sees neither the rollout nor a button.
    page.click("#signout")
    sign_in(page, stack, "elsewhere", f"#/rollouts/demo/{ROLLOUT}")
    assert page.text_content("#whoami") == "ui-elsewhere (operate; namespaces other)"
    error = page.wait_for_selector("main p.error")
    assert "may act in namespaces other, not 'demo'" in (error.text_content() or "")
    assert page.locator("button.action").count() == 0
    page.goto(f"{stack.url}/ui/#/")
    page.wait_for_selector("text=no rollouts match")


def _foreign(stack: Stack, name: str, status: dict[str, Any], **spec: Any) -> None:
    """A rollout on objects of its own whose status is then written by someone else (any
    client with status access may), as `status`."""
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"] = {"name": name, "namespace": "demo",
                            **spec.pop("metadata", {})}
    manifest["spec"].update(target=name, **spec)
    manifest["spec"]["router"]["istio"]["virtualService"] = name
    manifest["spec"]["workloads"].update(stable=f"{name}-stable", canary=f"{name}-canary")
    code, body = stack.api("POST", "/api/v1/rollouts", manifest, role="submit")
    assert code == 201, body
    path = f"/apis/canaryd.io/v1alpha1/namespaces/demo/rollouts/{name}/status"

    def written() -> bool:  # again until the controller's own first write is behind it
        code, answer = call("PATCH", stack.kube_url + path, {"status": status},
                            content_type="application/merge-patch+json")
        assert code == 200, answer
        got = stack.rollout(name).get("status") or {}
        return got.get("reason") == status["reason"] and got.get("phase") == status["phase"]

    until(written, timeout=20, what=f"the hand-written status of {name}")


def test_html_in_a_reason_or_an_annotation_stays_text(stack: Stack, page: Any) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # A finished rollout whose reasons hold markup. canaryd reads it and leaves it alone.
    _foreign(stack, "xss", {
        "phase": "Failed", "sequence": 2, "reason": XSS, "phaseStartedAt": now,
        "weights": {"stable": 100, "canary": 0},
        "history": [{"seq": 1, "time": now, "source": "Pending", "phase": "Failed",
                     "trigger": "Test", "reason": XSS}],
        "checks": [{"seq": 2, "metric": "istio-success-rate", "query": "vector(1)",
                    "value": 1, "threshold": XSS, "verdict": "Fail", "reason": XSS,
                    "time": now, "stepIndex": 0}]},
        version=XSS, metadata={"annotations": {"note": XSS}})
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


def test_a_status_canaryd_cannot_read_shows_as_it_is_without_breaking_the_page(
    stack: Stack, page: Any,
) -> None:
    _foreign(stack, "garbage", {"phase": 42, "reason": "hand-written", "weights": "half",
                                "stepIndex": "two", "hooks": [None, 5, "x"]})
    sign_in(page, stack, "read", "#/?namespace=demo")
    row = "tr[data-rollout='demo/garbage']"
    page.wait_for_selector(f"{row} .phase-Unknown:text-is('42')")
    assert page.text_content(f"{row} td.reason") == "hand-written"
    page.goto(f"{stack.url}/ui/#/rollouts/demo/garbage")
    page.wait_for_selector("#reason:text-is('hand-written')")
    page.wait_for_selector("#stream-state:text-is('live')")
    assert page.text_content("#head .phase") == "42"
    assert page.text_content("#hooks") == "Hooksthis rollout has no hooks"
    # The page fixture fails the test on any page error the garbage might have caused.


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
    assert stack.rollout(ROLLOUT)["status"]["phase"] == "Progressing"  # dismissed: nothing sent
    # An action the phase does not take: the API's refusal is shown, nothing changes.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[data-action='resume']")
    message = page.wait_for_selector("#action-message.error")
    expected = ("resume refused: rollout demo/podinfo-ui is Progressing; resume applies to "
                "a rollout that is Paused")
    assert message.text_content() == expected
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[data-action='abort']")
    page.wait_for_selector("#action-message.ok")
    page.wait_for_selector("#verdict", timeout=60_000)
    assert "Aborted" in (page.text_content("#verdict") or "")
    status = stack.rollout(ROLLOUT)["status"]
    assert status["phase"] == "Aborted" and status["weights"] == {"stable": 100, "canary": 0}
    code, vs = call("GET", stack.kube_url + "/apis/networking.istio.io/v1/namespaces/demo/"
                    "virtualservices/podinfo")
    assert code == 200
    route = next(r for r in vs["spec"]["http"] if r.get("name") == "primary")
    assert [d["weight"] for d in route["route"]] == [100, 0]  # traffic back on stable
    assert page.locator("button.action").count() == 0
    screenshot(page, "aborted")
