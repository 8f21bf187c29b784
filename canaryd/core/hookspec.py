"""Hooks as written in a Rollout (or a profile's defaults) and as recorded in its status.

A hook is a named call at a stage of the rollout, an HTTP webhook or a Kubernetes Job made
from a template in the hook (`job:`, a batch/v1 JobTemplateSpec): `preRollout` (canary ready, before
any traffic moves), `step` (each step, before its analysis), `confirmPromotion` (a gate
before full traffic), `rollback` (a rollback starts) and `postRollout` (after the verdict).
Pure models; what the stages do is `canaryd.core.hooks`, the calls `canaryd.adapters.webhook`
and `canaryd.adapters.jobs`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from canaryd.core.base import Model
from canaryd.core.durations import Duration
from canaryd.core.names import Label, Subdomain

STAGES = ("preRollout", "step", "confirmPromotion", "rollback", "postRollout")
Stage = Literal["preRollout", "step", "confirmPromotion", "rollback", "postRollout"]
# Stages whose failure changes the rollout; the others are recorded and reported only.
GATING = frozenset({"preRollout", "step", "confirmPromotion"})
Outcome = Literal["Running", "Waiting", "Passed", "Failed", "Cancelled"]
URL_MAX = 2048
JOB_TIMEOUT = 600.0
# Never a hook target, whatever the config allows: link-local (cloud metadata services live
# there: 169.254.169.254, fd00:ec2::254) and the unspecified addresses.
ALWAYS_DENIED = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "0.0.0.0/32",
    "::/128",
))


def denied_always(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in ALWAYS_DENIED)


def check_hook_url(value: str) -> str:
    """An absolute http(s) URL without credentials, not aimed at a link-local address."""
    if len(value) > URL_MAX:
        raise ValueError(f"at most {URL_MAX} characters")
    if any(ord(c) < 0x21 or 0x7F <= ord(c) <= 0x9F for c in value):
        raise ValueError("no spaces or control characters (percent-encode them)")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, not {parts.scheme or 'relative'!r}")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("no credentials in the URL (user:password@): sign the call with a "
                         "secret (secretRef or secretFile) instead")
    if port == 0:
        raise ValueError("port 0 is not a port")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return value
    if denied_always(address):
        raise ValueError(f"{address} is a link-local or unspecified address (cloud metadata "
                         "services live there): never a hook target")
    return value


HookUrl = Annotated[str, AfterValidator(check_hook_url)]
SECRET_KEY = r"^[-._a-zA-Z0-9]{1,253}$"  # noqa: S105 (a pattern, not a password)
SECRET_FILE = re.compile(r"^[A-Za-z0-9][-._A-Za-z0-9]{0,252}$")


def check_secret_file(value: str) -> str:
    if not SECRET_FILE.match(value) or value in (".", ".."):
        raise ValueError("a file name in the configured hooks.secretsDir (letters, digits, "
                         "'-', '_' and '.'; no '/')")
    return value


class SecretKeyRef(Model):
    """A key of a Secret in the rollout's namespace."""

    name: Subdomain = Field(description="the Secret's name")
    key: Annotated[str, Field(pattern=SECRET_KEY)] = Field(description="the key in its data")


class Webhook(Model):
    """POST JSON to `url`; 2xx passes. Signed with HMAC-SHA256 when a secret is given."""

    url: HookUrl = Field(description="http(s) URL receiving the POST (no credentials in it)")
    secret_ref: SecretKeyRef | None = Field(
        default=None, description="sign with this Secret key (the rollout's namespace)")
    secret_file: Annotated[str, AfterValidator(check_secret_file)] | None = Field(
        default=None, description="sign with the contents of this file in the daemon's "
        "hooks.secretsDir")

    @model_validator(mode="after")
    def _one_secret(self) -> Webhook:
        if self.secret_ref is not None and self.secret_file is not None:
            raise ValueError("give secretRef or secretFile, not both")
        return self


class Open(Model):
    """A Kubernetes object part canaryd checks only some fields of: the rest goes to the API
    server as written (and is validated there when the Job is created)."""

    model_config = ConfigDict(extra="allow",
                              json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})


class ObjectMeta(Model):
    labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Container(Open):
    """A container of the Job's pod (`name` and `image` checked here; the rest as written)."""

    name: Label = Field(description="unique in the pod")
    image: Annotated[str, Field(min_length=1, max_length=1024)]


class PodSpec(Open):
    """The Job's pod spec: containers and restartPolicy checked, the rest as written."""

    restart_policy: Literal["Never", "OnFailure"] = Field(
        default="Never", description="Never (the default) or OnFailure, as Jobs require")
    containers: Annotated[list[Container], Field(min_length=1, max_length=16)]
    init_containers: Annotated[list[Container], Field(max_length=16)] = Field(
        default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> PodSpec:
        seen: set[str] = set()
        for c in [*self.init_containers, *self.containers]:
            if c.name in seen:
                raise ValueError(f"container name {c.name!r} is used twice")
            seen.add(c.name)
        return self


class PodTemplate(Model):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec


# JobSpec fields canaryd owns: the controller makes the selector; canaryd deletes the Job
# once its outcome is recorded (a TTL could remove it before, and it would run again).
JOB_SPEC_REFUSED = {"selector": "the Job controller makes the selector",
                    "manualSelector": "the Job controller makes the selector",
                    "ttlSecondsAfterFinished": "canaryd deletes the Job once its outcome is "
                    "recorded (a TTL could remove it before that, and it would run again)"}


class JobSpec(Open):
    """A batch/v1 JobSpec: `template` checked here, other fields (parallelism, completions,
    podFailurePolicy...) as written."""

    template: PodTemplate
    backoff_limit: Annotated[int, Field(ge=0, le=100)] = Field(
        default=0, description="retries of a failed pod before the Job fails (default 0: one "
        "try, a failed test fails the hook)")
    active_deadline_seconds: Annotated[int, Field(ge=1, le=86400)] | None = Field(
        default=None, description="default: the hook's timeout, rounded up")

    @model_validator(mode="after")
    def _not_ours(self) -> JobSpec:
        for key, why in JOB_SPEC_REFUSED.items():
            if key in (self.model_extra or {}):
                raise ValueError(f"{key} is not allowed: {why}")
        return self


class JobHook(Model):
    """Run a Kubernetes Job from this template (batch/v1 JobTemplateSpec) in the rollout's
    namespace; it passes when the Job completes, fails when the Job fails."""

    metadata: ObjectMeta = ObjectMeta()
    spec: JobSpec

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Hook(Model):
    """A call at one stage of the rollout (docs/hooks.md)."""

    name: Label = Field(description="unique among the rollout's hooks")
    stage: Stage = Field(
        description="preRollout: before any traffic moves (failure: Failed, traffic untouched); "
        "step: each step before its analysis (failure: a failed analysis run); "
        "confirmPromotion: a gate before full traffic, analysis goes on while it waits "
        "(failure: rollback); rollback: when a rollback starts; postRollout: after the "
        "verdict (rollback and postRollout failures are reported, never change the verdict)")
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.webhook) != has(self.job)", "message": "give webhook or job"}]})

    webhook: Webhook | None = Field(
        default=None, description="POST JSON to `url`; 2xx passes; signed with HMAC-SHA256 "
        "when a secret is given (give webhook or job)")
    job: JobHook | None = Field(
        default=None, description="run a Job from this batch/v1 JobTemplateSpec in the "
        "rollout's namespace: Complete passes, Failed fails (give webhook or job)")
    timeout: Duration = Field(
        default=30.0, description="each call's deadline, retries included (gates: each ask); "
        "a job's deadline from its start (default 10m); 100ms to 1h")
    retries: Annotated[int, Field(ge=0, le=5)] = Field(
        default=2, description="retries of a call that could not connect or got 429/5xx")
    interval: Duration = Field(
        default=10.0, description="confirmPromotion: how long to wait before asking again "
        "after 'not yet' (HTTP 425)")
    max_wait: Duration | None = Field(
        default=None, description="confirmPromotion: how long to wait for a yes before "
        "rolling back; default: as long as it takes (like a manual gate)")

    @model_validator(mode="before")
    @classmethod
    def _job_timeout(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("job") is not None and "timeout" not in data:
            return {**data, "timeout": JOB_TIMEOUT}
        return data

    @model_validator(mode="after")
    def _gate_fields(self) -> Hook:
        if (self.webhook is None) == (self.job is None):
            raise ValueError("give webhook or job" + (", not both" if self.job else ""))
        if self.job is not None and self.max_wait is not None:
            raise ValueError("maxWait is for webhook gates: a job's deadline is its timeout")
        if self.stage != "confirmPromotion" and self.max_wait is not None:
            raise ValueError("maxWait is for confirmPromotion gates")
        if self.interval < 0.1:
            raise ValueError("interval must be at least 100ms")
        if not 0.1 <= self.timeout <= 3600:
            raise ValueError("timeout must lie between 100ms and 1h")
        return self


def check_unique(hooks: list[Hook]) -> list[Hook]:
    seen: set[str] = set()
    for i, hook in enumerate(hooks):
        if hook.name in seen:
            raise ValueError(f"hooks[{i}].name: {hook.name!r} is used twice")
        seen.add(hook.name)
    return hooks


Hooks = Annotated[list[Hook], Field(max_length=16), AfterValidator(check_unique)]


class HookRun(Model):
    """One hook call as recorded in status: once per stage per rollout (per step for step
    hooks), also across daemon restarts."""

    id: str = Field(description="stage/name, and /step (0-based) for step hooks")
    name: str
    stage: Stage
    step: int | None = Field(default=None, description="0-based step of a step hook")
    outcome: Outcome = Field(description="Running, Waiting (a gate said not yet), Passed, "
                                         "Failed, Cancelled (a gate no longer needed)")
    started: datetime
    finished: datetime | None = None
    reason: Annotated[str, Field(max_length=2048)] = ""
    asks: int = Field(default=0, description="gates: how many times it was asked; jobs: 1 "
                      "once the Job was created")
    seq: int = Field(default=0, description="status.sequence when it started")
    finished_seq: int | None = Field(default=None, description="status.sequence when it "
                                     "finished")

    @property
    def done(self) -> bool:
        return self.outcome in ("Passed", "Failed", "Cancelled")


def run_id(stage: str, name: str, step: int | None) -> str:
    return f"{stage}/{name}" + (f"/{step}" if step is not None else "")


def job_name(rollout: str, uid: str, rid: str) -> str:
    """The Job of one hook run: the same for every daemon and leader (so a restarted one finds
    it), different for every run and every rollout (uid), a DNS-1123 label (<= 63)."""
    digest = hashlib.sha256(f"{uid}/{rid}".encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9-]+", "-", f"{rollout}-{rid.split('/')[1]}".lower())
    readable = readable[:63 - 1 - len(digest)].strip("-") or "hook"
    return f"{readable}-{digest}"
