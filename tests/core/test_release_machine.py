"""Release mode of the state machine, tick by tick with a virtual clock: the canary start,
promotion onto stable, rollback and the steady-state preflight, against a pretend pair of
Deployments that roll out one tick after a change (as a Deployment controller would)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from canaryd.core import machine, transitions
from canaryd.core import release as rel
from canaryd.core.model import Phase, Verdict, Weights
from tests.core import driver
from tests.core.test_machine import RELEASE_ONLY, context, make_spec, run

V1, V2 = "ghcr.io/acme/app:1", "ghcr.io/acme/app:2"


def deployment(name: str, image: str, replicas: int, **kw: object) -> rel.DeploymentView:
    return rel.DeploymentView(
        name=name, generation=1, observed_generation=1, replicas=replicas, updated=replicas,
        available=replicas, template_hash=f"h-{image}", images=(("app", image),),
        **kw,  # type: ignore[arg-type]
    )


class World(driver.Driver):
    """The shared driver with the router and both Deployments; applies the release's
    actions the way the runtime would."""

    def __init__(self, *, version: str = V2, **plan: object) -> None:
        spec = make_spec()
        super().__init__(replace(context(spec), release=rel.ReleasePlan(
            stable="stable", canary="canary", image=rel.image_of(version), **plan)))  # type: ignore[arg-type]
        self.stable = deployment("stable", V1, 4)
        self.canary = deployment("canary", V1, 0)
        self.log: list[str] = []
        self.refused: tuple[type, ...] = ()  # actions the API refuses (not done)
        self.error: str | None = None  # what the last tick could not do, as the runtime keeps

    def _settle(self, d: rel.DeploymentView) -> rel.DeploymentView:
        return replace(d, observed_generation=d.generation, updated=d.replicas,
                       available=d.replicas)

    def tick(self, seconds: float = 1.0, settle: bool = True,  # type: ignore[override]
             **obs: Any) -> machine.Decision:
        if settle:
            self.stable, self.canary = self._settle(self.stable), self._settle(self.canary)
        obs.setdefault("release", rel.ReleaseObservation(self.stable, self.canary))
        obs.setdefault("action_error", self.error)
        self.error = None
        return super().tick(seconds, **obs)

    def apply(self, a: object) -> None:
        self.log.append(type(a).__name__)
        if isinstance(a, self.refused):
            self.error = f"{type(a).__name__} failed: 422 held"
        elif isinstance(a, rel.PrepareCanary):
            c = self.canary
            if a.image is not None:
                c = replace(c, images=(("app", a.image),), template_hash=f"h-{a.image}")
            if a.replicas is not None:
                c = replace(c, replicas=a.replicas)
            self.canary = replace(c, generation=c.generation + 1)
        elif isinstance(a, rel.CopyTemplate):
            assert a.template_hash == self.canary.template_hash
            self.stable = replace(self.stable, images=self.canary.images,
                                  template_hash=self.canary.template_hash,
                                  generation=self.stable.generation + 1, updated=0)
        elif isinstance(a, machine.ScaleDown):
            assert a.deployment == "canary", "only the canary is ever scaled down"
            self.canary = replace(self.canary, replicas=0,
                                  generation=self.canary.generation + 1)
        else:
            super().apply(a)

    def until(self, phase: Phase, limit: int = 50, **obs: object) -> None:
        for _ in range(limit):
            if self.status.phase is phase:
                return
            self.tick(**obs)
        raise AssertionError(f"never reached {phase}: {self.status.phase} {self.status.reason}")

    def analyse(self, verdict: Verdict) -> None:
        self.now += timedelta(seconds=10)
        self.tick(0, analysis=run(verdict, self.now))


def test_start_sets_the_image_scales_up_and_records_from_and_to() -> None:
    w = World()
    d = w.tick(settle=False)
    assert w.status.phase is Phase.PENDING
    assert d.actions == (rel.PrepareCanary("canary", "app", V2, 4),)
    assert w.status.release is not None and w.status.release.from_ is not None
    assert w.status.release.from_.images == {"app": V1}
    assert w.router.canary == 0
    w.tick(settle=False)  # generation not observed yet: still waiting, nothing re-sent
    assert w.status.phase is Phase.PENDING and "not observed" in w.status.reason
    w.tick()
    assert w.status.phase is Phase.PROGRESSING and w.router.canary == 10
    r = w.status.release
    assert r is not None and r.to is not None and r.to.images == {"app": V2}
    assert r.to.template_hash == f"h-{V2}" and r.stage == "Steps"


def test_promotion_copies_the_template_waits_for_stable_then_moves_traffic_back() -> None:
    w = World()
    w.until(Phase.PROGRESSING)
    w.analyse(Verdict.PASS)
    w.analyse(Verdict.PASS)
    w.now += timedelta(seconds=30)
    w.analyse(Verdict.PASS)
    assert w.status.phase is Phase.PROMOTING
    assert w.router.canary == 50, "traffic stays where analysis approved it"
    w.tick(settle=False)
    assert w.stable.images == (("app", V2),) and w.stable.updated == 0
    w.tick(settle=False)
    assert "stable updated 0/4" in w.status.reason and w.router.canary == 50
    w.tick()  # stable rolled out
    assert w.router == Weights(stable=100, canary=0)
    assert w.status.history[-1].trigger == "StableUpdated"
    w.until(Phase.SUCCEEDED)
    assert w.canary.replicas == 0 and w.stable.images == (("app", V2),)
    assert "runs app=ghcr.io/acme/app:2" in w.status.reason
    cond = {c.type: c.status for c in w.status.conditions}
    assert cond["StableUpdated"] == cond["CanaryScaledDown"] == cond["Promoted"] == "True"
    assert w.log.count("CopyTemplate") == 1


def test_rollback_moves_traffic_back_scales_the_canary_down_and_never_touches_stable() -> None:
    w = World()
    w.until(Phase.PROGRESSING)
    w.analyse(Verdict.FAIL)
    w.analyse(Verdict.FAIL)
    assert w.status.phase is Phase.ROLLING_BACK
    w.until(Phase.ROLLED_BACK)
    assert w.router == Weights(stable=100, canary=0)
    assert w.canary.replicas == 0 and w.stable.images == (("app", V1),)
    assert "CopyTemplate" not in w.log and "scaled to zero" in w.status.reason


def test_keep_on_rollback_leaves_the_canary_pods() -> None:
    w = World(keep_on_rollback=True)
    w.until(Phase.PROGRESSING)
    w.tick(action="abort")
    w.until(Phase.ABORTED)
    assert w.canary.replicas == 4 and "kept at zero traffic" in w.status.reason


def test_a_split_router_with_no_rollout_active_fails_before_touching_anything() -> None:
    w = World()
    d = w.tick(weights=Weights(stable=50, canary=50))
    assert w.status.phase is Phase.FAILED and not d.actions
    assert "50% to stable and 50% to the canary" in w.status.reason
    assert "Nothing was touched" in w.status.reason
    assert w.status.history[-1].trigger == "NotSteadyState"


def test_an_unavailable_stable_fails_before_touching_anything() -> None:
    w = World()
    w.stable = replace(w.stable, available=0)
    d = w.tick(settle=False)
    assert w.status.phase is Phase.PENDING and not d.actions, "its controller may catch up"
    assert "waiting for stable to be available" in w.status.reason
    w.until(Phase.FAILED, limit=80, settle=False)
    assert "stable is not available after 60s" in w.status.reason
    assert "Nothing was touched" in w.status.reason and w.log == []


def test_a_canary_that_never_becomes_available_is_scaled_back_down() -> None:
    w = World()
    w.tick(settle=False)
    for _ in range(59):
        w.tick(settle=False)
    w.until(Phase.FAILED, settle=False)
    assert w.canary.replicas == 0 and w.router.canary == 0
    assert "routing not touched" in w.status.reason
    assert "SetWeights" not in w.log


def test_an_autoscaled_canary_keeps_its_replicas_and_a_bare_version_sets_no_image() -> None:
    w = World(version="v2")
    w.canary = replace(w.canary, replicas=3, autoscaler_min=2)
    d = w.tick()
    assert d.actions == (machine.SetWeights(10),), "no image to set, HPA owns the replicas"
    assert w.status.phase is Phase.PROGRESSING
    assert w.status.release is not None and w.status.release.canary_replicas is None


def test_a_canary_changed_after_analysis_is_never_copied_onto_stable() -> None:
    w = World()
    w.until(Phase.PROGRESSING)
    w.tick(action="promote")
    w.canary = replace(w.canary, template_hash="h-someone-else")
    w.tick()
    assert w.status.phase is Phase.ROLLING_BACK and "changed after analysis" in w.status.reason
    w.until(Phase.FAILED)
    assert w.stable.images == (("app", V1),) and "CopyTemplate" not in w.log


def test_several_containers_need_a_name() -> None:
    w = World()
    w.canary = replace(w.canary, images=(("app", V1), ("sidecar", "envoy:1")))
    w.tick()
    assert w.status.phase is Phase.FAILED and "spec.workloads.container" in w.status.reason
    w = World(container="sidecar")
    w.canary = replace(w.canary, images=(("app", V1), ("sidecar", "envoy:1")))
    d = w.tick(settle=False)
    assert d.actions == (rel.PrepareCanary("canary", "sidecar", V2, 4),)


def test_image_detection() -> None:
    assert rel.image_of("ghcr.io/stefanprodan/podinfo:6.5.0")
    assert rel.image_of("app@sha256:" + "a" * 64)
    assert rel.image_of("localhost:5000/app:v2")
    assert rel.image_of("v2") is None and rel.image_of("1.4.0") is None
    assert rel.image_of("a b:c") is None


def test_template_copy_keeps_stable_selector_labels() -> None:
    canary = {"metadata": {"labels": {"app": "p", "track": "canary", "version": "v2"}},
              "spec": {"containers": [{"name": "app", "image": V2}]}}
    stable = {"metadata": {"labels": {"app": "p", "track": "stable", "version": "v1"}}}
    out = rel.stable_template(canary, stable, {"app", "track"})
    assert out["metadata"]["labels"] == {"app": "p", "track": "stable", "version": "v2"}
    assert rel.template_hash(out, {"app", "track"}) == rel.template_hash(canary,
                                                                          {"app", "track"})


def test_a_lost_action_is_asked_for_again_and_nothing_is_done_twice() -> None:
    """A crash between the status write and the action (the write-ahead record says
    StableUpdate, stable still runs V1): the next tick copies again; once stable runs the
    analysed template, no copy is asked for, whatever the ticks."""
    w = World()
    w.until(Phase.PROGRESSING)
    w.tick(action="promote")
    assert w.status.release is not None and w.status.release.stage == "StableUpdate"
    crashed = machine.decide(w.ctx, w.status, machine.Observations(
        weights=w.router, release=rel.ReleaseObservation(w.stable, w.canary)), w.now)
    assert rel.CopyTemplate("canary", "stable", f"h-{V2}") in crashed.actions
    w.status = crashed.status  # written; the copy itself never happened
    w.tick(settle=False)
    assert w.stable.template_hash == f"h-{V2}"
    w.tick(settle=False)
    w.tick(settle=False)
    assert w.log.count("CopyTemplate") == 1, "stable's own rollout is waited for, not redone"
    w.until(Phase.SUCCEEDED)
    assert w.log.count("CopyTemplate") == 1 and w.log.count("ScaleDown") == 1


def degraded(w: World) -> tuple[str, str] | None:
    c = next((c for c in w.status.conditions if c.type == "Degraded"), None)
    return (c.reason, c.message) if c is not None and c.status == "True" else None


def test_a_refused_shift_back_or_scale_down_is_asked_for_again_and_shown_degraded() -> None:
    """The API refuses the router write after promotion, then the canary's scale-down (an
    admission policy, RBAC): the rollout holds where it is, asks again every tick, says so
    as Degraded=True, and goes on once the write goes through, nothing recorded twice."""
    w = World()
    w.until(Phase.PROGRESSING)
    w.tick(action="promote")
    w.refused = (machine.SetWeights, machine.ScaleDown)
    w.until(Phase.PROMOTING)
    for _ in range(5):
        w.tick()
    r = w.status.release
    assert r is not None and r.stage == "TrafficToStable" and w.router.canary == 10
    assert w.status.weights == Weights(stable=100, canary=0), "the intent is recorded"
    assert degraded(w) == ("ActionFailed", "retrying: SetWeights failed: 422 held")
    assert w.log.count("SetWeights") >= 5 and w.log.count("ScaleDown") == 0
    history = len(w.status.history)
    w.refused = (machine.ScaleDown,)
    for _ in range(5):
        w.tick()
    assert w.router == Weights(stable=100, canary=0) and w.canary.replicas > 0
    assert w.status.release is not None and w.status.release.stage == "CanaryScaleDown"
    assert degraded(w) == ("ActionFailed", "retrying: ScaleDown failed: 422 held")
    assert len(w.status.history) == history and w.status.phase is Phase.PROMOTING
    w.refused = ()
    w.until(Phase.SUCCEEDED)
    assert degraded(w) is None and w.canary.replicas == 0
    assert [h.trigger for h in w.status.history][-2:] == ["StableUpdated", "TrafficConfirmed"]


def test_every_release_edge_of_the_table_is_taken() -> None:
    taken: set[tuple[Phase, transitions.Trigger, Phase]] = set()

    def record(w: World) -> None:
        for h in w.status.history:
            taken.add((h.source, transitions.Trigger(h.trigger), h.phase))

    for case in ("split", "promote", "changed", "abort", "supersede", "timeout"):
        w = World()
        if case == "split":
            w.tick(weights=Weights(stable=50, canary=50))
        elif case == "abort":
            w.tick(settle=False)
            w.tick(settle=False, action="abort")
            w.until(Phase.ABORTED)
        elif case == "supersede":
            w.tick(settle=False)
            w.tick(settle=False, superseded_by="demo/newer")
            w.until(Phase.ABORTED)
        elif case == "timeout":
            w.until(Phase.FAILED, limit=80, settle=False)
        else:
            w.until(Phase.PROGRESSING)
            w.tick(action="promote")
            if case == "changed":
                w.canary = replace(w.canary, template_hash="h-other")
            w.until(Phase.FAILED if case == "changed" else Phase.SUCCEEDED)
        record(w)
    table = {(s, t, p) for s, row in transitions.TRANSITIONS.items() for t, p in row.items()
             if t in RELEASE_ONLY}
    assert table - taken == set()
    endings = {(P, t, p) for P, t, p in taken if P is Phase.ROLLING_BACK}
    assert {p for _, _, p in endings} == {Phase.ABORTED, Phase.FAILED}


def test_blue_green_goes_to_the_idle_colour() -> None:
    """Green live (the router reads 0/100): the release is recorded as going to blue and
    nothing else happens this tick; the runtime then runs it the other way round."""
    w = World(copy_to_stable=False)
    d = w.tick(weights=Weights(stable=0, canary=100))
    assert w.status.phase is Phase.PENDING and not d.actions and d.requeue_after == 0.0
    assert w.status.release is not None and w.status.release.colour == "blue"
    w.tick()  # the other way round now: the router reads 100/0
    assert w.status.release.colour == "blue" and w.status.release.from_ is not None
    w = World(copy_to_stable=False)
    w.tick(settle=False)
    assert w.status.release is not None and w.status.release.colour == "green"
