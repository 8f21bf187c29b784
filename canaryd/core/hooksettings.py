"""The daemon's side of hooks and notifications in config/canaryd.yaml (docs/hooks.md).

Hooks: where secrets for signatures live and which networks calls may reach.
Notifications: receivers (Slack, Microsoft Teams, CloudEvents webhooks), each with a URL
read from a file or an environment variable (never written in the config), and routes that
pick receivers by namespace, target and event.

Pure models: the address policy they make and the URL a receiver reads are
`canaryd.adapters.webhook.address_policy` and `.receiver_url`.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from canaryd.core.base import Model
from canaryd.core.durations import Duration
from canaryd.core.names import Label

EVENTS = ("started", "stepPassed", "paused", "rolledBack", "succeeded", "failed", "aborted",
          "hookFailed")
Event = Literal["started", "stepPassed", "paused", "rolledBack", "succeeded", "failed",
                "aborted", "hookFailed"]


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValueError(f"not a network in CIDR form: {exc}") from None
    return value


NetworkText = Annotated[str, AfterValidator(_network)]


class HookSettings(Model):
    secrets_dir: str = Field(
        default="/etc/canaryd/hook-secrets",
        description="where webhook secretFile names are read from (a mounted Secret)")
    allow_networks: list[NetworkText] = Field(
        default_factory=list, description="when set, calls may only reach these networks")
    deny_networks: list[NetworkText] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="calls never reach these (default: loopback, canaryd's own pod); "
        "link-local addresses (cloud metadata) are always refused")



class UrlFrom(Model):
    """Where a receiver's URL is read from: webhook URLs are credentials."""

    file: str | None = Field(default=None, description="a file holding the URL")
    env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")] | None = Field(
        default=None, description="an environment variable holding the URL")

    @model_validator(mode="after")
    def _one(self) -> UrlFrom:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file or env")
        return self



class Receiver(Model):
    name: Label
    kind: Literal["slack", "teams", "cloudevents"] = Field(
        description="slack: incoming webhook (Block Kit); teams: workflow webhook (Adaptive "
        "Card); cloudevents: any webhook, CloudEvents 1.0 structured JSON")
    url_from: UrlFrom
    timeout: Annotated[float, Field(ge=0.1, le=300)] = 10.0
    retries: Annotated[int, Field(ge=0, le=10)] = 3
    queue: Annotated[int, Field(ge=1, le=100000)] = Field(
        default=1000, description="messages held for this receiver; beyond, the oldest drop")


class Route(Model):
    receivers: Annotated[list[Label], Field(min_length=1)]
    namespaces: list[Label] = Field(default_factory=list, description="default: every one")
    targets: list[Label] = Field(default_factory=list, description="default: every one")
    events: list[Event] = Field(default_factory=list, description="default: every event")

    def matches(self, namespace: str, target: str, event: str) -> bool:
        return ((not self.namespaces or namespace in self.namespaces)
                and (not self.targets or target in self.targets)
                and (not self.events or event in self.events))


class Notifications(Model):
    receivers: list[Receiver] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    api_url: str | None = Field(
        default=None, description="canaryd's API as people reach it, for links in messages")
    backfill: Duration = Field(
        default=900.0, description="a rollout no receiver was told about yet: events this "
        "recent are still sent (a new leader sends what the last one had not)")

    @model_validator(mode="after")
    def _known(self) -> Notifications:
        names = [r.name for r in self.receivers]
        if len(set(names)) != len(names):
            raise ValueError("receiver names must be unique")
        for i, route in enumerate(self.routes):
            for name in route.receivers:
                if name not in names:
                    raise ValueError(f"routes[{i}].receivers: unknown receiver {name!r}")
        return self

    def receivers_for(self, namespace: str, target: str, event: str) -> list[str]:
        out: list[str] = []
        for route in self.routes:
            if route.matches(namespace, target, event):
                out.extend(n for n in route.receivers if n not in out)
        return out
