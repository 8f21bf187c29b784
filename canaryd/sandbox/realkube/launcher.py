"""Start and stop a real control plane on loopback: etcd, kube-apiserver, controller-manager,
scheduler and kwok (fake Nodes, so Deployments get Pods that become Ready without a kubelet).

What envtest and kwokctl do, in one async context manager. etcd keeps its data on tmpfs with
fsync off; kube-apiserver serves with a certificate from a CA generated at start, authorizes
with RBAC, knows one static admin token (group system:masters) for the harness, and signs
ServiceAccount tokens with a key pair generated at start. Children get SIGKILL if this
process dies (PR_SET_PDEATHSIG); `stop()` terminates them newest first and removes every file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import structlog
import yaml

from canaryd.sandbox.prometheus import _die_with_parent, free_loopback_port
from canaryd.sandbox.realkube.binaries import Binaries, find_binaries
from canaryd.sandbox.realkube.stages import stage_files

log = structlog.get_logger("canaryd.realkube")

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"  # fake pod IPs; the endpoints controller refuses loopback ones
_TAIL = 3000
_TMPFS = "/dev/shm"  # noqa: S108 (only as mkdtemp's parent)


class RealKubeError(RuntimeError):
    """The control plane could not be started, or a part of it exited."""


@dataclass
class _Proc:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def tail(self) -> str:
        try:
            return self.log_path.read_bytes()[-_TAIL:].decode(errors="replace")
        except OSError:
            return ""

    def rss_bytes(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return 0
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0


@dataclass
class Timings:
    """Seconds from `start()` until each part answered."""

    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return max(self.parts.values(), default=0.0)


def _private_workdir() -> Path:
    base = _TMPFS if os.path.isdir(_TMPFS) else None
    return Path(tempfile.mkdtemp(prefix="canaryd-kube-", dir=base))


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


class RealKube:
    """A running control plane; `kubeconfig` and `admin_token` are what clients use."""

    def __init__(
        self,
        *,
        binaries: Binaries | None = None,
        nodes: int = 3,
        workdir: Path | None = None,
        audit: bool = False,
    ) -> None:
        """`audit`: kube-apiserver writes an audit log (every request's user, verb, object
        and response code at Metadata level), read back with `audit_events()`."""
        self.binaries = binaries
        self.node_count = nodes
        self.audit = audit
        self._given_workdir = workdir
        self.workdir: Path | None = None
        self.admin_token = secrets.token_hex(16)
        self.ports: dict[str, int] = {}
        self.timings = Timings()
        self._procs: dict[str, _Proc] = {}

    # -- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['etcd']}"

    @property
    def kubeconfig(self) -> Path:
        return self._dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self._dir / "pki" / "ca.crt"

    @property
    def _dir(self) -> Path:
        if self.workdir is None:
            raise RealKubeError("the control plane is not started")
        return self.workdir

    @property
    def audit_log(self) -> Path:
        return self._dir / "logs" / "audit.log"

    def audit_events(self, user: str | None = None) -> list[dict[str, Any]]:
        """The audit log's ResponseComplete events, optionally of one user."""
        events = []
        with contextlib.suppress(FileNotFoundError), self.audit_log.open() as lines:
            for line in lines:
                event = json.loads(line)
                if event.get("stage") != "ResponseComplete":
                    continue
                if user is None or event.get("user", {}).get("username") == user:
                    events.append(event)
        return events

    def memory(self) -> dict[str, int]:
        """Resident bytes per running component."""
        return {name: proc.rss_bytes() for name, proc in self._procs.items()}

    def log_tails(self) -> dict[str, str]:
        """The end of each component's log, headed by its exit code if it has exited."""
        out = {}
        for name, proc in self._procs.items():
            code = proc.process.poll() if proc.process is not None else None
            out[name] = (f"[exited: {code}]\n" if code is not None else "") + proc.tail()[-2000:]
        return out

    # -- lifecycle -----------------------------------------------------------------------

    # The timeout bounds the whole start (every part's wait shares one deadline).
    async def start(self, timeout: float = 120) -> None:  # noqa: ASYNC109
        try:
            await self._start(timeout)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, budget: float) -> None:
        if self.binaries is None:
            self.binaries = find_binaries()
        if self._given_workdir is None:
            # tmpfs for etcd's data; mkdtemp makes a private (0700) directory there.
            self.workdir = await asyncio.to_thread(_private_workdir)
        else:
            self.workdir = self._given_workdir
            self.workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        await asyncio.to_thread(self._write_pki)
        for name in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok", "kwok-metrics"):
            self.ports[name] = free_loopback_port()
        self._write_kubeconfigs()
        deadline = time.monotonic() + budget

        self._spawn("etcd", self._etcd_argv())
        await self._wait_http("etcd", f"{self.etcd_url}/health", deadline)
        self.timings.parts["etcd"] = time.monotonic() - t0

        self._spawn("kube-apiserver", self._apiserver_argv())
        await self._wait_http("kube-apiserver", f"{self.url}/readyz", deadline, auth=True)
        self.timings.parts["kube-apiserver"] = time.monotonic() - t0

        self._spawn("kube-controller-manager", self._kcm_argv())
        self._spawn("kube-scheduler", self._scheduler_argv())
        self._spawn("kwok", self._kwok_argv())
        await self._wait_http(
            "kube-controller-manager", f"https://127.0.0.1:{self.ports['kcm']}/healthz", deadline
        )
        await self._wait_http(
            "kube-scheduler", f"https://127.0.0.1:{self.ports['scheduler']}/healthz", deadline
        )
        await self._create_nodes(deadline)
        await self._wait_default_service_account(deadline)
        self.timings.parts["ready"] = time.monotonic() - t0
        log.info("realkube.started", url=self.url, seconds=round(self.timings.total, 1),
                 rss_mib=round(sum(self.memory().values()) / 2**20))

    async def stop(self, grace: float = 10) -> None:
        """Terminate every part, newest first, then remove the working directory."""
        for proc in reversed(list(self._procs.values())):
            await asyncio.to_thread(self._terminate, proc, grace)
        self._procs.clear()
        if self._given_workdir is None and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    async def restart_apiserver(self, timeout: float = 90) -> None:  # noqa: ASYNC109
        """Stop kube-apiserver (dropping every watch) and start it again on the same port."""
        proc = self._procs.pop("kube-apiserver")
        await asyncio.to_thread(self._terminate, proc, 10)
        self._spawn("kube-apiserver", self._apiserver_argv())
        await self._wait_http(
            "kube-apiserver", f"{self.url}/readyz", time.monotonic() + timeout, auth=True
        )

    async def compact_etcd(self) -> int:
        """Compact etcd up to its current revision (older watch resourceVersions get 410)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.post(f"{self.etcd_url}/v3/kv/range", json={"key": "AA=="}) as r:
                r.raise_for_status()
                revision = int((await r.json())["header"]["revision"])
            body = {"revision": revision, "physical": True}
            async with session.post(f"{self.etcd_url}/v3/kv/compaction", json=body) as r:
                r.raise_for_status()
        return revision

    async def __aenter__(self) -> RealKube:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- processes -----------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        logs = self._dir / "logs"
        logs.mkdir(exist_ok=True)
        proc = _Proc(name, argv, logs / f"{name}.log")
        with proc.log_path.open("ab") as out:
            proc.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(), cwd=self._dir,
            )
        self._procs[name] = proc

    @staticmethod
    def _terminate(proc: _Proc, grace: float) -> None:
        p = proc.process
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)

    def _check_alive(self, name: str) -> None:
        proc = self._procs[name]
        if proc.process is not None and proc.process.poll() is not None:
            raise RealKubeError(
                f"{name} exited with {proc.process.returncode}:\n{proc.tail()}"
            )

    async def _wait_http(self, name: str, url: str, deadline: float, auth: bool = False) -> None:
        headers = {"Authorization": f"Bearer {self.admin_token}"} if auth else {}
        ssl: Any = False  # health endpoints only; the kubeconfig carries the CA for clients
        last = ""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while True:
                self._check_alive(name)
                try:
                    async with session.get(url, headers=headers, ssl=ssl) as resp:
                        if resp.status == 200:
                            return
                        last = f"{resp.status} {(await resp.text())[-500:]}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    last = repr(exc)
                if time.monotonic() > deadline:
                    raise RealKubeError(
                        f"{name} did not answer {url}: {last}\n{self._procs[name].tail()}"
                    )
                await asyncio.sleep(0.25)

    # -- configuration -------------------------------------------------------------------

    def _write_pki(self) -> None:
        pki = self._dir / "pki"
        pki.mkdir(exist_ok=True)
        ca_key, ca = pki / "ca.key", pki / "ca.crt"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
                 "-out", str(ca), "-days", "2", "-subj", "/CN=canaryd-realkube-ca")
        ext = pki / "san.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
                       "DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1\n"
                       "extendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / "apiserver.key"),
                 "-out", str(pki / "apiserver.csr"), "-subj", "/CN=kube-apiserver")
        _openssl("x509", "-req", "-in", str(pki / "apiserver.csr"), "-CA", str(ca),
                 "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(pki / "apiserver.crt"),
                 "-days", "2", "-extfile", str(ext))
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
        (pki / "tokens.csv").write_text(
            f'{self.admin_token},canaryd-harness,harness-uid,"system:masters"\n'
        )
        os.chmod(pki / "tokens.csv", 0o600)

    def _write_kubeconfigs(self) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "realkube", "cluster": {
                "server": self.url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "admin", "user": {"token": self.admin_token}}],
            "contexts": [{"name": "realkube", "context": {"cluster": "realkube",
                                                         "user": "admin"}}],
            "current-context": "realkube",
        }
        self.kubeconfig.write_text(yaml.safe_dump(cfg))
        os.chmod(self.kubeconfig, 0o600)

    def _bin(self, name: str) -> str:
        assert self.binaries is not None
        return self.binaries.path(name)

    def _etcd_argv(self) -> list[str]:
        client, peer = self.etcd_url, f"http://127.0.0.1:{self.ports['etcd-peer']}"
        return [
            self._bin("etcd"), "--name=default", f"--data-dir={self._dir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}", "--unsafe-no-fsync=true",
            "--log-level=warn", "--quota-backend-bytes=4294967296",
        ]

    def _apiserver_argv(self) -> list[str]:
        pki = self._dir / "pki"
        return [
            self._bin("kube-apiserver"), f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC", f"--token-auth-file={pki / 'tokens.csv'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false", "--allow-privileged=true",
            "--profiling=false", "--v=1", *self._audit_args(),
        ]

    def _audit_args(self) -> list[str]:
        if not self.audit:
            return []
        policy = self._dir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
            "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}],
        }))
        (self._dir / "logs").mkdir(exist_ok=True)
        return [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                "--audit-log-mode=blocking", "--audit-log-format=json"]

    def _component_kubeconfig(self) -> str:
        return str(self.kubeconfig)

    def _kcm_argv(self) -> list[str]:
        pki = self._dir / "pki"
        return [
            self._bin("kube-controller-manager"), f"--kubeconfig={self._component_kubeconfig()}",
            f"--authentication-kubeconfig={self._component_kubeconfig()}",
            f"--authorization-kubeconfig={self._component_kubeconfig()}",
            "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['kcm']}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-node-ipam-controller,"
            "-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller",
            "--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10",
            "--kube-api-qps=200", "--kube-api-burst=400", "--profiling=false", "--v=1",
        ]

    def _scheduler_argv(self) -> list[str]:
        return [
            self._bin("kube-scheduler"), f"--kubeconfig={self._component_kubeconfig()}",
            f"--authentication-kubeconfig={self._component_kubeconfig()}",
            f"--authorization-kubeconfig={self._component_kubeconfig()}",
            "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['scheduler']}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--kube-api-qps=200", "--kube-api-burst=400", "--profiling=false", "--v=1",
        ]

    def _kwok_argv(self) -> list[str]:
        assert self.binaries is not None
        argv = [
            self._bin("kwok"), f"--kubeconfig={self._component_kubeconfig()}",
            "--manage-all-nodes=true", "--node-ip=127.0.0.1", f"--cidr={POD_CIDR}",
            f"--server-address=127.0.0.1:{self.ports['kwok-metrics']}",
            # Node liveness by Lease, as kubelets do: without it kwok's heartbeat stage
            # touches Node status only every 10-20 minutes, the node lifecycle controller
            # marks every Node NotReady after its 50 s grace period, and each Pod with it.
            "--node-lease-duration-seconds=40",
        ]
        for stage in stage_files(self.binaries, self._dir):
            argv += ["-c", str(stage)]
        return argv

    # -- objects -------------------------------------------------------------------------

    async def _api(self, session: aiohttp.ClientSession, method: str, path: str,
                   body: Any = None) -> tuple[int, Any]:
        import ssl as _ssl

        ctx = _ssl.create_default_context(cafile=str(self.ca_file))
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        async with session.request(method, f"{self.url}{path}", json=body, headers=headers,
                                   ssl=ctx) as resp:
            return resp.status, await resp.json(content_type=None)

    async def _create_nodes(self, deadline: float) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for i in range(self.node_count):
                name = f"kwok-node-{i}"
                node = {
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": {
                        "kubernetes.io/hostname": name, "type": "kwok",
                        "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
                    "status": {
                        "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                        "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                    },
                }
                status, got = await self._api(session, "POST", "/api/v1/nodes", node)
                if status not in (201, 409):
                    raise RealKubeError(f"creating Node {name}: {status} {got}")
            while True:
                self._check_alive("kwok")
                _, nodes = await self._api(session, "GET", "/api/v1/nodes")
                ready = [
                    n for n in nodes.get("items", [])
                    if any(c.get("type") == "Ready" and c.get("status") == "True"
                           for c in (n.get("status") or {}).get("conditions") or [])
                    and not [t for t in (n.get("spec") or {}).get("taints") or []
                             if t.get("effect") == "NoSchedule"]
                ]
                if len(ready) >= self.node_count:
                    return
                if time.monotonic() > deadline:
                    raise RealKubeError(
                        f"{len(ready)}/{self.node_count} kwok Nodes Ready and schedulable\n"
                        f"{self._procs['kwok'].tail()}"
                    )
                await asyncio.sleep(0.25)

    async def _wait_default_service_account(self, deadline: float) -> None:
        # Pods are refused until the controller manager has made the namespace's account (and
    # Nodes take Pods once its node-lifecycle controller lifts the not-ready taint).
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while True:
                status, _ = await self._api(
                    session, "GET", "/api/v1/namespaces/default/serviceaccounts/default"
                )
                if status == 200:
                    return
                self._check_alive("kube-controller-manager")
                if time.monotonic() > deadline:
                    raise RealKubeError("no default ServiceAccount from the controller manager")
                await asyncio.sleep(0.25)
