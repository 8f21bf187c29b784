"""One Job hook run: create its Job (or adopt the one a previous daemon created), poll it
until it completes or fails, and report what it said. The machine times the run out
(`canaryd.core.hooks.absorb`); the runner then cancels this and deletes the Job.

Never twice: the Job's name is the run's (`core.hookspec.job_name`), so a second create
answers 409 and the Job found is adopted once checked to be this run's; and a run recorded
in status as created (`asks` >= 1) whose Job is gone is a failure, not a new Job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from canaryd.adapters.errors import Conflict, KubeError, NotFound, Unavailable
from canaryd.adapters.jobs import Jobs
from canaryd.core.hookspec import HookRun
from canaryd.core.jobhooks import not_ours, outcome

log = structlog.get_logger("canaryd.hooks")
POLL = 1.0  # seconds between reads of a running Job
Report = Callable[[str, str, int], None]  # outcome, reason, asks


async def _create_or_adopt(jobs: Jobs, body: Mapping[str, Any], run: HookRun,
                           report: Report) -> bool:
    """Whether the run's Job is there and this run's (else a failure was reported)."""
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["ownerReferences"][0]["uid"]
    while True:
        try:
            if run.asks >= 1:  # created by an earlier daemon: find it, never make another
                found = await jobs.get(ns, name)
                how = "found again"
            else:
                try:
                    await jobs.create(dict(body))
                    log.info("job hook created", job=f"{ns}/{name}", hook=run.id)
                    report("Running", f"Job {name} created", 1)
                    return True
                except Conflict as exc:
                    if not exc.already_exists:
                        raise
                except NotFound as exc:  # the namespace is gone
                    report("Failed", f"Job {name} could not be created: {str(exc)[:400]}", 0)
                    return False
                found = await jobs.get(ns, name)
                how = "adopted"
        except NotFound:
            report("Failed", f"Job {name} is gone before its outcome was read (deleted by "
                   "someone else); it is not created again", 1)
            return False
        except Unavailable as exc:
            log.warning("job hook: API server unavailable, trying again", job=f"{ns}/{name}",
                        error=str(exc)[:300])
            await asyncio.sleep(POLL)
            continue
        except KubeError as exc:  # refused: invalid template, forbidden, ...
            report("Failed", f"Job {name} could not be created: {str(exc)[:400]}", 0)
            return False
        why = not_ours(found, uid, run.id)
        if why is not None:
            report("Failed", f"a Job named {name} exists and is not this hook's: {why}", 0)
            return False
        log.info("job hook adopted", job=f"{ns}/{name}", hook=run.id, how=how)
        report("Running", f"Job {name} {how}", 1)
        return True


async def run_job(jobs: Jobs, body: Mapping[str, Any], run: HookRun, report: Report,
                  poll: float = POLL) -> None:
    """Create or adopt the Job `body` for `run`, then report its outcome once it has one."""
    if not await _create_or_adopt(jobs, body, run, report):
        return
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    while True:
        await asyncio.sleep(poll)
        try:
            job = await jobs.get(ns, name)
        except NotFound:
            report("Failed", f"Job {name} was deleted before it finished", 1)
            return
        except KubeError as exc:
            log.warning("job hook: cannot read the Job, trying again", job=f"{ns}/{name}",
                        error=str(exc)[:300])
            continue
        got = outcome(job)
        if got is not None:
            log.info("job hook finished", job=f"{ns}/{name}", hook=run.id, outcome=got[0],
                     reason=got[1])
            report(got[0], got[1], 1)
            return
