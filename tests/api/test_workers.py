"""The decode worker processes (`canaryd.api.workers`) and the Decoder's use of them: real
worker processes, a really stuck one killed at its deadline, a really dead one replaced."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import pickle
from pathlib import Path

import pytest

from canaryd.api import documents
from canaryd.api.body import Decoder
from canaryd.api.problems import Problem
from canaryd.api.workers import WorkerLost, Workers, WorkerTimeout
from canaryd.sandbox.testing import eventually


def _pids(workers: Workers) -> set[int]:
    return {w.proc.pid for w in workers._all if w.alive}


async def test_a_document_is_decoded_in_a_worker_process() -> None:
    workers = Workers(1, documents.__name__, documents.load_answer)
    try:
        assert workers.started == 0
        answer = await workers.call("application/yaml", b"a: [1, 2]\nday: 2026-12-02\n",
                                    deadline=5)
        assert answer == (True, {"a": [1, 2], "day": datetime.date(2026, 12, 2)})
        assert workers.started == 1 and os.getpid() not in _pids(workers)
    finally:
        await workers.aclose()
    assert workers.started == 0
    with pytest.raises(WorkerLost):
        await workers.call("application/json", b"{}", deadline=5)


async def test_a_call_past_its_deadline_kills_only_its_worker() -> None:
    workers = Workers(2, "tests.api.slow_worker", documents.load_answer)
    try:
        # Two workers started and answering (no start-up allowance left for either).
        assert await asyncio.gather(workers.call("a", b"", deadline=10),
                                    workers.call("b", b"", deadline=10)) == \
            [(True, {"served": "a"}), (True, {"served": "b"})]
        both = _pids(workers)
        assert len(both) == 2
        with pytest.raises(WorkerTimeout):
            await workers.call("stall", b"", deadline=0.5)
        assert workers.restarts == 1
        (left,) = _pids(workers)  # the other one is untouched and serves the next call
        assert left in both
        (stuck,) = both - {left}

        async def gone() -> bool:  # killed and reaped
            return not Path(f"/proc/{stuck}").exists()

        await eventually(gone, timeout=10, what=f"the stuck worker {stuck} killed")
        assert await workers.call("c", b"", deadline=10) == (True, {"served": "c"})
        assert _pids(workers) == {left}
    finally:
        await workers.aclose()


async def test_a_dead_worker_is_replaced() -> None:
    workers = Workers(1, documents.__name__, documents.load_answer)
    try:
        await workers.call("application/json", b"{}", deadline=10)
        (dead,) = list(workers._all)
        dead.proc.kill()
        await dead.proc.wait()
        assert await workers.call("application/json", b'{"b": 2}', deadline=10) == \
            (True, {"b": 2})
        assert dead.proc.pid not in _pids(workers) and workers.started == 1
    finally:
        await workers.aclose()


def test_an_answer_holds_only_what_a_yaml_safe_load_makes() -> None:
    assert documents.load_answer(pickle.dumps((True, {"s": {1, 2}}))) == (True, {"s": {1, 2}})
    with pytest.raises(pickle.UnpicklingError, match="is not a document value"):
        documents.load_answer(pickle.dumps((True, os.system)))


def _manifest(padding: int) -> bytes:
    return json.dumps({"apiVersion": "canaryd.io/v1alpha1", "kind": "Rollout",
                       "metadata": {"name": "big", "annotations": {"note": "x" * padding}},
                       "spec": {"target": "podinfo"}}).encode()


async def test_the_decoder_sends_only_large_documents_to_a_process() -> None:
    decoder = Decoder(process_above=16 * 1024)
    try:
        small = await decoder(_manifest(100), "application/json")
        assert small["metadata"]["name"] == "big" and decoder.workers.started == 0
        large = await decoder(_manifest(100_000), "application/json")
        assert len(large["metadata"]["annotations"]["note"]) == 100_000
        assert decoder.workers.started == 1
    finally:
        await decoder.aclose()


@pytest.mark.parametrize("content_type,body", [
    ("application/yaml", b"spec: [" + b",".join([b"1"] * 12_000) + b"]"),
    ("application/json", b"[" * 9_000 + b"]" * 9_000),
    ("application/json", b"[" + b"1," * 9_000 + b"1]"),
    ("application/yaml", b"a: &x 1\nb: *x\n" + b"#" * 20_000),
])
async def test_a_refusal_from_a_worker_is_the_refusal_a_thread_gives(
    content_type: str, body: bytes,
) -> None:
    answers = []
    for process_above in (len(body) + 1, 1):  # a thread, then a process
        decoder = Decoder(process_above=process_above)
        try:
            with pytest.raises(Problem) as refused:
                await decoder(body, content_type)
            assert decoder.workers.started == (1 if process_above == 1 else 0)
            answers.append(refused.value)
        finally:
            await decoder.aclose()
    thread, process = answers
    assert (process.status, process.title, process.detail, tuple(process.errors)) == \
        (thread.status, thread.title, thread.detail, tuple(thread.errors))
    assert process.status in (400, 413, 422)


async def test_large_documents_do_not_hold_up_small_ones() -> None:
    decoder = Decoder(process_above=16 * 1024)
    # Workers that never answer a "stall" request: both large-document slots stay taken.
    decoder.workers = Workers(2, "tests.api.slow_worker", documents.load_answer)
    try:
        large = [asyncio.ensure_future(decoder(b"x" * 20_000, "stall")) for _ in range(3)]
        small = await decoder(_manifest(100), "application/json")
        assert small["metadata"]["name"] == "big"
        assert not any(task.done() for task in large)  # still held by the stuck workers
        refused = await asyncio.gather(*large, return_exceptions=True)
        # Two ran past the deadline in a worker (413), the third waited past it for a slot
        # (503): the line for large documents is bounded, the small line untouched.
        assert sorted(p.status for p in refused if isinstance(p, Problem)) == [413, 413, 503]
    finally:
        await decoder.aclose()
