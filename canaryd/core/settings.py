"""canaryd's settings: Prometheus, controller settings, metric templates, analysis profiles.

Pure: `parse_settings` validates a whole document (a mapping, wherever it came from) and
reports every error with its path, so that `canaryd config check FILE` can list them all at
once; reading the file and the environment is `canaryd.config.load_settings`. Secrets never
live here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from canaryd.core import promql
from canaryd.core.analysisspec import Check
from canaryd.core.base import Model
from canaryd.core.durations import Duration
from canaryd.core.hooksettings import HookSettings, Notifications
from canaryd.core.hookspec import Hooks
from canaryd.core.names import Label
from canaryd.core.templates import builtin_metrics

PROMQL_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
BUILTIN_PLACEHOLDERS = frozenset({"target", "namespace", "workload", "interval"})


class ParamSpec(Model):
    pattern: str = Field(
        default=r"^[a-zA-Z0-9_./:-]{1,128}$", description="values must fully match this regex"
    )
    default: str | None = None

    @model_validator(mode="after")
    def _compiles(self) -> ParamSpec:
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from exc
        if self.default is not None and not compiled.fullmatch(self.default):
            raise ValueError("default does not match pattern")
        return self


class MetricTemplate(Model):
    query: Annotated[str, Field(min_length=1)]
    requests: str | None = Field(
        default=None, description="request-count query; below minRequests a check is inconclusive"
    )
    labels: dict[str, str] | None = Field(
        default=None, description="result labels naming the workload: makes the query groupable"
    )
    params: dict[Label, ParamSpec] = Field(default_factory=dict)
    unit: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> MetricTemplate:
        allowed = BUILTIN_PLACEHOLDERS | set(self.params)
        for field, text in (("query", self.query), ("requests", self.requests or "")):
            unknown = promql.placeholders(text) - allowed
            if unknown:
                raise ValueError(f"{field} uses unknown placeholders: {sorted(unknown)}")
        uses_target = "target" in promql.placeholders(self.query)
        keys = set((self.labels or {}).keys())
        if uses_target and keys - {"bucket"} != {"namespace", "workload"}:
            raise ValueError("a query using {{ target }} must set labels.namespace and .workload"
                             " (and optionally .bucket, for histogram buckets)")
        if self.labels and not uses_target:
            raise ValueError("labels are only meaningful with a query that uses {{ target }}")
        for label in (self.labels or {}).values():
            if not PROMQL_LABEL.match(label):
                raise ValueError(f"{label!r} is not a Prometheus label name")
        return self

    @property
    def groupable(self) -> bool:
        return self.labels is not None

    @property
    def histogram(self) -> bool:
        """The query answers with cumulative histogram buckets (labels.bucket names `le`)."""
        return self.labels is not None and "bucket" in self.labels


class Limits(Model):
    failures: Annotated[int, Field(ge=1)] = 3
    consecutive_failures: Annotated[int, Field(ge=1)] = 2
    consecutive_inconclusive: Annotated[int, Field(ge=1)] = 3
    on_inconclusive: Literal["pause", "rollback"] = "pause"


class Profile(Model):
    interval: Duration = 30.0
    min_interval: Duration = 1.0
    max_interval: Duration = 3600.0
    min_requests: Annotated[int, Field(ge=0)] = 20
    checks: Annotated[list[Check], Field(min_length=1)]
    limits: Limits = Limits()
    min_passed_runs: Annotated[int, Field(ge=1)] = Field(
        default=1, description="passing analysis runs needed before a step may advance"
    )
    hooks: Hooks = Field(
        default_factory=list, description="hooks of every rollout using this profile "
        "(a rollout's hook of the same name replaces one)")
    allow_unanalysed_promotion: bool = Field(
        default=False,
        description="let role submit send plans whose step reaching 100% (or every step) "
                    "skips analysis; otherwise such a plan needs role operate",
    )

    @model_validator(mode="after")
    def _interval_in_bounds(self) -> Profile:
        if not self.min_interval <= self.interval <= self.max_interval:
            raise ValueError("interval must lie between minInterval and maxInterval")
        return self


class PrometheusSettings(Model):
    url: str = "http://127.0.0.1:9090"
    timeout: Duration = 5.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    query_offset: Annotated[Duration, Field(ge=0, le=600)] = Field(
        default=0.0, description="how far behind the present analysis queries are evaluated "
        "(seconds, or a duration): a sample is stamped with its scrape's start and becomes "
        "visible only once that scrape ends, so a query at `time=now` can miss the last "
        "scrape. At least the longest scrape (the scrape timeout at most); as Prometheus' "
        "own `query_offset` for rules. The run's window ends at the evaluation time, and "
        "backtests replay on the same times.")


class ControllerSettings(Model):
    tick: Duration = 1.0
    checks_kept: Annotated[int, Field(ge=1, le=200)] = 20
    identity: str | None = None
    keep_finished: Annotated[int, Field(ge=0, le=100000)] = Field(
        default=50, description="finished Rollouts kept per target (namespace and "
        "spec.target); the leader deletes older ones, oldest first; 0 keeps every one")


class Settings(Model):
    prometheus: PrometheusSettings = PrometheusSettings()
    controller: ControllerSettings = ControllerSettings()
    metrics: dict[Label, MetricTemplate] = Field(default_factory=dict)
    profiles: dict[Label, Profile] = Field(default_factory=dict)
    hooks: HookSettings = HookSettings()
    notifications: Notifications = Notifications()

    def metric(self, name: str) -> MetricTemplate:
        return self.metrics[name]


class ConfigError(ValueError):
    """Every problem in a configuration, each with the path to it."""

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  {path}: {message}" for path, message in errors)
        super().__init__(f"{source}: {len(errors)} error(s)\n{lines}")


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def check_errors(settings: Settings, check: Check, where: str) -> list[tuple[str, str]]:
    """What is wrong with `check` against the settings' templates, each with its path."""
    errors: list[tuple[str, str]] = []
    template = settings.metrics.get(check.metric)
    if template is None:
        return [(f"{where}.metric", f"unknown metric template {check.metric!r}")]
    for key, value in check.params.items():
        spec = template.params.get(key)
        if spec is None:
            errors.append((f"{where}.params.{key}", "the template has no such parameter"))
        elif not re.fullmatch(spec.pattern, value):
            errors.append((f"{where}.params.{key}", f"does not match {spec.pattern!r}"))
        elif any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            errors.append((f"{where}.params.{key}", "not UTF-8 text (a lone surrogate)"))
    for key, spec in template.params.items():
        if spec.default is None and key not in check.params:
            errors.append((f"{where}.params.{key}", "required by the template"))
    if check.max_ratio_to_stable is not None and not template.groupable:
        errors.append(
            (f"{where}.maxRatioToStable", "needs a template with {{ target }} and labels")
        )
    if check.sequential is not None and not template.groupable:
        errors.append((f"{where}.sequential", "needs a template with {{ target }} and labels"))
    if template.histogram and (check.sequential is None or check.min is not None
                               or check.max is not None
                               or check.max_ratio_to_stable is not None):
        errors.append((f"{where}.metric", "a histogram-bucket template can only be "
                       "judged by a sequential check (no min, max or maxRatioToStable)"))
    return errors


def _cross_check(settings: Settings) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for pname, profile in settings.profiles.items():
        for i, check in enumerate(profile.checks):
            errors.extend(check_errors(settings, check, f"profiles.{pname}.checks[{i}]"))
    return errors


def parse_settings(data: Mapping[str, Any], *, source: str = "<config>") -> Settings:
    raw = dict(data)
    merged_metrics: dict[str, Any] = dict(builtin_metrics())
    merged_metrics.update(raw.get("metrics") or {})
    raw["metrics"] = merged_metrics
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            source, [(_path(tuple(e["loc"])), e["msg"]) for e in exc.errors()]
        ) from None
    errors = _cross_check(settings)
    if errors:
        raise ConfigError(source, errors)
    return settings
