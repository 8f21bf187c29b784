"""`canaryd backtest`: replay a profile's analysis over Prometheus history.

    canaryd backtest --rollout NS/NAME [--profile NAME] [--compare OTHER] [-o json]
    canaryd backtest --target NS/WORKLOAD --stable WORKLOAD --from T [--to T]
                     [--plan FILE] [--profile NAME] [--compare OTHER] [--config FILE]

Would this profile have caught last Tuesday's bad release; would it have rolled back any of
last week's good ones? The replay asks Prometheus the daemon's own coalesced queries
(`canaryd.core.queryplan`), one range query each at the profile's interval, and runs the
same verdicts and state machine on a virtual clock (`canaryd.core.replay`). It prints,
interval by interval, what each check would have said, and the verdict with its time.

`--rollout` replays a rollout's own timeline (from its first step to its end, with its plan,
profile and overrides; the rollout is read through canaryd's API). `--target` replays any
window: with `--plan` (a plan, or a Rollout manifest whose plan is used) the weights follow
the plan; without, one step spans the window and the canary's share is the measured one.
Times: RFC 3339 (2026-12-01T22:40:00Z), unix seconds, `now`, or `now-30m`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from canaryd.adapters.prometheus import PrometheusClient, QueryError
from canaryd.client import cli, errors, render
from canaryd.commands.lint import config_path
from canaryd.config import load_settings
from canaryd.core import machine, replay
from canaryd.core.durations import parse_duration
from canaryd.core.model import RolloutSpec
from canaryd.core.plan import EffectiveAnalysis, PlanError, resolve_analysis, steps
from canaryd.core.settings import ConfigError, Settings

MAX_POINTS = 11_000  # Prometheus' limit per series of a range query
MAX_FETCHES = 200  # range queries per query text in one replay: one per analysed step


class BacktestError(Exception):
    """Bad input: the message names the flag or field."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "backtest", help="replay a profile's analysis over Prometheus history",
        description=__doc__.split("\n\n")[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_argument_group("what to replay (--rollout, or --target with --stable)")
    what.add_argument("--rollout", metavar="NAMESPACE/NAME",
                      help="a rollout's own timeline, plan and analysis (read via the API)")
    what.add_argument("--target", metavar="NAMESPACE/WORKLOAD", help="the canary workload")
    what.add_argument("--stable", metavar="WORKLOAD", help="the stable workload beside it")
    what.add_argument("--from", dest="start", metavar="TIME", help="start of the window")
    what.add_argument("--to", dest="end", metavar="TIME",
                      help="end of the window (default: now, or the rollout's end)")
    what.add_argument("--plan", type=Path, metavar="FILE",
                      help="the plan the weights followed (a plan, or a Rollout manifest)")
    what.add_argument("--interval", type=cli.duration, metavar="DURATION",
                      help="with --target: the analysis interval (default: the profile's)")
    how = p.add_argument_group("how to judge")
    how.add_argument("--profile", metavar="NAME",
                     help="the profile to replay (default: the rollout's, else 'default')")
    how.add_argument("--compare", metavar="OTHER_PROFILE",
                     help="replay this profile too, side by side on the same history")
    how.add_argument("--config", type=Path, default=None,
                     help="canaryd config holding the profiles (default: env CANARYD_CONFIG, "
                          "else config/canaryd.yaml, else the packaged one)")
    how.add_argument("--prometheus-url", default=None,
                     help="Prometheus to ask (default: the config's prometheus.url)")
    cli.add_output(p)
    cli.add_connection(p)
    p.set_defaults(handler=lambda args: cli.run(lambda: backtest(args)))


def parse_time(text: str, flag: str, now: datetime) -> datetime:
    text = text.strip()
    try:
        if text == "now":
            return now
        if text.startswith("now-"):
            return now - timedelta(seconds=parse_duration(text[4:]))
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BacktestError(f"{flag}: {text!r} is not a time (RFC 3339, unix seconds, now, "
                            f"now-30m): {exc}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _spec_errors(exc: ValidationError, flags: dict[str, str]) -> str:
    parts = []
    for err in exc.errors()[:5]:
        path = ".".join(str(p) for p in err["loc"])
        parts.append(f"{flags.get(path, path)}: {err['msg']}")
    return "; ".join(parts)


def _plan_document(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BacktestError(f"--plan: cannot read {path}: {exc}") from None
    if isinstance(doc, dict) and doc.get("kind") == "Rollout":
        doc = (doc.get("spec") or {}).get("plan")
    if not isinstance(doc, dict):
        raise BacktestError(f"--plan: {path} holds no plan (steps or stepWeight)")
    return doc


def target_spec(args: argparse.Namespace, profile: str) -> tuple[str, RolloutSpec]:
    """A stand-in Rollout for `--target`: the models validate the names and the plan."""
    ns, sep, canary = str(args.target).rpartition("/")
    if not sep or not ns:
        raise BacktestError("--target: give NAMESPACE/WORKLOAD")
    if not args.stable:
        raise BacktestError("--stable: required with --target")
    body = {
        "target": canary, "version": "backtest",
        "router": {"istio": {"virtualService": "backtest",
                             "stable": {"host": "backtest", "subset": "stable"},
                             "canary": {"host": "backtest", "subset": "canary"}}},
        "workloads": {"stable": args.stable, "canary": canary},
        "plan": _plan_document(args.plan) if args.plan else {"steps": [{"weight": 50}]},
        "analysis": {"profile": profile,
                     **({"interval": args.interval} if args.interval else {})},
    }
    try:
        spec = RolloutSpec.model_validate(body)
    except ValidationError as exc:
        raise BacktestError(_spec_errors(exc, {
            "workloads.canary": "--target", "workloads.stable": "--stable",
            "target": "--target"})) from None
    if canary == args.stable:
        raise BacktestError("--stable: must differ from the --target workload")
    return ns, spec


def _with_profile(spec: RolloutSpec, profile: str | None) -> RolloutSpec:
    if profile is None or profile == spec.analysis.profile:
        return spec
    # Another profile: the rollout's own threshold overrides were written for its profile.
    return spec.model_copy(update={"analysis": spec.analysis.model_copy(
        update={"profile": profile, "thresholds": {}})})


async def _fetch(prometheus: PrometheusClient, texts: tuple[str, ...], start: datetime,
                 end: datetime, interval: float) -> replay.Ranges:
    async def one(text: str) -> Any:
        try:
            return await prometheus.query_range(text, start=start, end=end, step=interval)
        except QueryError as exc:
            return str(exc)

    results = await asyncio.gather(*(one(t) for t in texts))
    return dict(zip(texts, results, strict=True))


async def _replay(prometheus: PrometheusClient, settings: Settings, analysis: EffectiveAnalysis,
                  plan_steps: tuple[Any, ...] | None, target: replay.Target, start: datetime,
                  end: datetime, name: str) -> replay.Replay:
    """Replay, fetching the answers where the replay stops for them: one range query per
    query from there to the end at the interval (the rest of that step's runs), once per
    analysed step (each starts off the previous grid)."""
    texts = replay.queries(settings, analysis, target)
    fetched = replay.Fetched()
    for _ in range(MAX_FETCHES):
        result = replay.replay(settings, analysis, plan_steps, target, start, end, fetched,
                               name=name)
        if result.missing is None:
            return result
        fetched.add(result.missing, analysis.interval, end, await _fetch(
            prometheus, texts, result.missing, end, analysis.interval))
    raise BacktestError(f"--from/--to: the replay needed more than {MAX_FETCHES} range "
                        "queries per query (one per analysed step); shorten the window")


def _clock(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%H:%M:%S")


def _verdict_line(r: replay.Replay) -> str:
    if r.decided_at is None:
        return (f"verdict ({r.profile}): no rollback and no promotion decided by "
                f"{_clock(r.end)} (still {r.phase.value}): {r.reason}")
    intervals = len(r.runs)
    return (f"verdict ({r.profile}): {r.phase.value}, decided at {_clock(r.decided_at)} "
            f"after {intervals} interval{'s' if intervals != 1 else ''}: {r.reason}")


def text_lines(replays: list[replay.Replay], live: dict[str, Any] | None) -> list[str]:
    first = replays[0]
    lines = [f"backtest {first.start.astimezone(UTC).isoformat()} .. "
             f"{first.end.astimezone(UTC).isoformat()}, every {first.interval:g}s; profiles: "
             f"{', '.join(r.profile for r in replays)}"]
    times = sorted({run.time for r in replays for run in r.runs})
    for t in times:
        for r in replays:
            run = next((x for x in r.runs if x.time == t), None)
            if run is None:
                continue
            tag = f" [{r.profile}]" if len(replays) > 1 else ""
            lines.append(f"{_clock(t)}{tag} step {run.step + 1}, canary {run.weight}%: "
                         f"{run.verdict.value}")
            lines.extend(f"    {render.check_line(c.wire())}" for c in run.results)
            lines.extend(f"    -> {tr.target.value}: {tr.message}" for tr in run.transitions
                         if tr.target is not tr.source)
    lines.extend(_verdict_line(r) for r in replays)
    if live is not None:
        lines.append(f"live: {live.get('phase')}"
                     + (f", decided at {_clock(live['decidedAt'])}" if live.get("decidedAt")
                        else "") + f": {live.get('reason', '')}")
    return lines


def as_json(replays: list[replay.Replay], live: dict[str, Any] | None) -> dict[str, Any]:
    def one(r: replay.Replay) -> dict[str, Any]:
        return {
            "profile": r.profile, "interval": r.interval,
            "phase": r.phase.value, "reason": r.reason,
            "decidedAt": r.decided_at.isoformat() if r.decided_at else None,
            "intervals": [{"time": run.time.isoformat(), "stepIndex": run.step,
                           "weight": run.weight, "verdict": run.verdict.value,
                           "checks": [c.model_copy(update={"evidence": None}).wire()
                                      for c in run.results],
                           "transitions": [{"source": tr.source.value,
                                            "phase": tr.target.value,
                                            "trigger": tr.trigger.value,
                                            "reason": tr.message}
                                           for tr in run.transitions]}
                          for run in r.runs],
        }

    first = replays[0]
    out: dict[str, Any] = {"start": first.start.isoformat(), "end": first.end.isoformat(),
                           "replays": [one(r) for r in replays]}
    if live is not None:
        out["live"] = {**live, "decidedAt": live["decidedAt"].isoformat()
                       if live.get("decidedAt") else None}
    return out


def _live(status: dict[str, Any]) -> dict[str, Any]:
    """What the daemon decided: the phase, and when it started rolling back or promoting."""
    decided = None
    for h in status.get("history") or []:
        if h.get("phase") in ("RollingBack", "Promoting", "Paused", "Failed"):
            decided = datetime.fromisoformat(str(h["time"]).replace("Z", "+00:00"))
            break
    return {"phase": status.get("phase"), "reason": status.get("reason", ""),
            "decidedAt": decided}


async def backtest(args: argparse.Namespace) -> int:
    try:
        return await _backtest(args)
    except BacktestError as exc:
        print(f"canaryd backtest: {exc}", file=sys.stderr)
        return errors.USAGE


async def _backtest(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    path = config_path(args.config)
    try:
        settings: Settings = load_settings(path)
    except FileNotFoundError:
        raise BacktestError(f"--config: {path}: no such file") from None
    except ConfigError as exc:
        raise BacktestError(f"--config: {exc}") from None
    if bool(args.rollout) == bool(args.target):
        raise BacktestError("give --rollout NAMESPACE/NAME, or --target (with --stable and "
                            "--from)")
    live: dict[str, Any] | None = None
    end = parse_time(args.end, "--to", now) if args.end else None
    pad = False  # a finished rollout: replay one interval past its end (decisions may lag)
    if args.rollout:
        ns, sep, name = str(args.rollout).rpartition("/")
        if not sep or not ns:
            raise BacktestError("--rollout: give NAMESPACE/NAME")
        async with cli.client(args) as api:
            obj = await api.get(ns, name)
        try:
            spec = RolloutSpec.model_validate(obj.get("spec") or {})
        except ValidationError as exc:
            raise BacktestError(f"--rollout: its spec is not valid here: "
                                f"{_spec_errors(exc, {})}") from None
        status = obj.get("status") or {}
        history = status.get("history") or []
        started = next((h for h in history if h.get("trigger") == "CanaryReady"), None)
        if started is None:
            raise BacktestError(f"--rollout: {ns}/{name} never started a step")
        start = parse_time(args.start, "--from", now) if args.start else parse_time(
            str(started["time"]), "status.history", now)
        if end is None:
            finished = status.get("phase") in ("Succeeded", "RolledBack", "Failed", "Aborted")
            end = parse_time(str(history[-1]["time"]), "status.history", now) if finished \
                else now
            pad = finished
        live = _live(status)
        plan_steps: tuple[Any, ...] | None = steps(spec)
        names = [args.profile or spec.analysis.profile]
    else:
        if not args.start:
            raise BacktestError("--from: required with --target")
        start = parse_time(args.start, "--from", now)
        end = end or now
        names = [args.profile or "default"]
        ns, spec = target_spec(args, names[0])
        plan_steps = steps(spec) if args.plan else None
    if args.compare:
        names.append(args.compare)
        if spec.analysis.interval is None:  # both on the first one's grid, when it allows
            first = settings.profiles.get(names[0])
            if first is not None:
                spec = spec.model_copy(update={"analysis": spec.analysis.model_copy(
                    update={"interval": first.interval})})
    target = replay.Target(ns, spec.workloads.canary, spec.workloads.stable)
    prom = settings.prometheus
    prometheus = PrometheusClient(args.prometheus_url or prom.url, timeout=prom.timeout,
                                  retries=prom.retries)
    replays = []
    for profile in names:
        try:
            analysis = resolve_analysis(settings, _with_profile(spec, profile))
        except PlanError as exc:
            raise BacktestError(f"--profile {profile}: {exc}") from None
        if pad:
            end = end + timedelta(seconds=analysis.interval)
            pad = False
        # Data newer than the query offset may still be arriving (the daemon waits as long).
        end = min(end, machine.evaluation_time(analysis, now))
        if end <= start + timedelta(seconds=analysis.interval):
            raise BacktestError(f"--to: the window must be longer than one interval "
                                f"({analysis.interval:g}s)")
        if (end - start).total_seconds() / analysis.interval > MAX_POINTS:
            raise BacktestError(f"--from/--to: more than {MAX_POINTS} intervals of "
                                f"{analysis.interval:g}s; shorten the window")
        replays.append(await _replay(prometheus, settings, analysis, plan_steps, target,
                                     start, end, name=f"{ns}/{target.canary}"))
    if args.output == "json":
        print(json.dumps(as_json(replays, live), indent=2))
    else:
        print("\n".join(text_lines(replays, live)))
    return errors.SUCCEEDED
