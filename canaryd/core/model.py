"""The Rollout resource: spec (the request) and status (the whole progress).

These pydantic models are the single source of truth for validation: the HTTP API, the
controller and `canaryd config check` all go through them, and the CRD schema mirrors them.
"""

from __future__ import annotations

import enum
import itertools
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, model_validator

from canaryd.core.analysisspec import AnalysisRef
from canaryd.core.base import Model as Model
from canaryd.core.durations import Duration, format_duration
from canaryd.core.hookspec import HookRun, Hooks
from canaryd.core.names import Label
from canaryd.core.routerspec import Router

GROUP = "canaryd.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Rollout"
PLURAL = "rollouts"
ACTION_ANNOTATION = "canaryd.io/action"
MAX_STEPS = 100


# ----------------------------------------------------------------------------- spec


class Workloads(Model):
    """The two Deployments, in the rollout's namespace."""

    stable: Label = Field(description="the Deployment serving the current version (blue)")
    canary: Label = Field(
        description="the Deployment serving the new version (green); traffic moves only once "
        "it is available"
    )
    min_available: Annotated[int, Field(ge=1, le=100000)] = Field(
        default=1, description="available canary replicas needed before traffic moves"
    )
    ready_timeout: Duration = Field(
        default=300.0, description="how long to wait for the canary to be available (e.g. 2m); "
        "then the rollout fails without touching traffic"
    )
    container: Label | None = Field(
        default=None, description="the canary's container spec.version is the image of "
        "(when spec.version is an image); default: the only one"
    )
    replicas: Annotated[int, Field(ge=1, le=10000)] | None = Field(
        default=None, description="canary replicas during the rollout; default: the stable's "
        "current count, at most maxReplicas (an HPA on the canary decides instead)"
    )
    max_replicas: Annotated[int, Field(ge=1, le=10000)] = Field(
        default=10, description="the most replicas the canary gets by default"
    )
    keep_on_rollback: bool = Field(
        default=False, description="after a rollback keep the canary's pods (at zero traffic) "
        "for inspection instead of scaling it to zero"
    )


class Step(Model):
    """One canary step: its weight is held at least `pause` and until analysis passes."""

    weight: Annotated[int, Field(ge=0, le=100)] = Field(
        description="percentage of live traffic sent to the canary in this step"
    )
    pause: Duration = Field(default=0.0, description="minimum time in this step (e.g. 1m)")
    gate: Literal["manual"] | None = Field(
        default=None, description="'manual': wait for a resume/promote action before advancing"
    )
    analysis: bool = Field(
        default=True, description="run analysis in this step (false: advance after the pause)"
    )
    max_pause: Duration | None = Field(
        default=None,
        description="wait up to this long in the step until the sequential checks have enough "
        "evidence (they rule out a canary their `ratio` times worse); default: no waiting",
    )

    @model_validator(mode="after")
    def _pauses(self) -> Step:
        if self.max_pause is not None and self.max_pause < self.pause:
            raise ValueError("maxPause must not be shorter than pause")
        return self


class Plan(Model):
    """Canary steps: explicit `steps`, or `stepWeight` increments up to `maxWeight`. After the
    last step the canary is promoted to 100%."""

    steps: Annotated[list[Step], Field(max_length=MAX_STEPS)] | None = Field(
        default=None, description="the steps in order; weights must not decrease"
    )
    step_weight: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description="generate steps: stepWeight, 2 x stepWeight, ... maxWeight"
    )
    max_weight: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description="the last generated step's weight (default 100)"
    )
    step_pause: Duration = Field(default=0.0, description="the pause of every generated step")
    step_max_pause: Duration | None = Field(
        default=None, description="maxPause of every generated step"
    )
    interval: Duration | None = Field(
        default=None, description="deprecated: set spec.analysis.interval (refused when both "
        "are set and differ)"
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
        if self.step_max_pause is not None:
            if self.step_weight is None:
                raise ValueError("stepMaxPause goes with stepWeight (steps set maxPause each)")
            if self.step_max_pause < self.step_pause:
                raise ValueError("stepMaxPause must not be shorter than stepPause")
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
    scale_down_delay: Duration = Field(
        default=30.0, description="with scaleDown: wait this long after the switch first"
    )
    interval: Duration | None = Field(
        default=None, description="deprecated: set spec.analysis.interval (refused when both "
        "are set and differ)"
    )


class RolloutSpec(Model):
    """The request: take `version` of `target` to all of its traffic, step by step, checked
    against Prometheus at every step, and back to stable when it misbehaves."""

    target: Label = Field(description="logical service name; one active rollout per target")
    # No control characters (C0, DEL, C1): the version reaches logs, events and terminals.
    version: Annotated[
        str, Field(min_length=1, max_length=253, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
    ] = Field(description="the version being rolled out (e.g. the image), for status and events")
    strategy: Literal["canary", "blueGreen"] = Field(
        default="canary", description="canary: traffic shifted in steps (plan); blueGreen: a "
        "Service's selector switched at once (blueGreen, router.service)"
    )
    router: Router
    workloads: Workloads
    plan: Plan | None = Field(
        default=None, description="strategy canary: the steps; explicit steps, or stepWeight "
        "increments up to maxWeight (default 100); after the last the canary gets 100%"
    )
    blue_green: BlueGreen | None = Field(
        default=None, description="strategy blueGreen: analysis before and after the switch, "
        "approval, scale-down of blue"
    )
    analysis: AnalysisRef = AnalysisRef()
    supersede: bool = Field(
        default=False, description="roll back a running rollout of the same target first"
    )
    hooks: Hooks = Field(
        default_factory=list, description="calls at stages of the rollout (docs/hooks.md); "
        "they replace the profile's hooks of the same name")
    template_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{12}$")] | None = Field(
        default=None, description="set by a RolloutPolicy (docs/gitops.md): the canary's pod "
        "template this rollout was started for (canaryd's hash, selector labels left out); "
        "canaryd then leaves the canary's image alone, and the rollout fails untouched if "
        "the canary runs another template when it starts")

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

    def _deprecated_interval(self) -> tuple[str, float] | None:
        if self.plan is not None and self.plan.interval is not None:
            return "spec.plan.interval", self.plan.interval
        if self.blue_green is not None and self.blue_green.interval is not None:
            return "spec.blueGreen.interval", self.blue_green.interval
        return None

    @model_validator(mode="after")
    def _one_interval(self) -> RolloutSpec:
        old, new = self._deprecated_interval(), self.analysis.interval
        if old is not None and new is not None and old[1] != new:
            raise ValueError(
                f"{old[0]} ({format_duration(old[1])}, deprecated) and spec.analysis.interval "
                f"({format_duration(new)}) disagree: set only spec.analysis.interval"
            )
        return self

    @property
    def interval_field(self) -> tuple[str, float] | None:
        """The analysis interval the rollout sets, and where: spec.analysis.interval, or the
        deprecated alias it still accepts."""
        if self.analysis.interval is not None:
            return "spec.analysis.interval", self.analysis.interval
        return self._deprecated_interval()

    @property
    def interval(self) -> float | None:
        found = self.interval_field
        return found[1] if found is not None else None

    def deprecations(self) -> list[str]:
        """Deprecated fields in use, each with what to write instead."""
        old = self._deprecated_interval()
        if old is None:
            return []
        return [f"{old[0]} is deprecated: set spec.analysis.interval instead"]


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
    # A comparison with nothing to compare against (no stable traffic at 100%): not judged,
    # and not held against the step either.
    NOT_APPLICABLE = "NotApplicable"


class Evidence(Model):
    """What a sequential check has seen over the whole rollout (canaryd.core.sequential)."""

    key: str = Field(description="the check's metric (latency checks: metric@quantile)")
    canary: Annotated[float, Field(ge=0)] = Field(description="bad events on the canary")
    stable: Annotated[float, Field(ge=0)] = Field(description="bad events on stable")
    expected: Annotated[float, Field(ge=0)] = Field(
        description="canary events its measured traffic shares explain")
    log_lr: list[float] = Field(
        description="the test's state: ln likelihood ratio at canary/stable rate ratios "
        "2^(k/3), k = -15..18")


class CheckResult(Model):
    seq: int = Field(default=0, description="status.sequence of the analysis run")
    metric: str
    query: str
    value: float | None = None
    stable_value: float | None = None
    requests: float | None = None
    errors: float | None = Field(
        default=None,
        description="sequential checks: the canary's bad events (errors, or slow requests) "
        "over the whole rollout so far")
    stable_errors: float | None = Field(
        default=None, description="sequential checks: stable's bad events so far")
    expected_errors: float | None = Field(
        default=None,
        description="sequential checks: the canary's bad events its traffic shares explain")
    evidence: list[Evidence] | None = Field(
        default=None, description="sequential checks: the evidence after this run"
    )
    decisive: bool | None = Field(
        default=None, description="a failure ends the analysis at once (anytime-valid test)"
    )
    settled: bool | None = Field(
        default=None, description="sequential checks: a canary `ratio` times worse is ruled out"
    )
    dry_run: bool | None = Field(
        default=None, description="recorded, never decides anything"
    )
    close: bool | None = Field(
        default=None, description="inconclusive because the value is within sampling error of "
        "its threshold: the step holds, and it does not count toward consecutiveInconclusive"
    )
    canary_share: float | None = Field(
        default=None,
        description="sequential checks: the canary's measured share of requests this interval")
    unit: str | None = Field(default=None, description="the metric template's unit")
    threshold: str
    verdict: Verdict
    reason: str
    time: datetime
    step: int = Field(
        validation_alias=AliasChoices("stepIndex", "step"), serialization_alias="stepIndex",
        description="0-based index of the step the check ran in (older status: `step`)",
    )


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


# Bounds on what canaryd reads back from status. Any client with status access can write it;
# canaryd itself stays far inside these (history: 100 entries, checks: checksKept <= 200,
# reasons clipped to REASON_WRITTEN characters), so a status outside them was not written by
# canaryd and is read as unknown (canaryd.core.reading) instead of being acted on.
HISTORY_MAX = 1000
CHECKS_MAX = 1000
REASON_MAX = 32768
REASON_WRITTEN = 4096
SEQUENCE_MAX = 2**53
Count = Annotated[int, Field(ge=0, le=SEQUENCE_MAX)]
# Fields older versions wrote into status and no longer use: ignored when read, removed on
# the next write.
RETIRED_STATUS_FIELDS = ("resumePhase",)
Reason = Annotated[str, Field(max_length=REASON_MAX)]


class Revision(Model):
    """What a Deployment runs: images per container, and its pod template's hash without the
    labels that tell stable from canary (the same hash on both: the same version)."""

    images: dict[str, Annotated[str, Field(max_length=512)]] = Field(
        default_factory=dict, max_length=64)
    template_hash: str | None = Field(default=None, max_length=64)


ReleaseStage = Literal["CanaryStart", "Steps", "StableUpdate", "TrafficToStable",
                       "CanaryScaleDown", "Done"]


class ReleaseStatus(Model):
    """A release's own progress: from which version to which, and where it stands."""

    from_: Revision | None = Field(default=None, alias="from",
                                   description="what stable ran when the rollout started")
    to: Revision | None = Field(default=None, description="what the canary runs, analysed")
    stage: ReleaseStage = "CanaryStart"
    canary_replicas: int | None = Field(
        default=None, description="replicas given to the canary (none: its HPA decides)")
    container: str | None = Field(default=None, max_length=63,
                                  description="the container set to spec.version")
    detail: Reason = Field(default="", description="the stage's progress, as last seen")
    colour: Literal["blue", "green"] | None = Field(
        default=None, description="blue-green: the colour this release goes to, the one idle "
        "when it started (blue: workloads and selector values are taken the other way round)")


class RolloutStatus(Model):
    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    step_index: Count = Field(
        default=0, description="0-based index of the current step (spec.plan.steps[stepIndex])"
    )
    step_count: Count | None = Field(default=None, description="how many steps the plan has")
    step_progress: str | None = Field(
        default=None, max_length=64, description="the current step as people count it, "
        "1-based: '2/3' ('0/3' before the first step starts)"
    )
    weights: Weights | None = None
    step_started_at: datetime | None = None
    phase_started_at: datetime | None = None
    last_analysis_at: datetime | None = None
    passed_runs_in_step: Count = 0
    evidence: list[Evidence] = Field(
        default_factory=list, max_length=256,
        description="sequential checks' evidence over the whole rollout, one per test")
    settled: bool | None = Field(
        default=None, description="the last run's sequential checks all had enough evidence"
    )
    failures: Count = 0
    consecutive_failures: Count = 0
    consecutive_inconclusive: Count = 0
    checks: list[CheckResult] = Field(default_factory=list, max_length=CHECKS_MAX)
    history: list[HistoryEntry] = Field(default_factory=list, max_length=HISTORY_MAX)
    reason: Reason = ""
    paused_by: Literal["operator", "analysis", "gate"] | None = None
    rollback_reason: Reason | None = None
    outcome: Phase | None = Field(
        default=None, description="the terminal phase a rollback or promotion will end in"
    )
    conditions: list[Condition] = Field(default_factory=list, max_length=64)
    controller: str | None = Field(default=None, description="the replica that last wrote")
    claimed_at: datetime | None = Field(
        default=None, description="when the current leader claimed this rollout (fencing)"
    )
    sequence: Count = Field(default=0, description="transition counter; events are numbered by it")
    hooks: list[HookRun] = Field(
        default_factory=list, max_length=256, description="every hook call of this rollout")
    notified: dict[str, int] = Field(
        default_factory=dict, max_length=64,
        description="per notification receiver: the last status.sequence it was sent")
    release: ReleaseStatus | None = Field(
        default=None, description="the canary's start, promotion onto stable and clean-up")


def parse_status(raw: dict[str, Any] | None) -> RolloutStatus:
    if not raw:
        return RolloutStatus()
    return RolloutStatus.model_validate(raw)
