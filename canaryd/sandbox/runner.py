"""Start the whole sandbox: API server, traffic CRDs, example app, simulated mesh, Prometheus.

`Sandbox` is what `canaryd sandbox` and the integration tests run. Everything talks over real
loopback HTTP: the CRDs and the example application go in through kubernetes_asyncio exactly
as they would on a cluster, the mesh watches the API server through a kubeconfig, and the real
Prometheus scrapes the mesh's metrics. Start order is dependency order; stop runs in reverse
and always completes, even after a half-finished start, so no process or file is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import shutil
import tempfile
import weakref
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import aiohttp
import structlog
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox import example_app
from canaryd.sandbox.prometheus import PrometheusServer, find_binary

if TYPE_CHECKING:
    from canaryd.sandbox.apiserver import ApiServer
    from canaryd.sandbox.mesh import Mesh
    from canaryd.sandbox.realkube import RealKube

log = structlog.get_logger("canaryd.sandbox")
_T = TypeVar("_T")


class SandboxError(RuntimeError):
    """The sandbox could not be brought up (or a wait on it timed out)."""


def crd_paths() -> list[Path]:
    """The traffic-routing CRD manifests shipped with canaryd, in a stable order."""
    root = Path(str(importlib.resources.files("canaryd").joinpath("data/crds")))
    return sorted(root.glob("*.yaml"))


class Sandbox:
    """A local stand-in for a cluster running a service mesh and Prometheus (async context)."""

    # The sandboxes started and not yet stopped in this process (a failing test's report
    # describes them).
    running: ClassVar[weakref.WeakSet[Sandbox]] = weakref.WeakSet()

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        kubeconfig_path: Path | None = None,
        example_app: bool = True,
        rps: float | None = None,
        deployment_ready_delay: float = 0.5,
        mesh_tick: float = 0.25,
        scrape_interval: str = "1s",
        prometheus_binary: str = "prometheus",
        prometheus_extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        kube: RealKube | None = None,
        own_kube: bool = False,
    ) -> None:
        """`kube`: a real control plane to use instead of the embedded emulator; with
        `own_kube` the sandbox starts and stops it, otherwise it is already running."""
        self._given_workdir = workdir
        self._given_kubeconfig = kubeconfig_path
        self.with_example_app = example_app
        self.rps = rps
        self.deployment_ready_delay = deployment_ready_delay
        self.mesh_tick = mesh_tick
        self.scrape_interval = scrape_interval
        self.prometheus_binary = prometheus_binary
        self.prometheus_extra_args = list(prometheus_extra_args)
        self.host = host
        self.real_kube = kube
        self._own_kube = own_kube
        self.workdir: Path | None = None
        self.kubeconfig: Path | None = None
        self.api_server: ApiServer | None = None
        self.mesh: Mesh | None = None
        self.prometheus: PrometheusServer | None = None
        self._kube: client.ApiClient | None = None
        self._owns_workdir = False

    # -- addresses ---------------------------------------------------------------------------

    @property
    def kube_api_url(self) -> str:
        if self.real_kube is not None:
            return self.real_kube.url
        url: str = self._require(self.api_server, "API server").url
        return url

    @property
    def mesh_metrics_url(self) -> str:
        return str(self._require(self.mesh, "mesh").metrics_url)

    @property
    def prometheus_url(self) -> str:
        return self._require(self.prometheus, "Prometheus").url

    def endpoints(self) -> dict[str, str]:
        """Everything a user or test needs to reach the sandbox (what `--json` prints)."""
        return {
            "kube_api_url": self.kube_api_url,
            "kubeconfig": str(self.kubeconfig),
            "prometheus_url": self.prometheus_url,
            "mesh_metrics_url": self.mesh_metrics_url,
            "workdir": str(self.workdir),
            **({"kube_workdir": str(self.real_kube.workdir)} if self.real_kube else {}),
        }

    @staticmethod
    def _require(part: _T | None, name: str) -> _T:
        if part is None:
            raise SandboxError(f"the sandbox {name} is not running")
        return part

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        Sandbox.running.add(self)
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        # Imported when used: both packages are large and most importers never start them.
        from canaryd.sandbox.apiserver import ApiServer
        from canaryd.sandbox.mesh import Mesh

        # Fail before starting anything when the one external dependency is missing.
        find_binary(self.prometheus_binary)
        if self._given_workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="canaryd-sandbox-"))
            self._owns_workdir = True
        else:
            self.workdir = self._given_workdir
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self._given_kubeconfig or self.workdir / "kubeconfig"
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)

        if self.real_kube is None:
            self.api_server = ApiServer(deployment_ready_delay=self.deployment_ready_delay)
            await self.api_server.start(host=self.host, port=0)
            self.api_server.write_kubeconfig(self.kubeconfig)
            log.info("sandbox.apiserver.started", url=self.kube_api_url)
            self._kube = await config.new_client_from_config(config_file=str(self.kubeconfig))
            await install_crds(self._kube)
        else:
            from canaryd.sandbox.realkube import crds as real_crds

            if self._own_kube:
                await self.real_kube.start()
                log.info("sandbox.realkube.started", url=self.real_kube.url,
                         seconds=round(self.real_kube.timings.total, 1))
            shutil.copyfile(self.real_kube.kubeconfig, self.kubeconfig)
            self._kube = await config.new_client_from_config(config_file=str(self.kubeconfig))
            # Upstream mesh CRDs where upstream ships them in a Go module; canaryd's own
            # copies for the rest. A namespace left by an earlier user is removed first.
            await install_crds(self._kube, real_crds.sandbox_crd_paths(crd_paths()), timeout=90)
            await real_crds.reset_namespace(self._kube, example_app.NAMESPACE)
            await real_crds.release_leases(self._kube)
        if self.with_example_app:
            ready = None
            if self.real_kube is not None:
                from canaryd.sandbox.realkube import crds as real_crds

                ready = real_crds.wait_default_service_account
            created = await example_app.apply_example_app(
                self._kube, rps=self.rps, namespace_ready=ready
            )
            log.info("sandbox.example_app.applied", created=created)
            if self.real_kube is not None:
                # Real Pods take a moment (scheduler, kwok); the mesh starts on a settled app.
                await real_crds.wait_deployments_available(self._kube, example_app.NAMESPACE)

        self.mesh = Mesh(kubeconfig=str(self.kubeconfig), tick=self.mesh_tick)
        await self.mesh.start(host=self.host, port=0)
        await self.mesh.wait_synced(timeout=10)
        log.info("sandbox.mesh.started", metrics_url=self.mesh_metrics_url)

        metrics = urlsplit(self.mesh_metrics_url)
        self.prometheus = PrometheusServer(
            [metrics.netloc],
            metrics_path=metrics.path or "/metrics",
            scrape_interval=self.scrape_interval,
            evaluation_interval=self.scrape_interval,
            binary=self.prometheus_binary,
            extra_args=self.prometheus_extra_args,
            workdir=self.workdir,
        )
        await self.prometheus.start()
        log.info("sandbox.prometheus.started", url=self.prometheus.url)

    async def stop(self) -> None:
        """Stop every part that was started, newest first; safe to call more than once."""
        Sandbox.running.discard(self)
        steps: list[tuple[str, Callable[[], Awaitable[None]] | None]] = [
            ("prometheus", self.prometheus.stop if self.prometheus else None),
            ("mesh", self.mesh.stop if self.mesh is not None else None),
            ("kube client", self._kube.close if self._kube is not None else None),
            ("apiserver", self.api_server.stop if self.api_server is not None else None),
            ("real control plane",
             self.real_kube.stop if self.real_kube is not None and self._own_kube else None),
        ]
        self.prometheus = self.mesh = self._kube = self.api_server = None
        for name, step in steps:
            if step is None:
                continue
            # One part failing to stop must not leave the later (older) parts running.
            try:
                await step()
            except Exception:
                log.exception("sandbox.stop.failed", part=name)
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._owns_workdir = False

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def describe(self) -> dict[str, Any]:
        """What the sandbox's parts believe right now, synchronously (a pytest hook calls it
        when a test fails): the mesh's watches, Deployments and routes, and Prometheus's
        scrape health and per-workload request rates."""
        import json
        import urllib.parse
        import urllib.request

        out: dict[str, Any] = {"kube": self.kube_api_url if self._kube else None}
        if self.mesh is not None:
            out["mesh"] = self.mesh.describe()
        if self.prometheus is not None:
            queries = {
                "up": "up",
                "rps_by_workload_10s": "sum by (destination_workload) "
                "(rate(istio_requests_total[10s]))",
            }
            for key, query in queries.items():
                url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode(
                    {"query": query}
                )
                try:
                    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback)
                        result = json.loads(resp.read())["data"]["result"]
                    out[key] = {
                        ",".join(f"{k}={v}" for k, v in r["metric"].items() if k != "__name__"):
                        r["value"][1] for r in result
                    }
                except Exception as exc:  # a report, not a check: say what failed
                    out[key] = f"{type(exc).__name__}: {exc}"
        return out

    # -- waiting -----------------------------------------------------------------------------

    # The timeout is part of the wait's contract (its error names the query that stayed empty).
    async def wait_for_traffic(self, timeout: float = 30) -> None:  # noqa: ASYNC109
        """Wait until Prometheus holds the example app's istio_requests_total series."""
        query = (
            f'istio_requests_total{{destination_workload_namespace="{example_app.NAMESPACE}",'
            f'destination_service_name="{example_app.SERVICE}"}}'
        )
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    url = f"{self.prometheus_url}/api/v1/query"
                    async with session.get(url, params={"query": query}) as resp:
                        if resp.status == 200 and (await resp.json())["data"]["result"]:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    raise SandboxError(f"no series for {query} in Prometheus after {timeout}s")
                await asyncio.sleep(0.25)


async def install_crds(
    api: client.ApiClient,
    paths: list[Path] | None = None,
    *,
    timeout: float = 10,  # noqa: ASYNC109 (per CRD; the error names the CRD not served)
) -> list[str]:
    """Create each CRD (keeping existing ones) and wait until all its versions are served."""
    extensions = client.ApiextensionsV1Api(api)
    crds = [yaml.safe_load(path.read_text()) for path in paths or crd_paths()]
    for crd in crds:
        try:
            await extensions.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 409:
                raise
    for crd in crds:
        await _wait_served(api, crd, asyncio.get_running_loop().time() + timeout)
    return [crd["metadata"]["name"] for crd in crds]


async def _wait_served(api: client.ApiClient, crd: dict[str, Any], deadline: float) -> None:
    # Registration is asynchronous on a real API server (the CRD becomes Established first);
    # listing each served version is the check that matters to clients.
    custom = client.CustomObjectsApi(api)
    extensions = client.ApiextensionsV1Api(api)
    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
    while True:
        stored = await extensions.read_custom_resource_definition(crd["metadata"]["name"])
        conditions = {c.type: c.status for c in (stored.status.conditions or [])}
        if conditions.get("Established") == "True":
            break
        if asyncio.get_running_loop().time() > deadline:
            raise SandboxError(f"{crd['metadata']['name']} is not Established: {conditions}")
        await asyncio.sleep(0.05)
    for version in (v["name"] for v in crd["spec"]["versions"] if v.get("served")):
        while True:
            try:
                await custom.list_cluster_custom_object(group, version, plural, limit=1)
                break
            except ApiException as exc:
                if exc.status != 404 or asyncio.get_running_loop().time() > deadline:
                    raise SandboxError(
                        f"{plural}.{group}/{version} is not served: {exc.status} {exc.reason}"
                    ) from exc
            await asyncio.sleep(0.05)
