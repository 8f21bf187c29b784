"""Worker processes for the request work heavy enough to stall the event loop.

Decoding a large YAML document is CPU work in C (libyaml) and in Python (the event scan and
the node constructors). In a thread it still holds the interpreter lock for most of its
19-28 ms, and every other request on the loop waits for it: under 200 bad requests a second
a plain GET's p99 went to 7x its unloaded value. In a process it costs the loop only the
transfer of at most MAX_BODY bytes out and the decoded document back (pickled, and read
with an unpickler that accepts only the types a YAML safe load makes).

Each worker is `python -m canaryd.api.documents`, a small program that imports json and
yaml only (not multiprocessing, whose children re-import the parent's main module: all of
the CLI for the `canaryd` script). It reads framed requests on stdin and answers each on
stdout (`canaryd.api.documents.serve`).

- A worker starts on first use (a daemon never sent a large document starts none); there
  are at most `size`, each serving one call at a time.
- `run` waits at most `deadline` seconds for the answer (plus a start-up allowance for a
  worker that has not answered yet). Past it, that worker is killed, and a fresh one starts
  on a later call; the other calls are not touched. A worker that dies answers `WorkerLost`.
  Bounded work finishes in milliseconds: this is the last line of defence, not a path taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import struct
import sys
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("canaryd.api")
STARTUP_ALLOWANCE = 10.0  # seconds a new worker may take to answer its first call
_FRAME = struct.Struct(">I")  # a frame: its length, big-endian, then that many bytes


class WorkerLost(Exception):
    """The worker died or could not be started."""


class WorkerTimeout(Exception):
    """The call ran past its deadline; its worker was killed."""


def frame(data: bytes) -> bytes:
    return _FRAME.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _FRAME.unpack(await reader.readexactly(_FRAME.size))
    return await reader.readexactly(size)


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.answered = False

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


class Workers:
    """At most `size` worker processes running `python -m <module>`; `call` sends one
    request (a content type and a body) and returns the worker's answer, read by `load`."""

    def __init__(self, size: int, module: str, load: Callable[[bytes], Any]) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one process")
        self.size, self.module, self.load = size, module, load
        self._reaping: set[asyncio.Task[None]] = set()
        self.restarts = 0  # workers killed after a call ran past its deadline
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    @property
    def started(self) -> int:
        """Worker processes alive now."""
        return sum(1 for w in self._all if w.alive)

    async def _start(self) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=None)
        worker = _Worker(proc)
        self._all.add(worker)
        log.info("decode worker started", pid=proc.pid)
        return worker

    async def call(self, content_type: str, body: bytes, *, deadline: float) -> Any:
        if self._closed:
            raise WorkerLost("the workers are closed")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            while self._idle and not self._idle[-1].alive:
                self._all.discard(self._idle.pop())
            try:
                worker = self._idle.pop() if self._idle else await self._start()
            except OSError as exc:
                raise WorkerLost(f"could not start a worker: {exc}") from None
            allowance = 0.0 if worker.answered else STARTUP_ALLOWANCE
            assert worker.proc.stdin is not None and worker.proc.stdout is not None
            try:
                async with asyncio.timeout(deadline + allowance):
                    worker.proc.stdin.write(frame(content_type.encode()) + frame(body))
                    await worker.proc.stdin.drain()
                    answer = self.load(await read_frame(worker.proc.stdout))
            except TimeoutError:
                self.restarts += 1
                log.warning("decode worker ran past its deadline; killed", pid=worker.proc.pid,
                            deadline_s=deadline)
                self._retire(worker)
                raise WorkerTimeout(f"no answer within {deadline:g}s") from None
            except (OSError, asyncio.IncompleteReadError, pickle.UnpicklingError) as exc:
                log.warning("decode worker lost", pid=worker.proc.pid, error=type(exc).__name__)
                self._retire(worker)
                raise WorkerLost(f"the worker died: {type(exc).__name__}") from None
            except BaseException:  # cancelled mid-call: its answer would go to the next one
                self._retire(worker)
                raise
            worker.answered = True
            self._idle.append(worker)
            return answer

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        self._all.discard(worker)
        task = asyncio.get_running_loop().create_task(_reap(worker))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def aclose(self) -> None:
        self._closed = True
        workers, self._all, self._idle = list(self._all), set(), []
        for worker in workers:
            if worker.proc.stdin is not None:
                worker.proc.stdin.close()  # it exits at the end of its input
        for worker in workers:
            try:
                await asyncio.wait_for(worker.proc.wait(), 2.0)
            except TimeoutError:
                worker.kill()
                await _reap(worker)


async def _reap(worker: _Worker) -> None:
    with contextlib.suppress(ProcessLookupError, TimeoutError):
        await asyncio.wait_for(worker.proc.wait(), 5.0)
