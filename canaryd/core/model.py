"""The Rollout resource: spec (the request) and status (the whole progress).

These pydantic models are the single source of truth for validation: the HTTP API, the
controller and `canaryd config check` all go through them, and the CRD schema mirrors them.
"""

from __future__ import annotations

import enum
import itertools
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from canaryd.core.durations import Duration
from canaryd.core.names import Label, Subdomain, check_subdomain

GROUP = "canaryd.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Rollout"
PLURAL = "rollouts"
ACTION_ANNOTATION = "canaryd.io/action"
MAX_STEPS = 100


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors, not ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
        allow_inf_nan=False,  # NaN and Infinity are not JSON, and no threshold is either
    )

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# ----------------------------------------------------------------------------- spec


class Destination(Model):
    host: Subdomain
    subset: Label | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None


class IstioRouter(Model):
    virtual_service: Subdomain
    route: Label | None = Field(
        default=None, description="name of the http route to manage; default: the first one"
    )
    stable: Destination
    canary: Destination

    @model_validator(mode="after")
    def _distinct(self) -> IstioRouter:
        if self.stable == self.canary:
            raise ValueError("stable and canary destinations must differ")
        return self


class BackendRef(Model):
    name: Label
    port: Annotated[int, Field(ge=1, le=65535)] | None = None


class GatewayApiRouter(Model):
    """Gateway API HTTPRoute (gateway.networking.k8s.io, or Linkerd's policy.linkerd.io)."""

    http_route: Subdomain
    api_group: Literal["gateway.networking.k8s.io", "policy.linkerd.io"] = (
        "gateway.networking.k8s.io"
    )
    rule: Annotated[int, Field(ge=0, le=63)] | None = Field(
        default=None, description="index of the rule to manage; default: the first one"
    )
    rule_name: Label | None = Field(default=None, description="or the rule's name (v1.2+)")
    stable: BackendRef
    canary: BackendRef

    @model_validator(mode="after")
    def _distinct(self) -> GatewayApiRouter:
        if self.stable.name == self.canary.name:
            raise ValueError("stable and canary backendRefs must differ")
        if self.rule is not None and self.rule_name is not None:
            raise ValueError("give rule or ruleName, not both")
        return self


class SmiRouter(Model):
    """SMI TrafficSplit (split.smi-spec.io), backends by Service name."""

    traffic_split: Subdomain
    stable: Label
    canary: Label

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

    active_service: Label
    preview_service: Label | None = Field(
        default=None, description="pointed at green before the switch, for pre-promotion checks"
    )
    selector_key: LabelValue = "version"
    blue: LabelValue
    green: LabelValue

    @model_validator(mode="after")
    def _distinct(self) -> ServiceSelectorRouter:
        if self.blue == self.green:
            raise ValueError("blue and green selector values must differ")
        if self.preview_service == self.active_service:
            raise ValueError("the preview service must differ from the active service")
        return self


ROUTER_KINDS = ("istio", "gatewayApi", "smi", "service")


class Router(Model):
    istio: IstioRouter | None = None
    gateway_api: GatewayApiRouter | None = None
    smi: SmiRouter | None = None
    service: ServiceSelectorRouter | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Router:
        chosen = [name for name, value in self if value is not None]
        if len(chosen) != 1:
            raise ValueError(f"set exactly one router kind ({', '.join(ROUTER_KINDS)})")
        return self


class Workloads(Model):
    stable: Label
    canary: Label
    min_available: Annotated[int, Field(ge=1, le=100000)] = 1
    ready_timeout: Duration = 300.0


class Step(Model):
    weight: Annotated[int, Field(ge=0, le=100)]
    pause: Duration = 0.0
    gate: Literal["manual"] | None = Field(
        default=None, description="'manual': wait for a resume/promote action before advancing"
    )
    analysis: bool = Field(
        default=True, description="run analysis in this step (false: advance after the pause)"
    )


class Plan(Model):
    steps: Annotated[list[Step], Field(max_length=MAX_STEPS)] | None = None
    step_weight: Annotated[int, Field(ge=1, le=100)] | None = None
    max_weight: Annotated[int, Field(ge=1, le=100)] | None = None
    step_pause: Duration = 0.0
    interval: Duration | None = Field(
        default=None, description="analysis interval; default: the profile's"
    )

    @model_validator(mode="after")
    def _one_form(self) -> Plan:
        if (self.steps is None) == (self.step_weight is None):
            raise ValueError("give either steps or stepWeight (with optional maxWeight)")
        if self.steps is not None:
            if not self.steps:
                raise ValueError("steps must not be empty")
            weights = [s.weight for s in self.steps]
            if any(b < a for a, b in itertools.pairwise(weights)):
                raise ValueError("step weights must not decrease")
        if self.max_weight is not None and self.step_weight is None:
            raise ValueError("maxWeight goes with stepWeight")
        return self


class BlueGreen(Model):
    """Blue-green options: analysis before and after the switch, approval, blue scale-down."""

    pre_promotion_analysis: bool = Field(
        default=True, description="analyse green on preview traffic before the switch"
    )
    approval: bool = Field(default=False, description="wait for resume/promote before the switch")
    post_promotion: Duration = Field(
        default=0.0, description="minimum time on live traffic, analysed, before success"
    )
    scale_down: bool = Field(default=False, description="scale blue to zero after success")
    scale_down_delay: Duration = 30.0
    interval: Duration | None = None


class Threshold(Model):
    min: float | None = None
    max: float | None = None
    max_ratio_to_stable: Annotated[float, Field(gt=0)] | None = None


class AnalysisRef(Model):
    profile: Label = "default"
    thresholds: dict[Label, Threshold] = Field(
        default_factory=dict,
        max_length=64,
        description="per-metric overrides, within the profile's bounds",
    )
    interval: Duration | None = None


class RolloutSpec(Model):
    target: Label = Field(description="logical service name; one active rollout per target")
    # No control characters (C0, DEL, C1): the version reaches logs, events and terminals.
    version: Annotated[str, Field(min_length=1, max_length=253,
                                  pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]
    strategy: Literal["canary", "blueGreen"] = "canary"
    router: Router
    workloads: Workloads
    plan: Plan | None = Field(default=None, description="canary steps (canary strategy)")
    blue_green: BlueGreen | None = Field(default=None, description="blue-green options")
    analysis: AnalysisRef = AnalysisRef()
    supersede: bool = Field(
        default=False, description="roll back a running rollout of the same target first"
    )


    @model_validator(mode="after")
    def _strategy_fits(self) -> RolloutSpec:
        if self.strategy == "canary":
            if self.plan is None:
                raise ValueError("plan is required for the canary strategy")
            if self.blue_green is not None:
                raise ValueError("blueGreen options need strategy: blueGreen")
            if self.router.service is not None:
                raise ValueError("router.service (selector switch) needs strategy: blueGreen")
        else:
            if self.plan is not None:
                raise ValueError("plan is for canaries; use blueGreen options instead")
            if self.router.service is None:
                raise ValueError("strategy blueGreen needs router.service")
        return self

    @property
    def interval(self) -> float | None:
        if self.plan is not None:
            return self.plan.interval
        return self.blue_green.interval if self.blue_green is not None else None


def _mask_trailing_dash(value: str) -> str:
    return value[:-1] + "a" if value.endswith("-") else value


def check_generate_name(value: str) -> str:
    """What Kubernetes accepts as a generateName prefix (a DNS-1123 subdomain once the
    trailing dash is masked), short enough for the suffix canaryd or Kubernetes appends."""
    if len(value) > GENERATE_NAME_MAX:
        raise ValueError(f"at most {GENERATE_NAME_MAX} characters (a suffix is appended)")
    check_subdomain(_mask_trailing_dash(value))
    return value


def check_qualified_name(key: str) -> str:
    """A label or annotation key: `[prefix/]name` (prefix a DNS subdomain, name <= 63)."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        check_subdomain(prefix)
    if not QUALIFIED_NAME.match(name):
        raise ValueError(f"{key!r} is not a valid key: an optional DNS subdomain prefix and "
                         "'/', then at most 63 letters, digits, '-', '_' or '.', starting and "
                         "ending with a letter or digit")
    return key


def check_label_value(value: str) -> str:
    if value and not QUALIFIED_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid label value: at most 63 letters, digits, "
                         "'-', '_' or '.', starting and ending with a letter or digit")
    return value


def check_annotation_key(key: str) -> str:
    check_qualified_name(key)
    prefix = key.rpartition("/")[0]
    if prefix == GROUP or prefix.endswith("." + GROUP):
        raise ValueError(f"{key!r}: set by canaryd, not by a request (the {GROUP}/ keys are "
                         "canaryd's)")
    return key


QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
GENERATE_NAME_MAX = 243
MetaKey = Annotated[str, AfterValidator(check_qualified_name)]
AnnotationKey = Annotated[str, AfterValidator(check_annotation_key)]
LabelText = Annotated[str, AfterValidator(check_label_value)]
METADATA_FIELDS = ("name", "generateName", "namespace", "labels", "annotations")


class ObjectMeta(BaseModel):
    """What a submitted Rollout may say about itself. Anything else (finalizers,
    ownerReferences, server-set fields...) is refused, not passed through."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: Subdomain | None = None
    generate_name: Annotated[str, AfterValidator(check_generate_name)] | None = Field(
        default=None, alias="generateName")
    namespace: Label | None = None
    annotations: Annotated[dict[AnnotationKey, str], Field(max_length=256)] = Field(
        default_factory=dict)
    labels: Annotated[dict[MetaKey, LabelText], Field(max_length=256)] = Field(
        default_factory=dict)


class RolloutManifest(BaseModel):
    """A Rollout as submitted: the same document `kubectl apply` takes."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    api_version: Literal["canaryd.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Rollout"]
    metadata: ObjectMeta
    spec: RolloutSpec
    status: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _named(self) -> RolloutManifest:
        if not self.metadata.name and not self.metadata.generate_name:
            raise ValueError("metadata.name or metadata.generateName is required")
        return self


# ----------------------------------------------------------------------------- status


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    ABORTED = "Aborted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.ABORTED})


class Verdict(enum.StrEnum):
    PASS = "Pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


class CheckResult(Model):
    seq: int = Field(default=0, description="status.sequence of the analysis run")
    metric: str
    query: str
    value: float | None = None
    stable_value: float | None = None
    requests: float | None = None
    errors: float | None = Field(
        default=None, description="sequential checks: canary errors so far in this step"
    )
    stable_errors: float | None = Field(
        default=None, description="sequential checks: stable errors so far in this step"
    )
    canary_share: float | None = Field(
        default=None, description="sequential checks: the canary's share of traffic (0..1)"
    )
    unit: str | None = Field(default=None, description="the metric template's unit")
    threshold: str
    verdict: Verdict
    reason: str
    time: datetime
    step: int


class HistoryEntry(Model):
    """One transition, kept in status so any replica can replay a rollout's event stream."""

    seq: int
    time: datetime
    source: Phase
    phase: Phase
    trigger: str
    reason: str
    weights: Weights | None = None


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime


class Weights(Model):
    stable: int
    canary: int


class RolloutStatus(Model):
    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    step_index: int = 0
    step_count: int | None = None
    weights: Weights | None = None
    step_started_at: datetime | None = None
    phase_started_at: datetime | None = None
    last_analysis_at: datetime | None = None
    passed_runs_in_step: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    consecutive_inconclusive: int = 0
    checks: list[CheckResult] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    reason: str = ""
    paused_by: Literal["operator", "analysis", "gate"] | None = None
    resume_phase: Phase | None = None
    rollback_reason: str | None = None
    outcome: Phase | None = Field(
        default=None, description="the terminal phase a rollback or promotion will end in"
    )
    conditions: list[Condition] = Field(default_factory=list)
    controller: str | None = Field(default=None, description="the replica that last wrote")
    claimed_at: datetime | None = Field(
        default=None, description="when the current leader claimed this rollout (fencing)"
    )
    sequence: int = Field(default=0, description="transition counter; events are numbered by it")


def parse_status(raw: dict[str, Any] | None) -> RolloutStatus:
    if not raw:
        return RolloutStatus()
    return RolloutStatus.model_validate(raw)
