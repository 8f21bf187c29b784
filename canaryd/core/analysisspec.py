"""What a Rollout checks: thresholds, sequential tests and checks, and the analysis reference
that picks a profile from canaryd's settings and tightens it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from canaryd.core.base import Model
from canaryd.core.durations import Duration
from canaryd.core.names import Label


class Threshold(Model):
    """Thresholds of one check; in a Rollout each may only tighten the profile's."""

    min: float | None = Field(default=None, description="the lowest passing value")
    max: float | None = Field(default=None, description="the highest passing value")
    max_ratio_to_stable: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="the canary's value may be at most this many times stable's "
        "(measured in the same query)"
    )


class Sequential(Model):
    """Anytime-valid test (canaryd.core.sequential): does the canary take more of the bad
    events than its share of traffic explains? Bad events are errors (a template counting
    errors per workload) or slow requests (a latency-histogram template with labels.bucket).
    Evidence accumulates over the whole rollout; false rollbacks stay below alpha however
    often it is checked, and a failure is decisive at once."""

    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    ratio: Annotated[float, Field(gt=1, le=100)] = Field(
        default=2.0,
        description="steps that may wait (maxPause) wait until a canary this many times worse "
        "than stable is ruled out",
    )
    quantiles: Annotated[list[Annotated[float, Field(gt=0, lt=1)]],
                         Field(min_length=1, max_length=5)] = Field(
        default_factory=lambda: [0.5, 0.9, 0.99],
        description="latency histograms: judge the requests slower than these quantiles of "
        "both versions' pooled latency",
    )


class Check(Threshold):
    metric: Label
    params: dict[Label, str] = Field(default_factory=dict)
    sequential: Sequential | None = None
    dry_run: bool = Field(
        default=False, description="evaluate, record and export it, but never let it decide"
    )

    @model_validator(mode="after")
    def _has_threshold(self) -> Check:
        if (self.min is None and self.max is None and self.max_ratio_to_stable is None
                and self.sequential is None):
            raise ValueError("a check needs min, max, maxRatioToStable or sequential")
        return self

    @property
    def comparison_only(self) -> bool:
        """Judged only against stable: nothing to say when stable gets no traffic."""
        return self.sequential is not None or (self.min is None and self.max is None)


class AnalysisRef(Model):
    """What is checked, and how often: a profile from canaryd's config (its checks,
    thresholds and limits), optionally tightened for this rollout."""

    profile: Label = Field(
        default="default", description="the profile's name in canaryd's config (default "
        "'default'; with a Linkerd router, 'linkerd' when the config has one)"
    )
    thresholds: dict[Label, Threshold] = Field(
        default_factory=dict,
        max_length=64,
        description="per-check overrides keyed by metric template name; may only tighten "
        "the profile's",
    )
    interval: Duration | None = Field(
        default=None, description="how often each check runs, and its query window (e.g. 1m); "
        "default: the profile's; must lie within its minInterval..maxInterval"
    )
    checks: list[Check] = Field(
        default_factory=list,
        max_length=32,
        description="extra checks to try on this rollout: dry-run only (recorded, streamed "
        "and exported, never deciding anything); deciding checks come from the profile",
    )

    @model_validator(mode="after")
    def _only_dry_run(self) -> AnalysisRef:
        for i, check in enumerate(self.checks):
            if not check.dry_run:
                raise ValueError(f"checks[{i}] ({check.metric}): a rollout may only add "
                                 "dry-run checks (dryRun: true); deciding checks come from "
                                 "the profile")
        return self
