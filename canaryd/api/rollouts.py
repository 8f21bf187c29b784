"""Rollout endpoints: submit, list, get, and the operator actions.

Reads come from the controller's watch-fed cache (every replica has one). Writes go to
Kubernetes; the controller, wherever it leads, picks them up through its own watch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from typing import Any

import structlog
from aiohttp import web

from canaryd.api import admission, body, problems
from canaryd.api.auth import Role
from canaryd.api.context import IDENTITY, STATE, Handler, in_scope, require, requires
from canaryd.api.problems import Problem
from canaryd.api.writer import AlreadyExists
from canaryd.core import plan, reading, transitions
from canaryd.core.model import Phase
from canaryd.core.names import check_label, check_subdomain

log = structlog.get_logger("canaryd.api")
BASE = "/api/v1/rollouts"
DEFAULT_LIMIT, MAX_LIMIT = 100, 500
LIMIT_TEXT = re.compile(r"^[0-9]{1,4}$")
# Which phases each action applies to, from the state machine's table; anything else would
# be dropped by the controller, so it is refused here with the reason.
ACTION_PHASES: dict[str, frozenset[Phase]] = {
    a: transitions.accepting(a) for a in transitions.ACTIONS
}


def view(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def location(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{BASE}/{meta['namespace']}/{meta['name']}"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status,
                        content_type="application/json", headers=headers)


def path_names(request: web.Request) -> tuple[str, str]:
    ns, name = request.match_info["namespace"], request.match_info["name"]
    for label, value, check in (("namespace", ns, check_label), ("name", name, check_subdomain)):
        try:
            check(value)
        except ValueError as exc:
            raise problems.bad_parameter(label, str(exc)) from None
    in_scope(request, ns)
    return ns, name


DETAIL_TIMEOUT = 10.0  # reading a finished rollout whole (the cache keeps its summary)


async def whole(request: web.Request, namespace: str, name: str) -> dict[str, Any] | None:
    """The rollout read from Kubernetes, within DETAIL_TIMEOUT (None: it does not exist)."""
    try:
        async with asyncio.timeout(DETAIL_TIMEOUT):
            return await request.app[STATE].deps.writer.get(namespace, name)
    except TimeoutError:
        raise problems.unavailable(
            f"rollout {namespace}/{name} could not be read from Kubernetes within "
            f"{DETAIL_TIMEOUT:.0f} s (a finished rollout's checks and history are read from "
            "there; its summary is in the list)") from None
    except Problem as exc:
        log.warning("finished rollout not read whole", rollout=f"{namespace}/{name}",
                    detail=exc.detail[:200])
        raise dataclasses.replace(
            exc, detail=f"rollout {namespace}/{name}: {exc.detail} (a finished rollout's "
            "checks and history are read from Kubernetes; its summary is in the list)"
        ) from None


async def lookup(request: web.Request, namespace: str, name: str) -> dict[str, Any]:
    """The whole rollout: from the cache; on a miss (the watch may lag a fresh create), or
    a finished rollout the cache keeps only the summary of, from Kubernetes."""
    cache = request.app[STATE].deps.cache
    key = f"{namespace}/{name}"
    obj = cache.get(key)
    if obj is None or not cache.whole(key):
        obj = await whole(request, namespace, name)
    if obj is None:
        raise problems.not_found(namespace, name)
    return obj


# ---------------------------------------------------------------------------- submit


def _replay(obj: dict[str, Any], admitted: admission.Admitted) -> web.Response:
    if not admission.same_request(obj, admitted):
        raise Problem(422, "Idempotency-Key reused",
                      f"this Idempotency-Key already created {location(obj)} from a different "
                      "request; use a new key for a new request")
    return _json(view(obj), 201, {"Location": location(obj), "Idempotent-Replayed": "true"})


def _dry_run(request: web.Request) -> bool:
    value = request.query.get("dryRun")
    if value is None:
        return False
    if value != "All":
        raise problems.bad_parameter("dryRun", "'All' (validate everything, create nothing)")
    return True


def _warnings(admitted: admission.Admitted) -> dict[str, str]:
    """Deprecated fields in use, as HTTP Warning headers (RFC 9111; Kubernetes does the same)."""
    texts = admitted.spec.deprecations()
    if not texts:
        return {}
    return {"Warning": ", ".join('299 canaryd "' + t.replace('"', "'") + '"' for t in texts)}


@requires(Role.SUBMIT)
async def create(request: web.Request) -> web.Response:
    state = request.app[STATE]
    dry_run = _dry_run(request)
    key = admission.check_idempotency_key(request.headers.get("Idempotency-Key"))
    if dry_run:
        key = None  # nothing is created, so there is nothing to replay or to remember
    doc = await body.read_document(request, state.guard.decode,
                                   within=state.guard.limits.body_timeout)
    admitted = admission.validate(doc, state.deps.settings())
    in_scope(request, admitted.namespace)
    unreadable = await state.deps.writer.hook_secrets(admitted.spec, admitted.namespace,
                                                      state.deps.settings())
    if unreadable:
        raise problems.invalid(unreadable)
    if admitted.spec.supersede:
        require(request, Role.OPERATE, "spec.supersede (rolling back a running rollout)")
    unanalysed = plan.unanalysed_promotion(admitted.spec)
    if unanalysed is not None and not admitted.analysis.allow_unanalysed_promotion:
        require(request, Role.OPERATE,
                f"{unanalysed} (promoting without analysis; or use a profile with "
                "allowUnanalysedPromotion)")
    cache = state.deps.cache
    if key is not None:
        earlier = admission.find_idempotent(cache.values(), admitted.namespace, key)
        if earlier is not None and not cache.whole(reading.key(earlier)):
            meta = earlier["metadata"]
            earlier = await whole(request, meta["namespace"], meta["name"])
        if earlier is not None:
            return _replay(earlier, admitted)
    busy = admission.blocking([reading.entry(o, cache.read(o)) for o in cache.values()],
                              admitted)
    if busy is not None:
        raise Problem(409, "Target busy",
                      f"rollout {busy.holder} is active on {busy.shared} in namespace "
                      f"{admitted.namespace}; wait for it, abort it, or submit with "
                      "spec.supersede: true",
                      extra={"conflictsWith": busy.holder, "shared": busy.shared})
    resource = admission.resource(admitted, idempotency_key=key)
    try:
        created = await state.deps.writer.create(resource, dry_run=dry_run)
    except AlreadyExists:
        name = resource["metadata"]["name"]
        existing = await state.deps.writer.get(admitted.namespace, name)
        if existing is not None and key is not None and (
            (existing["metadata"].get("annotations") or {}).get(
                admission.IDEMPOTENCY_ANNOTATION) == key
        ):
            return _replay(existing, admitted)
        raise Problem(409, "Already exists",
                      f"a rollout {admitted.namespace}/{name} already exists",
                      extra={"conflictsWith": f"{admitted.namespace}/{name}"}) from None
    rollout = f"{admitted.namespace}/{created['metadata']['name']}"
    if dry_run:
        log.info("rollout validated (dry run, nothing created)", rollout=rollout)
        return _json(view(created), 200, _warnings(admitted))
    log.info("rollout submitted", rollout=rollout, target=admitted.spec.target,
             version=admitted.spec.version)
    return _json(view(created), 201, {"Location": location(created), **_warnings(admitted)})


# ---------------------------------------------------------------------------- read


def _query_label(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        return check_label(value)
    except ValueError as exc:
        raise problems.bad_parameter(name, str(exc)) from None


# A page ends after a rollout key; the next page starts after it. The token is that key
# itself: any well-formed key is a valid position (nothing to decode, nothing to forge).
CONTINUE = re.compile(
    r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?$")
CONTINUE_PATTERN = CONTINUE.pattern


def _decode_continue(token: str) -> str:
    if not CONTINUE.match(token):
        raise problems.bad_parameter(
            "continue", "metadata.continue of a previous page (namespace/name)")
    return token


def _limit(request: web.Request) -> int:
    text = request.query.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    # ASCII digits only, and few of them: str.isdigit() accepts "²" and full-width digits,
    # which int() then refuses or reads.
    if not LIMIT_TEXT.match(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise problems.bad_parameter("limit", f"an integer from 1 to {MAX_LIMIT}")
    return int(text)


@requires(Role.READ)
async def list_rollouts(request: web.Request) -> web.Response:
    state = request.app[STATE]
    deps = state.deps
    namespace = _query_label(request, "namespace")
    if namespace is not None:
        in_scope(request, namespace)
    identity = request[IDENTITY]
    target = _query_label(request, "target")
    phase_text = request.query.get("phase")
    if phase_text is not None and phase_text not in {p.value for p in Phase}:
        raise problems.bad_parameter("phase", "one of " + ", ".join(p.value for p in Phase))
    limit = _limit(request)
    token = request.query.get("continue") or None
    after = _decode_continue(token) if token is not None else ""
    if not deps.synced.is_set():
        raise problems.unavailable("the rollout cache is not synced yet")
    keys = sorted(k for k in deps.cache if k > after)
    items: list[dict[str, Any]] = []
    more = None
    for key in keys:
        obj = deps.cache.get(key)
        if obj is None:
            continue
        meta, spec = obj["metadata"], obj.get("spec") or {}
        if namespace is not None and meta.get("namespace") != namespace:
            continue
        if not identity.may_act_in(str(meta.get("namespace"))):
            continue
        if target is not None and spec.get("target") != target:
            continue
        if phase_text is not None and deps.cache.read(obj).label != phase_text:
            continue
        if len(items) == limit:
            more = f"{items[-1]['metadata']['namespace']}/{items[-1]['metadata']['name']}"
            break
        items.append(view(obj))
    return _json({"items": items, "metadata": {"continue": more, "count": len(items)}})


@requires(Role.READ)
async def get(request: web.Request) -> web.Response:
    ns, name = path_names(request)
    return _json(view(await lookup(request, ns, name)))


@requires(Role.READ)
async def whoami(request: web.Request) -> web.Response:
    identity = require(request, Role.READ)
    return _json({"name": identity.name, "role": identity.role.label,
                  "namespaces": identity.scope})


# ---------------------------------------------------------------------------- actions


def action(name: str) -> Handler:
    """POST .../{name}: set the action annotation; the leading controller consumes it."""

    @requires(Role.OPERATE)
    async def act(request: web.Request) -> web.Response:
        ns, rollout = path_names(request)
        obj = await lookup(request, ns, rollout)
        read = request.app[STATE].deps.cache.read(obj)
        phase = read.phase
        if phase is None:
            raise Problem(409, "Action not applicable",
                          f"rollout {ns}/{rollout} has a status canaryd cannot read "
                          f"({read.problem[:300]}); fix or delete it first",
                          extra={"phase": read.label})
        if not transitions.accepts(name, phase):
            applies = ", ".join(sorted(p.value for p in ACTION_PHASES[name]))
            state_text = "has finished" if phase.terminal else "is"
            raise Problem(409, "Action not applicable",
                          f"rollout {ns}/{rollout} {state_text} {phase.value}; {name} applies "
                          f"to a rollout that is {applies}",
                          extra={"phase": phase.value})
        updated = await request.app[STATE].deps.writer.set_action(ns, rollout, name)
        log.info("rollout action requested", rollout=f"{ns}/{rollout}", action=name,
                 token_name=request[IDENTITY].name)
        return _json(view(updated), 202)

    act.__name__ = act.__qualname__ = name
    return act
