"""Response and event shapes, as pydantic models: the source of the OpenAPI components.

Requests are `canaryd.core.manifest.RolloutManifest` itself; a served Rollout reuses the spec
and status models, so the API, the CRD and the controller cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from canaryd.core.analysisspec import Sequential
from canaryd.core.model import Phase, RolloutSpec, RolloutStatus, Verdict, Weights
from canaryd.core.settings import Limits


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class Rollout(_Wire):
    """A Rollout as stored in Kubernetes (metadata.managedFields left out)."""

    api_version: Literal["canaryd.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Rollout"]
    metadata: dict[str, Any] = Field(description="Kubernetes object metadata")
    spec: RolloutSpec
    status: RolloutStatus | None = None


class ListMeta(_Wire):
    continue_: str | None = Field(
        alias="continue", description="pass as ?continue= for the next page; null on the last"
    )
    count: int


class RolloutList(_Wire):
    items: list[Rollout]
    metadata: ListMeta


class FieldProblem(_Wire):
    detail: str
    pointer: str | None = Field(default=None, description="JSON pointer into the request body")
    parameter: str | None = Field(default=None, description="query parameter or header")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = Field(default=None, max_length=50)
    errors_omitted: int | None = Field(
        default=None, alias="errorsOmitted",
        description="how many more field errors there were than the 50 listed")
    conflicts_with: str | None = Field(default=None, alias="conflictsWith",
                                       description="namespace/name of the conflicting rollout")


class WhoAmI(_Wire):
    name: str
    role: Literal["read", "submit", "operate", "admin"]
    namespaces: Literal["*"] | list[str] = Field(
        description="the namespaces the token acts in; '*': all")


class Health(_Wire):
    status: Literal["ok"]


class Readiness(_Wire):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


# ---------------------------------------------------------------------------- events


class StateEvent(_Wire):
    """`event: state` (no id), first on every connection: where the rollout stands."""

    rollout: str
    phase: Phase
    step_index: int = Field(alias="stepIndex", description="0-based")
    step_number: int = Field(alias="stepNumber", description="1-based, as messages count")
    step_count: int | None = Field(alias="stepCount")
    weights: Weights | None
    reason: str
    sequence: int


class TransitionEvent(_Wire):
    """`event: transition`, id `seq`: a phase change, with the weights it set."""

    seq: int
    time: datetime
    source: Phase
    phase: Phase
    trigger: str
    reason: str
    weights: Weights | None


class CheckEvent(_Wire):
    """`event: check`, id `seq.index`: one check of an analysis run."""

    seq: int
    index: int
    time: datetime
    step_index: int = Field(alias="stepIndex", description="0-based")
    step_number: int = Field(alias="stepNumber", description="1-based, as messages count")
    metric: str
    value: float | None = Field(description="sequential checks: the e-value")
    unit: str | None = Field(description="the metric template's unit")
    stable_value: float | None = Field(alias="stableValue")
    requests: float | None
    errors: float | None = Field(description="sequential checks: canary errors so far")
    stable_errors: float | None = Field(alias="stableErrors",
                                        description="sequential checks: stable errors so far")
    canary_share: float | None = Field(alias="canaryShare",
                                       description="sequential checks: the canary's traffic share")
    threshold: str
    verdict: Verdict
    reason: str
    query: str


class VerdictEvent(_Wire):
    """`event: verdict`, id `seq.final`: the last event of a stream."""

    phase: Phase
    succeeded: bool
    reason: str
    weights: Weights | None
    failures: int


class GapEvent(_Wire):
    """`event: gap` (no id): events the rollout status no longer keeps were skipped."""

    from_: int = Field(alias="from")
    to: int
    missing: int
    detail: str


class ListRow(_Wire):
    """`event: added` / `modified` of GET /api/v1/events: a rollout as the list shows it."""

    rollout: str = Field(description="namespace/name")
    phase: str = Field(description="a phase, or Unknown for a status canaryd cannot read")
    metadata: dict[str, Any] = Field(
        description="namespace, name, creationTimestamp, resourceVersion, uid")
    spec: dict[str, Any] = Field(description="target, version")
    status: dict[str, Any] = Field(description="as written: phase, weights, stepIndex, "
                                               "stepCount, stepProgress, reason, phaseStartedAt")


class ListDeleted(_Wire):
    """`event: deleted` of GET /api/v1/events: the row is gone from the view."""

    rollout: str
    namespace: str
    name: str
    why: Literal["deleted", "left the view"]


class ListSynced(_Wire):
    """`event: synced` of GET /api/v1/events: the client's rows are the current view."""

    count: int
    resumed: bool = Field(description="true: only the changes since Last-Event-ID were sent")


# ---------------------------------------------------------------------------- profiles


class CheckSpec(_Wire):
    """One check of a profile (or of a rollout's analysis) with its thresholds."""

    metric: str
    unit: str = Field(description="the metric template's unit")
    description: str = Field(description="the metric template's description")
    min: float | None = Field(default=None, description="the lowest passing value")
    max: float | None = Field(default=None, description="the highest passing value")
    max_ratio_to_stable: float | None = Field(default=None, alias="maxRatioToStable")
    sequential: Sequential | None = None
    dry_run: bool = Field(default=False, alias="dryRun")
    params: dict[str, str] = Field(default_factory=dict)


class HookRef(_Wire):
    """A profile's hook: its name and stage (its webhook is not shown)."""

    name: str
    stage: str


class ProfileView(_Wire):
    """An analysis profile of the live configuration (read-only)."""

    name: str
    interval: str
    min_interval: str = Field(alias="minInterval")
    max_interval: str = Field(alias="maxInterval")
    min_requests: int = Field(alias="minRequests")
    min_passed_runs: int = Field(alias="minPassedRuns")
    allow_unanalysed_promotion: bool = Field(alias="allowUnanalysedPromotion")
    limits: Limits
    checks: list[CheckSpec]
    hooks: list[HookRef] = Field(default_factory=list)


class ProfileList(_Wire):
    items: list[ProfileView]


class AnalysisView(_Wire):
    """What a rollout is judged by: its profile after its own overrides and dry-run checks."""

    rollout: str
    profile: str
    interval: str
    min_requests: int = Field(alias="minRequests")
    limits: Limits
    checks: list[CheckSpec]


COMPONENTS: tuple[type[BaseModel], ...] = (
    Rollout, RolloutList, Problem, WhoAmI, Health, Readiness,
    StateEvent, TransitionEvent, CheckEvent, VerdictEvent, GapEvent,
    ListRow, ListDeleted, ListSynced,
    ProfileList, AnalysisView,
)
