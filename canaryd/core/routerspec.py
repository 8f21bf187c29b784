"""How a Rollout names its router: the traffic-splitting objects canaryd writes weights to
(Istio VirtualService, Gateway API HTTPRoute, SMI TrafficSplit, a Service selector).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from canaryd.core.base import Model
from canaryd.core.names import Label, Subdomain


class Destination(Model):
    """One destination of the route, as written in the VirtualService."""

    host: Subdomain = Field(description="the destination's host (a Service name or FQDN)")
    subset: Label | None = Field(default=None, description="the DestinationRule subset")
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        default=None, description="the destination port, when the route names one"
    )


class IstioRouter(Model):
    """Istio: the weights of one http route's two destinations in a VirtualService."""

    virtual_service: Subdomain = Field(description="the VirtualService, in the rollout's namespace")
    route: Label | None = Field(
        default=None, description="name of the http route to manage; default: the first one"
    )
    stable: Destination = Field(description="the destination serving the current version")
    canary: Destination = Field(description="the destination serving the new version")

    @model_validator(mode="after")
    def _distinct(self) -> IstioRouter:
        if self.stable == self.canary:
            raise ValueError("stable and canary destinations must differ")
        return self


class BackendRef(Model):
    """A backendRef of the rule: a Service in the rollout's namespace."""

    name: Label = Field(description="the Service's name")
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        default=None, description="the Service port, when the backendRef names one"
    )


class GatewayApiRouter(Model):
    """Gateway API HTTPRoute (gateway.networking.k8s.io, or Linkerd's policy.linkerd.io)."""

    http_route: Subdomain = Field(description="the HTTPRoute, in the rollout's namespace")
    api_group: Literal["gateway.networking.k8s.io", "policy.linkerd.io"] = Field(
        default="gateway.networking.k8s.io", description="the HTTPRoute's API group"
    )
    rule: Annotated[int, Field(ge=0, le=63)] | None = Field(
        default=None, description="index of the rule to manage; default: the first one"
    )
    rule_name: Label | None = Field(default=None, description="or the rule's name (v1.2+)")
    stable: BackendRef = Field(description="the backendRef serving the current version")
    canary: BackendRef = Field(description="the backendRef serving the new version")

    @model_validator(mode="after")
    def _distinct(self) -> GatewayApiRouter:
        if self.stable.name == self.canary.name:
            raise ValueError("stable and canary backendRefs must differ")
        if self.rule is not None and self.rule_name is not None:
            raise ValueError("give rule or ruleName, not both")
        return self


class SmiRouter(Model):
    """SMI TrafficSplit (split.smi-spec.io), backends by Service name."""

    traffic_split: Subdomain = Field(description="the TrafficSplit, in the rollout's namespace")
    stable: Label = Field(description="the backend Service serving the current version")
    canary: Label = Field(description="the backend Service serving the new version")

    @model_validator(mode="after")
    def _distinct(self) -> SmiRouter:
        if self.stable == self.canary:
            raise ValueError("stable and canary services must differ")
        return self


# A Kubernetes label key (name part) or value: what a Service selector holds.
LabelValue = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
]


class ServiceSelectorRouter(Model):
    """Blue-green: switch a Service's selector between the blue and green label values."""

    active_service: Label = Field(description="the Service live traffic goes through")
    preview_service: Label | None = Field(
        default=None, description="pointed at green before the switch, for pre-promotion checks"
    )
    selector_key: LabelValue = Field(
        default="version", description="the selector key whose value picks the version"
    )
    blue: LabelValue = Field(description="the selector value of the current version")
    green: LabelValue = Field(description="the selector value of the new version")

    @model_validator(mode="after")
    def _distinct(self) -> ServiceSelectorRouter:
        if self.blue == self.green:
            raise ValueError("blue and green selector values must differ")
        if self.preview_service == self.active_service:
            raise ValueError("the preview service must differ from the active service")
        return self


ROUTER_KINDS = ("istio", "gatewayApi", "smi", "service")


class Router(Model):
    """How traffic reaches the two versions: exactly one router kind (docs/routers.md)."""

    istio: IstioRouter | None = None
    gateway_api: GatewayApiRouter | None = None
    smi: SmiRouter | None = None
    service: ServiceSelectorRouter | None = Field(
        default=None, description="blue-green: a Service whose selector is switched"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Router:
        chosen = [name for name, value in self if value is not None]
        if len(chosen) != 1:
            raise ValueError(f"set exactly one router kind ({', '.join(ROUTER_KINDS)})")
        return self
