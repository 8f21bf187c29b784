"""Analysis runs for many rollouts at once, with coalesced queries.

The queries come from the pure plan (`canaryd.core.queryplan`): one per template, part and
window, whatever the number of rollouts. They are asked concurrently, each evaluated at the
round's time (Prometheus' `time=`), and the answers judged by the same pure code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from canaryd.adapters.prometheus import PrometheusClient, QueryError
from canaryd.core import queryplan
from canaryd.core.model import CheckResult
from canaryd.core.queryplan import Answer, Job
from canaryd.core.settings import Settings

__all__ = ["Analyzer", "Job"]


class Analyzer:
    def __init__(self, *, prometheus: PrometheusClient, settings: Settings) -> None:
        self.prometheus = prometheus
        self.settings = settings
        self.queries_last_round = 0

    async def _ask(self, query: str, at: datetime) -> Answer:
        try:
            return await self.prometheus.query(query, at=at)
        except QueryError as exc:
            return str(exc)

    async def run(self, jobs: Sequence[Job], now: datetime) -> dict[str, tuple[CheckResult, ...]]:
        """Analyse every job as of `now`: each query is evaluated at exactly that time, so a
        window is the one the results are stamped with, however long the answers take."""
        plan = queryplan.plan(jobs, self.settings)
        texts = [q.text for q in plan.queries]
        answers = await asyncio.gather(*(self._ask(text, now) for text in texts))
        self.queries_last_round = len(texts)
        return queryplan.verdicts(plan, dict(zip(texts, answers, strict=True)), now)
