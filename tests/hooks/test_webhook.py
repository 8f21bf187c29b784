"""The guarded HTTP client of hooks and notifications, against a real aiohttp receiver:
signatures, retries within the deadline, the address policy after DNS, redaction."""

from __future__ import annotations

import asyncio
import ipaddress

from aiohttp import web
from structlog.testing import capture_logs

from canaryd.adapters import webhook
from tests.hooks.receiver import receiver

OPEN = webhook.AddressPolicy()
NO_LOOPBACK = webhook.AddressPolicy(deny=(ipaddress.ip_network("127.0.0.0/8"),))


async def test_a_signed_call_is_retried_on_5xx_and_passes_on_2xx() -> None:
    async with receiver() as rec, webhook.session(OPEN) as http:
        rec.answers["/flaky"] = (503, {"reason": "warming up"})

        async def heal() -> None:
            while len(rec.calls) < 2:
                await asyncio.sleep(0.01)
            rec.answers["/flaky"] = (200, {"reason": "ok"})

        healer = asyncio.create_task(heal())
        with capture_logs() as logs:
            answer = await webhook.post(http, f"{rec.url}/flaky?token=T0P", {"a": 1},
                                        deadline=10, retries=3, secret=b"k")
        await healer
        assert answer.status == 200 and answer.detail == "HTTP 200: ok"
        assert len(rec.calls) >= 3 and all(c.signed_by(b"k") for c in rec.calls)
        assert not rec.calls[0].signed_by(b"other")
        retried = [e for e in logs if e["event"] == "retrying"]
        assert retried and all("T0P" not in str(e) and "/flaky" not in str(e) for e in retried)


async def test_4xx_is_final_and_says_why() -> None:
    async with receiver() as rec, webhook.session(OPEN) as http:
        rec.answers["/t"] = (422, {"reason": "p99 412 ms > 300 ms"})
        answer = await webhook.post(http, f"{rec.url}/t", {}, deadline=5, retries=3)
        assert (answer.status, answer.detail) == (422, "HTTP 422: p99 412 ms > 300 ms")
        assert len(rec.calls) == 1


async def test_the_deadline_covers_a_receiver_that_never_answers() -> None:
    started = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        started.set()
        await asyncio.sleep(3600)
        return web.Response()

    app = web.Application()
    app.router.add_post("/", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with webhook.session(OPEN) as http:
            answer = await webhook.post(http, f"http://127.0.0.1:{port}/", {}, deadline=0.5,
                                        retries=5)
        assert answer.status is None and "within 0.5s" in answer.detail
        assert started.is_set()
    finally:
        await runner.cleanup()


async def test_the_address_policy_applies_after_dns_and_to_literals() -> None:
    async with receiver() as rec, webhook.session(NO_LOOPBACK) as http:
        port = rec.url.rsplit(":", 1)[1]
        by_name = await webhook.post(http, f"http://localhost:{port}/x", {}, deadline=5,
                                     retries=2)
        assert by_name.status is None and "denied network" in by_name.detail, by_name
        literal = await webhook.post(http, f"{rec.url}/x", {}, deadline=5, retries=2)
        assert literal.status is None and "denied network" in literal.detail, literal
        assert not rec.calls, "nothing reached the receiver"
    assert webhook.AddressPolicy().refusal("169.254.169.254") is not None
    assert webhook.AddressPolicy().refusal("::ffff:169.254.169.254") is not None


def test_redaction_keeps_only_scheme_host_and_port() -> None:
    assert webhook.redact("https://hooks.slack.com/services/T0/B0/XYZ") == (
        "https://hooks.slack.com/…")
    assert webhook.redact("http://10.0.0.1:8080/?token=abc") == "http://10.0.0.1:8080/…"
    assert webhook.redact("http://[::1]:80/") == "http://[::1]:80"
