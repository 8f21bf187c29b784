"""Release after release, as the state machine decides it (`Context.release`). Pure.

Every rollout starts from the steady state (100% of traffic on an available stable, no
other rollout of the target active) and ends in it:
- Pending puts the new version onto the canary (the image, when spec.version is one) and
  scales it up, then waits until the canary runs that pod template, available;
- promotion copies the analysed pod template onto stable (its selector labels kept), waits
  for stable's own rollout, moves all traffic back to stable, verified by reading the router
  back, and scales the canary to zero;
- a rollback moves traffic back to stable, verified, and scales the canary to zero (or keeps
  it, as configured). It never touches stable.

Every stage is level-triggered: an action is asked for again while the observed Deployment
differs from what the recorded stage wants, so a restart between the status write and the
action (or halfway through stable's rollout) converges, and nothing is done twice.
"""

from __future__ import annotations

from typing import Any

from canaryd.core import release as rel
from canaryd.core.builder import Builder, ScaleDown, since, start_rollback
from canaryd.core.model import Phase, ReleaseStatus, Revision, Weights
from canaryd.core.transitions import Trigger, ending

P, T = Phase, Trigger


def _revision(view: rel.DeploymentView) -> Revision:
    return Revision(images=dict(view.images), template_hash=view.template_hash)


def _set(b: Builder, **changes: Any) -> None:
    current = b.status.release or ReleaseStatus()
    updated = current.model_copy(update=changes)
    if updated != current:
        b.update(release=updated)


def _say(b: Builder, detail: str) -> None:
    """Progress within a phase: status.reason and status.release.detail."""
    _set(b, detail=detail)
    if b.status.reason != detail:
        b.update(reason=detail)


def preflight(w: Weights | None, o: rel.ReleaseObservation) -> str | None:
    """Why this rollout may not start (nothing has been touched), or None."""
    if w is not None and (w.stable, w.canary) != (100, 0):
        return (f"not starting: the router sends {w.stable}% to stable and {w.canary}% to "
                "the canary, but no other rollout of this target is active; a release "
                "starts only from 100% on stable. Nothing was touched: put all traffic "
                "back on stable (stable weight 100, canary 0) once you know which version "
                "should serve, then submit again")
    for role, view in (("stable", o.stable), ("canary", o.canary)):
        if not view.exists:
            return (f"not starting: {role} Deployment {view.name} not found; routing not "
                    "touched")
    return None


def _stable_settled(b: Builder, ready_timeout: float, o: rel.ReleaseObservation) -> bool:
    """A release starts from an available stable whose own rollout is over: wait for one
    (its controller may not have caught up yet) up to readyTimeout, then fail untouched."""
    s = o.stable
    if s.rolled_out and s.available >= 1:
        return True
    if since(b.now, b.status.phase_started_at) < ready_timeout:
        b.update(reason=f"waiting for stable to be available: {s.progress}")
        b.wake_in(1.0)
        return False
    b.move(T.NOT_STEADY, f"not starting: stable is not available after "
           f"{ready_timeout:g}s ({s.progress}); a release starts only from an available "
           "stable. Nothing was touched: fix the stable Deployment, then submit again")
    return False


def abandon(b: Builder, message: str, outcome: Phase) -> None:
    """Leave Pending after the canary may have been scaled up: traffic never moved (the
    rollout started at 100/0), so only verify it and scale the canary back down."""
    b.move(T.START_ABANDONED, message, outcome=outcome, rollback_reason=message,
           paused_by=None, weights=Weights(stable=100, canary=0))
    b.wake_in(0.0)


def pending(b: Builder, plan: rel.ReleasePlan, ready_timeout: float, weights: Weights | None,
            o: rel.ReleaseObservation | None) -> str | None:
    """The canary's start. Returns what is ready ("canary available ...") once the canary
    runs the new version, available, for the machine to go on with (hooks, step 1)."""
    if o is None or weights is None:
        b.wake_in(1.0)
        return None
    r = b.status.release
    if not plan.copy_to_stable and r is None and weights == Weights(stable=0, canary=100):
        # Blue-green with green live: this release goes to blue (next round, the other way
        # round: canaryd.core.release.to_idle_colour).
        b.update(release=ReleaseStatus(colour="blue"),
                 reason="green is live: this release goes to blue")
        b.wake_in(0.0)
        return None
    if r is None or r.from_ is None:
        problem = preflight(weights, o)
        if problem is not None:
            b.move(T.NOT_STEADY, problem)
            return None
        if not _stable_settled(b, ready_timeout, o):
            return None
        container: str | None = None
        if plan.image is not None:
            container, error = rel.pick_container(plan, o.canary)
            if error is not None:
                b.move(T.INVALID, f"invalid rollout: {error}")
                return None
        colour = (r.colour if r is not None else None) or (
            None if plan.copy_to_stable else "green")
        r = ReleaseStatus(from_=_revision(o.stable), stage="CanaryStart", colour=colour,
                          canary_replicas=rel.canary_replicas(plan, o), container=container)
        b.update(release=r)
    c = o.canary
    want = r.canary_replicas
    image = plan.image if r.container is not None else None
    needs_image = image is not None and r.container is not None and c.image(r.container) != image
    needs_scale = want is not None and c.replicas != want
    if c.exists and (needs_image or needs_scale):
        b.actions.append(rel.PrepareCanary(plan.canary, r.container,
                                           image if needs_image else None,
                                           want if needs_scale else None))
        what = f"{image} on " if needs_image else ""
        _say(b, f"starting the canary: {what}{plan.canary}, {want} replicas")
        b.wake_in(1.0)
        return None
    if c.exists and c.rolled_out and plan.template_hash not in (None, c.template_hash):
        abandon(b, f"the canary {plan.canary} no longer runs the pod template this rollout "
                f"was started for ({plan.template_hash}, it runs {c.template_hash}): a newer "
                "change takes over; routing not touched", P.FAILED)
        return None
    if c.exists and c.rolled_out and c.available >= 1:
        to = _revision(c)
        _set(b, to=to, stage="Steps", detail=f"canary runs {rel.images_text(to.images)}")
        return f"canary available ({c.available}/{c.replicas}, {rel.images_text(to.images)})"
    if since(b.now, b.status.phase_started_at) >= ready_timeout:
        abandon(b, f"canary not available after {ready_timeout:g}s ({c.progress}); "
                "routing not touched", P.FAILED)
        return None
    _say(b, f"waiting for the canary: {c.progress}")
    b.wake_in(1.0)
    return None


def promote(b: Builder, plan: rel.ReleasePlan | None, trigger: Trigger, message: str) -> bool:
    """Promotion begins by copying the analysed template onto stable; traffic stays where
    analysis approved it until stable has rolled out. False: not a release."""
    if plan is None or not plan.copy_to_stable or b.status.release is None:
        return False  # blue-green: the switch is the promotion
    b.move(trigger, f"{message}; copying the canary's pod template to stable",
           outcome=None, paused_by=None)
    _set(b, stage="StableUpdate", detail="copying the canary's pod template to stable")
    b.wake_in(0.0)
    return True


def _stable_update(b: Builder, plan: rel.ReleasePlan, r: ReleaseStatus,
                   o: rel.ReleaseObservation) -> None:
    analysed = r.to.template_hash if r.to is not None else None
    s = o.stable
    if s.template_hash != analysed:
        if o.canary.template_hash != analysed:
            start_rollback(
                b, T.CANARY_CHANGED,
                "promotion stopped: the canary's pod template changed after analysis "
                f"(analysed {analysed}, now {o.canary.template_hash}); stable not touched",
                P.FAILED)
            return
        b.actions.append(rel.CopyTemplate(plan.canary, plan.stable, analysed or ""))
        _say(b, f"copying the canary's pod template to stable {plan.stable}")
    elif not s.rolled_out:
        _say(b, f"stable updated {s.updated}/{s.replicas} ({s.available} available)")
    else:
        b.move(T.STABLE_UPDATED,
               f"stable {plan.stable} runs the new version ({s.updated}/{s.replicas} "
               f"updated, {rel.images_text(dict(s.images))}); traffic back on stable")
        _set(b, stage="TrafficToStable", detail="traffic back on stable")
        b.route(0)
        return
    b.wake_in(1.0)


def converging(b: Builder, plan: rel.ReleasePlan | None, weights: Weights | None,
               o: rel.ReleaseObservation | None) -> bool:
    """Promoting / RollingBack of a release; False leaves it to the plain path."""
    r = b.status.release
    if plan is None or r is None:
        return False
    if o is None:
        b.wake_in(1.0)
        return True
    phase = b.status.phase
    if phase is P.PROMOTING and not plan.copy_to_stable:
        return False  # blue-green: switched, checked live, the old colour scaled down
    if phase is P.PROMOTING and r.stage == "StableUpdate":
        _stable_update(b, plan, r, o)
        return True
    want = b.status.weights
    if weights is None or want is None or weights != want:
        b.wake_in(1.0)
        return True
    keep = phase is P.ROLLING_BACK and plan.keep_on_rollback
    if not keep and o.canary.exists and o.canary.replicas != 0:
        b.actions.append(ScaleDown(plan.canary))
        _set(b, stage="CanaryScaleDown")
        _say(b, f"traffic verified on stable; scaling the canary {plan.canary} to zero")
        b.wake_in(1.0)
        return True
    tail = (f"canary {plan.canary} kept at zero traffic for inspection" if keep
            else f"canary {plan.canary} scaled to zero")
    _set(b, stage="Done", detail=tail)
    if phase is P.PROMOTING:
        images = rel.images_text(r.to.images if r.to is not None else {})
        b.move(T.TRAFFIC_CONFIRMED,
               f"promoted: stable {plan.stable} runs {images} with 100% of traffic "
               f"(verified); {tail}")
    else:
        reason = b.status.rollback_reason or "rolled back"
        b.move(ending(b.status.outcome or P.ROLLED_BACK),
               f"{reason}; traffic verified back on stable; {tail}")
    return True


__all__ = ["abandon", "converging", "pending", "preflight", "promote"]
