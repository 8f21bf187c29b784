"""Read-only views of the live configuration's analysis profiles.

    GET /api/v1/profiles                          every profile: checks, thresholds, limits
    GET /api/v1/rollouts/{ns}/{name}/analysis     what one rollout is judged by: its profile
                                                  after the rollout's own overrides and
                                                  dry-run checks (the controller's own
                                                  resolution, canaryd.core.plan)

Both need role read; the second is scoped to the token's namespaces like every rollout
path. Query templates are not shown (the metric name, unit and description are), nor hooks'
webhooks (a hook's name and stage are): they describe the cluster, not the rollout, and a
read token needs no more.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from canaryd.api import schemas
from canaryd.api.auth import Role
from canaryd.api.context import STATE, requires
from canaryd.api.problems import Problem
from canaryd.api.rollouts import lookup, path_names
from canaryd.core import plan, reading
from canaryd.core.analysisspec import Check
from canaryd.core.durations import format_duration
from canaryd.core.model import RolloutSpec
from canaryd.core.settings import Profile, Settings


def check_view(settings: Settings, check: Check) -> schemas.CheckSpec:
    template = settings.metrics.get(check.metric)
    return schemas.CheckSpec(
        metric=check.metric, unit=template.unit if template else "",
        description=template.description if template else "",
        min=check.min, max=check.max, max_ratio_to_stable=check.max_ratio_to_stable,
        sequential=check.sequential, dry_run=check.dry_run, params=dict(check.params),
    )


def profile_view(settings: Settings, name: str, profile: Profile) -> schemas.ProfileView:
    return schemas.ProfileView(
        name=name, interval=format_duration(profile.interval),
        min_interval=format_duration(profile.min_interval),
        max_interval=format_duration(profile.max_interval),
        min_requests=profile.min_requests, min_passed_runs=profile.min_passed_runs,
        allow_unanalysed_promotion=profile.allow_unanalysed_promotion,
        limits=profile.limits, checks=[check_view(settings, c) for c in profile.checks],
        hooks=[schemas.HookRef(name=h.name, stage=h.stage) for h in profile.hooks],
    )


def _json(model: schemas.ProfileList | schemas.AnalysisView) -> web.Response:
    return web.Response(text=model.model_dump_json(by_alias=True),
                        content_type="application/json")


@requires(Role.READ)
async def list_profiles(request: web.Request) -> web.Response:
    settings = request.app[STATE].deps.settings()
    items = [profile_view(settings, n, p) for n, p in sorted(settings.profiles.items())]
    return _json(schemas.ProfileList(items=items))


def resolve(settings: Settings, obj: dict[str, Any]) -> plan.EffectiveAnalysis:
    try:
        spec = RolloutSpec.model_validate(obj.get("spec") or {})
        return plan.resolve_analysis(settings, spec)
    except ValidationError as exc:
        problem = "invalid rollout: " + reading.errors_text(exc, "spec")
    except plan.PlanError as exc:
        problem = f"invalid rollout: {exc}"
    raise Problem(409, "Analysis not resolvable", problem[:2000])


@requires(Role.READ)
async def analysis(request: web.Request) -> web.Response:
    ns, name = path_names(request)
    obj = await lookup(request, ns, name)
    settings = request.app[STATE].deps.settings()
    effective = resolve(settings, obj)
    return _json(schemas.AnalysisView(
        rollout=f"{ns}/{name}", profile=effective.profile,
        interval=format_duration(effective.interval), min_requests=effective.min_requests,
        limits=effective.limits, checks=[check_view(settings, c) for c in effective.checks],
    ))
