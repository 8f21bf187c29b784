"""RolloutPolicy decisions, tick by tick with a virtual clock: the template hash, the first
look, a change starting one rollout named from its hash, re-applies and restarts starting
nothing, supersede and wait during an active rollout, and bad policies reported naming the
field. Plus the release machine's side: a rollout started for a template sets no image and
refuses to start on another template."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from canaryd.adapters.workloads import plan_for
from canaryd.core import policy
from canaryd.core import release as rel
from canaryd.core.model import Phase, RolloutSpec
from canaryd.core.policy import Active, PolicyStatus, View
from tests.core.test_machine import T0
from tests.core.test_release_machine import World
from tests.core.test_release_machine import deployment as release_deployment

IMAGE = "ghcr.io/stefanprodan/podinfo"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "config" / "examples" / "policy.yaml").read_text())


def template(image: str, track: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "podinfo", "track": track}},
            "spec": {"containers": [{"name": "podinfo", "image": image, **extra}]}}


def deployment(name: str, image: str, track: str, **extra: Any) -> rel.DeploymentView:
    return rel.DeploymentView(
        name=name, replicas=0 if track == "canary" else 2,
        template_hash=rel.template_hash(template(image, track, **extra), {"app", "track"}),
        images=(("podinfo", image),))


def spec(**changes: Any) -> dict[str, Any]:
    return {**EXAMPLE["spec"], **changes}


class Target:
    """One policy and the world it looks at; `look` is one leader's look, as the runtime
    makes it (a started rollout exists from then on, the status is what was written)."""

    def __init__(self, **spec_changes: Any) -> None:
        self.spec, self.invalid = policy.parse_spec(spec(**spec_changes))
        self.status = PolicyStatus()
        self.now = T0
        self.stable = deployment("podinfo-stable", f"{IMAGE}:6.7.1", "stable")
        self.canary = deployment("podinfo-canary", f"{IMAGE}:6.7.1", "canary")
        self.rollouts: dict[str, str] = {}  # name -> phase
        self.starts: dict[str, int] = {}  # name -> the policy's start number
        self.started: list[policy.Start] = []
        self.events: list[tuple[str, str, bool]] = []

    def apply(self, image: str, **extra: Any) -> str:
        """A GitOps tool applies the canary Deployment with this image: its new hash."""
        self.canary = deployment("podinfo-canary", image, "canary", **extra)
        return self.canary.template_hash

    def look(self) -> policy.Decision:
        self.now += timedelta(seconds=1)
        view = View(canary=self.canary, stable=self.stable,
                    active=tuple(Active(n, p, True) for n, p in self.rollouts.items()
                                 if not Phase(p).terminal),
                    mine=dict(self.starts))
        d = policy.decide("podinfo", 1, self.spec, self.invalid, self.status, view, self.now)
        self.status = d.status
        if d.start is not None:
            self.started.append(d.start)
            assert d.start.name not in self.rollouts, "create-if-absent: never twice"
            self.rollouts[d.start.name] = "Pending"
            self.starts[d.start.name] = d.start.start
        if d.event is not None:
            self.events.append(d.event)
        return d

    def condition(self, ctype: str) -> tuple[str, str]:
        c = next(c for c in self.status.conditions if c.type == ctype)
        return c.status, c.reason


def test_the_hash_leaves_out_the_selector_labels_and_sees_everything_else() -> None:
    same = deployment("a", f"{IMAGE}:1", "stable").template_hash
    assert deployment("b", f"{IMAGE}:1", "canary").template_hash == same
    assert deployment("b", f"{IMAGE}:2", "canary").template_hash != same
    env = [{"name": "MODE", "value": "x"}]
    assert deployment("b", f"{IMAGE}:1", "canary", env=env).template_hash != same
    assert len(same) == 12 and policy.rollout_name("podinfo", same) == f"podinfo-{same[:10]}"


def test_the_first_look_adopts_what_stable_runs_and_starts_nothing() -> None:
    t = Target()
    d = t.look()
    assert d.start is None and d.event is None
    assert t.status.observed_template_hash == t.stable.template_hash
    assert t.condition("Ready") == ("True", "Watching")
    assert t.look().start is None and t.look().status == t.status


def test_a_changed_template_starts_one_rollout_and_a_reapply_starts_nothing() -> None:
    t = Target()
    t.look()
    h = t.apply(f"{IMAGE}:6.8.0")
    d = t.look()
    assert d.start == policy.Start(name=f"podinfo-{h[:10]}", version=f"{IMAGE}:6.8.0",
                                   template_hash=h, supersede=True, start=1)
    assert t.status.observed_template_hash == h
    assert t.status.last_rollout == f"podinfo-{h[:10]}"
    assert t.status.last_version == f"{IMAGE}:6.8.0"
    assert d.event is not None and d.event[0] == "RolloutStarted"
    # Looked at again, re-applied by the GitOps tool (the same template): nothing.
    for _ in range(3):
        assert t.look().start is None
        t.apply(f"{IMAGE}:6.8.0")
    assert len(t.started) == 1
    # A restart that lost the status (or another replica): the rollout's name exists.
    t.status = PolicyStatus()
    d = t.look()
    assert d.start is None and t.status.observed_template_hash == h
    assert t.status.last_rollout == f"podinfo-{h[:10]}"


def test_promotion_and_rollback_leave_the_policy_quiet() -> None:
    t = Target()
    t.look()
    t.apply(f"{IMAGE}:6.8.0")
    t.look()
    (name,) = t.rollouts
    t.rollouts[name] = "Succeeded"
    t.stable = deployment("podinfo-stable", f"{IMAGE}:6.8.0", "stable")  # the copy
    assert t.look().start is None
    h3 = t.apply(f"{IMAGE}:6.9.0")
    assert t.look().start is not None
    t.rollouts[policy.rollout_name("podinfo", h3)] = "RolledBack"  # stable still 6.8.0
    for _ in range(3):
        assert t.look().start is None, "a rolled-back template is not started again"
    # Putting the canary back to what stable runs is no release either.
    t.apply(f"{IMAGE}:6.8.0")
    assert t.look().start is None
    assert t.status.observed_template_hash == t.stable.template_hash
    assert len(t.started) == 2


def test_a_change_during_a_rollout_supersedes_it_by_default() -> None:
    t = Target()
    t.look()
    first = t.apply(f"{IMAGE}:6.8.0")
    t.look()
    t.rollouts[policy.rollout_name("podinfo", first)] = "Progressing"
    second = t.apply(f"{IMAGE}:6.8.1")
    d = t.look()
    assert d.start is not None and d.start.supersede
    assert d.start.name == policy.rollout_name("podinfo", second)
    assert d.event is not None and f"supersedes podinfo-{first[:10]}" in d.event[1]


def test_wait_holds_the_change_until_the_running_rollout_has_finished() -> None:
    t = Target(onChange="wait")
    t.look()
    first = t.apply(f"{IMAGE}:6.8.0")
    assert t.look().start is not None
    running = policy.rollout_name("podinfo", first)
    t.rollouts[running] = "Progressing"
    t.apply(f"{IMAGE}:6.8.1")
    d = t.look()
    assert d.start is None and t.condition("Waiting") == ("True", "Waiting")
    assert d.event is not None and f"waits for rollout {running} (Progressing)" in d.event[1]
    for _ in range(3):  # still running: still waiting, told once
        d = t.look()
        assert d.start is None and d.event is None
    assert t.status.observed_template_hash == first, "the waiting template is not recorded"
    t.rollouts[running] = "Failed"
    d = t.look()
    assert d.start is not None and not d.start.supersede
    assert t.condition("Waiting") == ("False", "Idle")
    assert [s.version for s in t.started] == [f"{IMAGE}:6.8.0", f"{IMAGE}:6.8.1"]


@pytest.mark.parametrize(("changes", "field"), [
    ({"version": "v2"}, "spec.version: leave spec.version out"),
    ({"supersede": True}, "spec.supersede: leave spec.supersede out"),
    ({"onChange": "later"}, "spec.onChange: Input should be 'supersede' or 'wait'"),
    ({"plan": {"steps": []}}, "spec.plan: Value error, steps must not be empty"),
    ({"router": {}}, "spec.router"),
    ({"workloads": {"stable": "Bad_Name", "canary": "c"}}, "spec.workloads.stable"),
])
def test_a_bad_policy_is_reported_on_itself_naming_the_field(
    changes: dict[str, Any], field: str,
) -> None:
    t = Target(**changes)
    assert t.spec is None and t.invalid is not None and field in t.invalid, t.invalid
    d = t.look()
    assert d.start is None and t.condition("Ready") == ("False", "InvalidSpec")
    assert d.event is not None and d.event[2] and field in d.event[1]
    assert t.look().event is None, "told once, not every look"


def test_missing_deployments_many_containers_and_long_names_say_what_to_fix() -> None:
    t = Target()
    t.canary = rel.DeploymentView(name="podinfo-canary", exists=False)
    t.look()
    assert t.condition("Ready") == ("False", "CanaryNotFound")
    assert "spec.workloads.canary: Deployment podinfo-canary not found" in \
        t.status.conditions[0].message
    t = Target()
    t.look()
    t.canary = replace(t.apply(f"{IMAGE}:2") and t.canary,
                       images=(("podinfo", f"{IMAGE}:2"), ("sidecar", "envoy:1")))
    assert t.look().start is None
    assert "spec.workloads.container: podinfo-canary has 2 containers" in \
        next(c.message for c in t.status.conditions if c.type == "Ready")
    t = Target(workloads={**EXAMPLE["spec"]["workloads"], "container": "sidecar"})
    t.look()
    t.canary = replace(t.apply(f"{IMAGE}:2") and t.canary,
                       images=(("podinfo", f"{IMAGE}:2"), ("sidecar", "envoy:1")))
    d = t.look()
    assert d.start is not None and d.start.version == "envoy:1"
    long = "p" * (policy.MAX_NAME + 1)
    d = policy.decide(long, 1, t.spec, None, PolicyStatus(), None, T0)
    assert d.start is None and d.event is not None and "metadata.name: at most 52" in d.event[1]


def test_the_rollout_is_the_policy_spec_with_the_version_and_template() -> None:
    body = {"metadata": {"name": "podinfo", "namespace": "demo"},
            "spec": spec(onChange="wait")}
    start = policy.Start("podinfo-0123456789", f"{IMAGE}:6.8.0", "0123456789ab", False)
    rollout = policy.rollout_body(body, start)
    assert rollout["metadata"] == {"name": "podinfo-0123456789", "namespace": "demo",
                                   "labels": {"canaryd.io/policy": "podinfo"},
                                   "annotations": {"canaryd.io/policy-start": "1"}}
    assert policy.started_by("demo", "podinfo", [rollout, {**rollout, "metadata": {
        **rollout["metadata"], "name": "other", "labels": {}}}]) == {"podinfo-0123456789": 1}
    assert "onChange" not in rollout["spec"]
    parsed = RolloutSpec.model_validate(rollout["spec"])
    assert (parsed.version, parsed.template_hash, parsed.supersede) == (
        f"{IMAGE}:6.8.0", "0123456789ab", False)
    assert parsed.plan == policy.PolicySpec.model_validate(spec()).plan
    assert plan_for(parsed).image is None, "what the canary runs is recorded, not set"
    assert plan_for(parsed.model_copy(update={"template_hash": None})).image == parsed.version


def test_a_rollout_started_for_a_template_sets_no_image_and_records_what_runs() -> None:
    w = World(version=f"{IMAGE}:6.8.0", template_hash="h-new")
    w.ctx = replace(w.ctx, release=replace(w.ctx.release, image=None))  # as plan_for makes it
    w.canary = replace(release_deployment("canary", "new", 0), template_hash="h-new")
    d = w.tick(settle=False)
    assert d.actions == (rel.PrepareCanary("canary", None, None, 4),)
    w.until(Phase.PROGRESSING)
    r = w.status.release
    assert r is not None and r.to is not None and r.to.template_hash == "h-new"


def test_a_rollout_started_for_a_template_fails_untouched_on_another() -> None:
    w = World(version=f"{IMAGE}:6.8.0", template_hash="h-old")
    w.ctx = replace(w.ctx, release=replace(w.ctx.release, image=None))
    w.canary = replace(release_deployment("canary", "newer", 0), template_hash="h-newer")
    w.until(Phase.FAILED)
    assert "no longer runs the pod template this rollout was started for (h-old, it runs " \
        "h-newer)" in w.status.reason
    assert w.router.canary == 0 and w.canary.replicas == 0


def test_the_plan_is_checked_against_the_config_as_a_submit_would() -> None:
    from canaryd.config import load_settings

    settings = load_settings(ROOT / "config" / "canaryd.yaml", env={})
    assert policy.check(spec(), settings) == (policy.PolicySpec.model_validate(spec()), [])
    _, problems = policy.check(spec(analysis={"profile": "sandbox", "interval": "1h"}),
                               settings)
    assert [p for p, _ in problems] == ["spec.analysis.interval"], problems
    found, invalid = policy.parse_spec(spec(analysis={"profile": "nope"}), settings)
    assert found is None and invalid is not None
    assert invalid.startswith("invalid policy: spec.analysis.profile: unknown profile 'nope'")


def test_the_docs_example_is_the_shipped_one() -> None:
    import re

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "gitops.md").read_text(),
                        re.DOTALL)
    (doc,) = [yaml.safe_load(b) for b in blocks if "kind: RolloutPolicy" in b]
    assert doc == EXAMPLE


def test_a_git_revert_to_a_released_version_is_released_again_once() -> None:
    t = Target()
    t.look()
    h2 = t.apply(f"{IMAGE}:6.8.0")
    t.look()
    t.rollouts[policy.rollout_name("podinfo", h2)] = "Succeeded"
    t.stable = deployment("podinfo-stable", f"{IMAGE}:6.8.0", "stable")
    t.apply(f"{IMAGE}:6.9.1")
    t.look()
    t.rollouts[t.started[-1].name] = "Succeeded"
    t.stable = deployment("podinfo-stable", f"{IMAGE}:6.9.1", "stable")
    before = t.status
    # git revert: the canary back to 6.8.0, whose rollout (start 1) still exists.
    t.apply(f"{IMAGE}:6.8.0")
    d = t.look()
    assert d.start is not None and d.start.name == f"podinfo-{h2[:10]}-3" and d.start.start == 3
    assert t.status.started == 3 and t.status.last_rollout == d.start.name
    assert t.look().start is None
    # Had the status write been lost after the create: found by its start number.
    t.status = before
    d = t.look()
    assert d.start is None and t.status.last_rollout == f"podinfo-{h2[:10]}-3"
    assert t.status.started == 3
    # A policy re-created (no status) never re-releases what exists: the rolled-back
    # template below stays rolled back.
    h3 = t.apply(f"{IMAGE}:6.9.0")
    t.look()
    t.rollouts[policy.rollout_name("podinfo", h3)] = "RolledBack"
    t.status = PolicyStatus()
    assert t.look().start is None and t.status.started == 4
    assert [s.start for s in t.started] == [1, 2, 3, 4]
