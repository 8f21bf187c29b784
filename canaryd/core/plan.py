"""From a Rollout spec and the config to the concrete plan: weights per step, and the analysis
(interval, checks with thresholds, limits) after per-rollout overrides."""

from __future__ import annotations

from dataclasses import dataclass

from canaryd.core.analysisspec import Check
from canaryd.core.model import BlueGreen, RolloutSpec, Step
from canaryd.core.settings import Limits, Settings, check_errors


@dataclass(frozen=True)
class EffectiveAnalysis:
    profile: str
    interval: float
    min_requests: int
    checks: tuple[Check, ...]
    limits: Limits
    min_passed_runs: int
    allow_unanalysed_promotion: bool = False
    # prometheus.queryOffset: a run is due `interval + query_offset` after its anchor and its
    # queries are evaluated `query_offset` before the round, on settled data.
    query_offset: float = 0.0


class PlanError(ValueError):
    """The rollout asks for something the config does not allow: every such problem, each a
    message starting with the field's path (`spec.analysis.interval: ...`)."""

    def __init__(self, *problems: str) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def steps(spec: RolloutSpec) -> tuple[Step, ...]:
    if spec.strategy == "blueGreen":
        # Step 1: green behind the preview service, active still on blue (weight 0).
        # Step 2: active switched to green (weight 100), analysed on live traffic.
        bg = spec.blue_green or BlueGreen()
        pre = Step(weight=0, gate="manual" if bg.approval else None,
                   analysis=bg.pre_promotion_analysis and spec.router.service is not None
                   and spec.router.service.preview_service is not None)
        return (pre, Step(weight=100, pause=bg.post_promotion))
    plan = spec.plan
    assert plan is not None  # guaranteed by RolloutSpec's validator
    if plan.steps is not None:
        return tuple(plan.steps)
    assert plan.step_weight is not None  # guaranteed by Plan's validator
    top = plan.max_weight or 100
    weights = list(range(plan.step_weight, top + 1, plan.step_weight))
    if not weights or weights[-1] != top:
        weights.append(top)
    return tuple(Step(weight=w, pause=plan.step_pause, max_pause=plan.step_max_pause)
                 for w in weights)


def resolve_analysis(settings: Settings, spec: RolloutSpec) -> EffectiveAnalysis:
    ref = spec.analysis
    name = ref.profile
    # Left unset, the profile may be implied by the router (docs/routers.md): Linkerd's own
    # HTTPRoute and SMI TrafficSplit (today deployed mostly with Linkerd) come with Linkerd's
    # proxy metrics, which the default profile's Istio checks would never find.
    router = spec.router
    linkerd = router.smi is not None or (
        router.gateway_api is not None and router.gateway_api.api_group == "policy.linkerd.io"
    )
    if "profile" not in ref.model_fields_set and linkerd and "linkerd" in settings.profiles:
        name = "linkerd"
    profile = settings.profiles.get(name)
    if profile is None:
        known = ", ".join(sorted(settings.profiles)) or "none"
        raise PlanError(f"spec.analysis.profile: unknown profile {name!r} (known: {known})")
    problems: list[str] = []
    where, interval = spec.interval_field or ("spec.analysis.interval", profile.interval)
    if not profile.min_interval <= interval <= profile.max_interval:
        problems.append(
            f"{where}: {interval:g}s is outside the profile's bounds "
            f"{profile.min_interval:g}s..{profile.max_interval:g}s"
        )
    by_metric = {c.metric: c for c in profile.checks}
    for metric in ref.thresholds:
        if metric not in by_metric:
            problems.append(
                f"spec.analysis.thresholds.{metric}: the profile {name!r} has no such check"
            )
    checks: list[Check] = []
    for check in profile.checks:
        override = ref.thresholds.get(check.metric)
        if override is None:
            checks.append(check)
            continue
        where = f"spec.analysis.thresholds.{check.metric}"
        updates: dict[str, float] = {}
        if override.min is not None:
            if check.min is not None and override.min < check.min:
                problems.append(f"{where}.min: may only tighten the profile's min {check.min:g}")
            updates["min"] = override.min
        if override.max is not None:
            if check.max is not None and override.max > check.max:
                problems.append(f"{where}.max: may only tighten the profile's max {check.max:g}")
            updates["max"] = override.max
        if override.max_ratio_to_stable is not None:
            limit = check.max_ratio_to_stable
            if limit is not None and override.max_ratio_to_stable > limit:
                problems.append(f"{where}.maxRatioToStable: may only tighten {limit:g}")
            updates["max_ratio_to_stable"] = override.max_ratio_to_stable
        checks.append(check.model_copy(update=updates))
    for i, extra in enumerate(ref.checks):  # dry-run only (the model makes sure)
        found = check_errors(settings, extra, f"spec.analysis.checks[{i}]")
        problems.extend(f"{path}: {message}" for path, message in found)
        checks.append(extra)
    if problems:
        raise PlanError(*problems)
    return EffectiveAnalysis(
        profile=name,
        interval=interval,
        min_requests=profile.min_requests,
        checks=tuple(checks),
        limits=profile.limits,
        min_passed_runs=profile.min_passed_runs,
        allow_unanalysed_promotion=profile.allow_unanalysed_promotion,
        query_offset=settings.prometheus.query_offset,
    )


def unanalysed_promotion(spec: RolloutSpec) -> str | None:
    """Why this plan would put all traffic on the new version without analysis, if it
    would: every step has `analysis: false`, or the step that reaches 100% (the first at
    weight 100, else the last, after which the rollout is promoted) does. None otherwise."""
    if spec.plan is None or spec.plan.steps is None:
        return None  # stepWeight plans and blue-green always analyse the step at 100%
    plan_steps = spec.plan.steps
    if not any(step.analysis for step in plan_steps):
        return "spec.plan.steps: no step runs analysis"
    index = next((i for i, step in enumerate(plan_steps) if step.weight == 100),
                 len(plan_steps) - 1)
    if plan_steps[index].analysis:
        return None
    which = "reaches 100%" if plan_steps[index].weight == 100 else "leads to 100% (the last)"
    return f"spec.plan.steps[{index}].analysis: false on the step that {which}"
