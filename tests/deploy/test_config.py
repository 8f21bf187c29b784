"""Configuration in a cluster: the mounted ConfigMap changes on disk (through Kubernetes'
`..data` symlink swap) and the running daemon follows it; environment overrides; the
pod's in-cluster Kubernetes credentials."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import certifi
import pytest
import yaml
from kubernetes_asyncio.config import incluster_config

from canaryd.adapters.kube import make_api_client
from canaryd.config import load_settings
from canaryd.core.settings import ConfigError
from canaryd.daemon import Daemon, DaemonOptions, PinnedSettings
from canaryd.sandbox.apiserver import ApiServer
from tests.ha.cluster import CONFIG, eventually


class MountedConfigMap:
    """A directory laid out like a kubelet ConfigMap volume: canaryd.yaml -> ..data/canaryd.yaml,
    ..data -> a timestamped directory, swapped atomically on every update."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir(parents=True, exist_ok=True)
        (root / "canaryd.yaml").symlink_to("..data/canaryd.yaml")

    @property
    def path(self) -> Path:
        return self.root / "canaryd.yaml"

    def publish(self, text: str) -> None:
        self.generation += 1
        version = self.root / f"..2026_01_01_00_00_{self.generation:02d}"
        version.mkdir()
        (version / "canaryd.yaml").write_text(text, encoding="utf-8")
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, self.root / "..data")


def edited(**changes: object) -> str:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        data[section][key] = value
    return yaml.safe_dump(data, sort_keys=False)


def test_a_valid_change_applies_and_an_invalid_one_keeps_the_old(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  ) -> None:
    monkeypatch.delenv("CANARYD_PROMETHEUS_URL", raising=False)
    mount = MountedConfigMap(tmp_path / "etc-canaryd")
    mount.publish(CONFIG.read_text(encoding="utf-8"))
    holder = PinnedSettings(mount.path)
    assert holder().controller.checks_kept == 20
    assert not holder.check(), "nothing changed"

    mount.publish(edited(controller__checksKept=7))
    assert holder.check()
    assert holder().controller.checks_kept == 7 and holder.reloads == 1

    mount.publish(edited(controller__checksKept=7, prometheus__retries=99))
    assert not holder.check()
    assert holder().controller.checks_kept == 7 and holder().prometheus.retries == 2
    assert holder.rejected == 1 and holder.last_error is not None
    assert "prometheus.retries" in holder.last_error

    mount.publish("profiles: [not, a, mapping")
    assert not holder.check() and holder.rejected == 2
    assert holder().controller.checks_kept == 7

    mount.publish(edited(controller__checksKept=9))
    assert holder.check() and holder.last_error is None
    assert holder().controller.checks_kept == 9


def test_a_command_line_prometheus_url_survives_reloads(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANARYD_PROMETHEUS_URL", raising=False)
    mount = MountedConfigMap(tmp_path / "etc-canaryd")
    mount.publish(CONFIG.read_text(encoding="utf-8"))
    holder = PinnedSettings(mount.path, prometheus_url="http://prom.test:9090")
    assert holder().prometheus.url == "http://prom.test:9090"
    mount.publish(edited(controller__checksKept=5))
    assert holder.check()
    assert holder().prometheus.url == "http://prom.test:9090"
    assert holder().controller.checks_kept == 5


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {"CANARYD_PROMETHEUS_URL": "http://prometheus.monitoring:9090",
           "CANARYD_PROMETHEUS_TIMEOUT": "2s", "CANARYD_PROMETHEUS_RETRIES": "4",
           "CANARYD_CONTROLLER_TICK": "500ms", "CANARYD_CONTROLLER_CHECKS_KEPT": "50"}
    settings = load_settings(CONFIG, env=env)
    assert settings.prometheus.url == "http://prometheus.monitoring:9090"
    assert settings.prometheus.timeout == 2.0 and settings.prometheus.retries == 4
    assert settings.controller.tick == 0.5 and settings.controller.checks_kept == 50
    with pytest.raises(ConfigError, match="checksKept"):
        load_settings(CONFIG, env={"CANARYD_CONTROLLER_CHECKS_KEPT": "0"})


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    async with ApiServer() as srv:
        yield srv


async def test_the_running_daemon_follows_the_mounted_file(
    server: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CANARYD_PROMETHEUS_URL", raising=False)
    kubeconfig = tmp_path / "kubeconfig"
    server.write_kubeconfig(kubeconfig)
    mount = MountedConfigMap(tmp_path / "etc-canaryd")
    mount.publish(CONFIG.read_text(encoding="utf-8"))
    daemon = Daemon(DaemonOptions(config=mount.path, kubeconfig=str(kubeconfig),
                                  host="127.0.0.1", port=0, identity="cfg",
                                  prometheus_url="http://127.0.0.1:9"))
    task = asyncio.create_task(daemon.run(embedded=True))

    async def readyz() -> dict[str, object]:
        assert daemon.url is not None
        async with aiohttp.ClientSession() as s, s.get(f"{daemon.url}/readyz") as r:
            body: dict[str, object] = await r.json()
            return body

    try:
        async def serving() -> bool:
            return daemon.url is not None

        await eventually(serving, timeout=10, what="the daemon serving")
        mount.publish(edited(controller__checksKept=3))

        async def reloaded() -> bool:
            return daemon.settings().controller.checks_kept == 3

        await eventually(reloaded, timeout=5, what="the new config in force")
        mount.publish(edited(controller__checksKept=3, controller__tick="soon"))

        async def rejected() -> bool:
            return daemon.settings.last_error is not None

        await eventually(rejected, timeout=5, what="the bad config rejected")
        assert daemon.settings().controller.checks_kept == 3
        assert daemon.settings().controller.tick == 1.0
        assert (await readyz())["checks"]["config"] == "last reload rejected"  # type: ignore[index]
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, timeout=15)


async def test_in_a_pod_the_service_account_is_used(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("pod-token-value")
    ca = tmp_path / "ca.crt"
    ca.write_bytes(Path(certifi.where()).read_bytes())  # any loadable CA bundle
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api = await make_api_client(None)
    try:
        cfg = api.configuration
        assert cfg.host == "https://10.96.0.1:443"
        assert cfg.ssl_ca_cert == str(ca)
        assert "pod-token-value" in str(cfg.api_key.get("BearerToken") or cfg.api_key)
    finally:
        await api.close()


async def test_outside_a_pod_the_kubeconfig_is_used(server: ApiServer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kubeconfig = tmp_path / "kubeconfig"
    server.write_kubeconfig(kubeconfig)
    api = await make_api_client(str(kubeconfig))
    try:
        assert api.configuration.host == server.url
    finally:
        await api.close()
