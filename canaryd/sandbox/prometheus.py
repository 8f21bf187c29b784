"""Run the real `prometheus` server as a child process for the sandbox and the tests.

canaryd's analysis is tested against Prometheus itself, not a fake: PromQL semantics (rate
windows, staleness, NaN on 0/0, empty results) are exactly what the analysis must survive.
`PrometheusServer` writes a scrape config for the given targets, starts the binary on a free
loopback port with its own temporary TSDB, and waits for `/-/ready`. It can SIGKILL and restart
the server on the same port and data (outage tests), and `stop()` leaves no process and no files.

Children must never outlive the test run: on Linux the child asks the kernel for SIGKILL when
its parent dies (PR_SET_PDEATHSIG). That signal follows the thread that forked, so start the
server from the thread that runs the event loop for the server's whole life (the normal case).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import aiohttp
import yaml

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_STDERR_TAIL_BYTES = 4000


class PrometheusError(RuntimeError):
    """Prometheus could not be started, or exited while it was expected to run."""


class PrometheusNotFoundError(PrometheusError):
    """The `prometheus` binary is not installed or not on PATH."""


def free_loopback_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str = "prometheus") -> str:
    """The binary's full path, or an error that says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise PrometheusNotFoundError(
            f"the Prometheus server binary {name!r} is not on PATH; install the "
            "Debian/Ubuntu package with `sudo apt-get install -y prometheus` "
            "(or run `make prometheus`)"
        )
    return path


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when this process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    # Load libc before forking: the child may only make async-signal-safe calls, and
    # loading a shared library after fork could deadlock on the loader's lock.
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would signal us.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class PrometheusServer:
    """One real Prometheus process scraping `targets` (host:port) as job "mesh"."""

    def __init__(
        self,
        targets: Sequence[str],
        *,
        metrics_path: str = "/metrics",
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        binary: str = "prometheus",
        workdir: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.targets = list(targets)
        self.metrics_path = metrics_path
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.binary = binary
        self.extra_args = list(extra_args)
        self._parent_dir = workdir
        self._dir: Path | None = None
        self._port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None

    # -- public state ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._port is None:
            raise PrometheusError("Prometheus has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def workdir(self) -> Path | None:
        """This server's own directory (config, log, TSDB); removed by `stop()`."""
        return self._dir

    @property
    def log_path(self) -> Path | None:
        return self._dir / "prometheus.log" if self._dir is not None else None

    # -- lifecycle --------------------------------------------------------------------------

    # `timeout` bounds the whole start, and the error it raises carries Prometheus' log;
    # an outer asyncio.timeout() could only cancel without saying why.
    async def start(self, timeout: float = 30) -> None:  # noqa: ASYNC109
        if self._proc is not None:
            raise PrometheusError("Prometheus is already started")
        self.binary = find_binary(self.binary)
        if self._parent_dir is not None:
            self._parent_dir.mkdir(parents=True, exist_ok=True)
        # Our own directory even inside a caller's workdir: stop() may then remove all of it.
        self._dir = Path(tempfile.mkdtemp(prefix="prometheus-", dir=self._parent_dir))
        (self._dir / "data").mkdir()
        self._write_config()
        try:
            # The port is only reserved once Prometheus binds it; another process can take
            # it in between, so a bind failure gets a second try with a new port.
            for attempt in range(3):
                self._port = free_loopback_port()
                try:
                    await self._spawn_and_wait(self._deadline(timeout))
                    return
                except PrometheusError as exc:
                    if "address already in use" not in str(exc) or attempt == 2:
                        raise
        except BaseException:
            await self.stop()
            raise

    async def restart(self, timeout: float = 30) -> None:  # noqa: ASYNC109 (as start)
        """Start again on the same port with the same data, after `kill()` or a stop."""
        if self._dir is None or self._port is None:
            raise PrometheusError("restart() needs a server that was started")
        await self._terminate()
        await self._spawn_and_wait(self._deadline(timeout))

    def kill(self) -> None:
        """SIGKILL the server (a crash, for outage tests); `restart()` brings it back."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    def freeze(self) -> None:
        """SIGSTOP the server: it keeps its connections but answers nothing (a stall, for
        tests of a slow Prometheus); `thaw()` lets it go on."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGSTOP)
            # Delivery is asynchronous: return once the kernel shows it stopped (Linux).
            stat = Path(f"/proc/{self._proc.pid}/stat")
            for _ in range(1000):
                with contextlib.suppress(OSError):
                    if stat.read_text().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                        return
                time.sleep(0.001)

    def thaw(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGCONT)

    async def stop(self, grace: float = 10) -> None:
        """SIGTERM, wait (SIGKILL after `grace` seconds), then delete config, log and TSDB."""
        await self._terminate(grace)
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def __aenter__(self) -> PrometheusServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- internals --------------------------------------------------------------------------

    def _write_config(self) -> None:
        assert self._dir is not None
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                # Prometheus rejects a timeout longer than the interval; the default is 10s.
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "scrape_configs": [
                {
                    "job_name": "mesh",
                    "metrics_path": self.metrics_path,
                    # The mesh exports workload labels; keep them instead of `exported_*`.
                    "honor_labels": True,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        (self._dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _argv(self) -> list[str]:
        assert self._dir is not None
        return [
            self.binary,
            f"--config.file={self._dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self._dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self._port}",
            "--web.enable-lifecycle",
            # Sandbox data is worth minutes; keep the TSDB small and quick to replay.
            "--storage.tsdb.retention.time=2h",
            *self.extra_args,
        ]

    @staticmethod
    def _deadline(timeout: float) -> float:
        return asyncio.get_running_loop().time() + timeout

    async def _spawn_and_wait(self, deadline: float) -> None:
        assert self.log_path is not None
        # A file, not a pipe: nobody reads Prometheus' log while it runs, and a full pipe
        # would block it. Appending keeps the log of a killed run for the error message.
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent(),
            )
        await self._wait_ready(deadline)

    async def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        client_timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            while True:
                if self._proc.returncode is not None:
                    raise PrometheusError(
                        f"prometheus exited with code {self._proc.returncode} before it was "
                        f"ready:\n{self.stderr_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(f"{self.url}/-/ready") as resp:
                        if resp.status == 200:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    await self._terminate()
                    raise PrometheusError(
                        f"prometheus was not ready in time at {self.url}:\n{self.stderr_tail()}"
                    )
                await asyncio.sleep(0.1)

    async def _terminate(self, grace: float = 10) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a frozen server could not act on SIGTERM
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        else:
            await proc.wait()

    def stderr_tail(self) -> str:
        """The end of Prometheus' log: what to show when it fails."""
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - _STDERR_TAIL_BYTES))
            return log.read().decode("utf-8", "replace")
