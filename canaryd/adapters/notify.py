"""A notice as each receiver wants it. Pure.

- Slack incoming webhook: Block Kit (a header, the fields at a glance, the failing checks,
  a link), with `text` as the notification's fallback.
- Microsoft Teams workflow webhook ("Post to a channel when a webhook request is
  received"): a message with one Adaptive Card attachment.
- CloudEvents 1.0, structured JSON mode, for any other webhook.
"""

from __future__ import annotations

from typing import Any

from canaryd.core.model import API_VERSION, PLURAL
from canaryd.core.notices import Notice

TITLES = {
    "started": "started", "stepPassed": "step passed", "paused": "paused",
    "rolledBack": "rolled back", "succeeded": "promoted", "failed": "failed",
    "aborted": "aborted", "hookFailed": "hook failed",
}
ICONS = {"rolledBack": ":rewind:", "succeeded": ":white_check_mark:", "failed": ":x:",
         "aborted": ":no_entry_sign:", "hookFailed": ":warning:", "paused": ":pause_button:",
         "started": ":rocket:", "stepPassed": ":arrow_forward:"}
CLOUDEVENT_TYPE = "io.canaryd.rollout."


def link(n: Notice, api_url: str | None) -> str | None:
    if not api_url:
        return None
    return f"{api_url.rstrip('/')}/api/v1/rollouts/{n.namespace}/{n.name}"


def headline(n: Notice) -> str:
    return f"{n.target} {TITLES.get(n.event, n.event)}: {n.namespace}/{n.name}"


def facts(n: Notice) -> list[tuple[str, str]]:
    version = f"{n.previous} -> {n.version}" if n.previous else n.version
    out = [("Target", n.target), ("Version", version), ("Verdict", n.phase)]
    if n.step:
        out.append(("Step", n.step))
    if n.weights:
        out.append(("Traffic", f"canary {n.weights.get('canary', 0)}%, "
                               f"stable {n.weights.get('stable', 0)}%"))
    return out


def text(n: Notice) -> str:
    """The plain message: what happened, why, and the numbers behind it."""
    lines = [f"{headline(n)} (version {n.version})", n.reason]
    lines += [f"failing check: {f}" for f in n.failing]
    return "\n".join(lines)


def _mrkdwn(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(n: Notice, api_url: str | None = None) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline(n)[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{_mrkdwn(v)}"}
                                       for k, v in facts(n)][:10]},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(n.reason)[:3000]}},
    ]
    if n.failing:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(
            f"• `{_mrkdwn(f)}`" for f in n.failing)[:3000]}})
    url = link(n, api_url)
    if url:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"<{url}|{n.namespace}/{n.name} in canaryd>"}]})
    return {"text": f"{ICONS.get(n.event, '')} {text(n)}".strip(), "blocks": blocks}


def teams(n: Notice, api_url: str | None = None) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": True,
         "text": headline(n),
         "color": "Attention" if n.event in ("rolledBack", "failed", "hookFailed")
         else "Good" if n.event == "succeeded" else "Default"},
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts(n)]},
        {"type": "TextBlock", "wrap": True, "text": n.reason},
    ]
    for f in n.failing:
        body.append({"type": "TextBlock", "wrap": True, "fontType": "Monospace",
                     "text": f"failing check: {f}"})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.4", "body": body,
    }
    url = link(n, api_url)
    if url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in canaryd", "url": url}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
         "content": card}]}


def cloudevent(n: Notice, api_url: str | None = None) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{n.uid or n.namespace + '/' + n.name}/{n.seq}",
        "source": f"/apis/{API_VERSION}/namespaces/{n.namespace}/{PLURAL}/{n.name}",
        "type": CLOUDEVENT_TYPE + n.event,
        "subject": f"{n.namespace}/{n.name}",
        "time": n.time.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {
            "rollout": {"namespace": n.namespace, "name": n.name, "uid": n.uid},
            "event": n.event, "sequence": n.seq, "target": n.target, "version": n.version,
            "previousVersion": n.previous,
            "phase": n.phase, "reason": n.reason, "step": n.step, "weights": n.weights,
            "failingChecks": list(n.checks), "hook": n.hook, "link": link(n, api_url),
        },
    }


RENDER = {"slack": slack, "teams": teams, "cloudevents": cloudevent}
CONTENT_TYPES = {"cloudevents": "application/cloudevents+json"}
