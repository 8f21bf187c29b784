"""kubectl against both servers: get, -w, apply, patch, delete, wait, api-resources."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import yaml
from apiserver_helpers import WIDGET_CRD, Kubectl, deployment, widget

pytestmark = pytest.mark.kubectl
KUBE_BACKENDS = ("emulator", "real")


async def test_get_table_and_formats(kubectl: Kubectl, ns: str) -> None:
    _, out, _ = await kubectl.run("get", "ns")
    assert out.split()[:3] == ["NAME", "STATUS", "AGE"] and "kube-system" in out
    _, out, _ = await kubectl.run("get", "ns", ns, "-o", "json")
    assert json.loads(out)["metadata"]["name"] == ns
    _, out, _ = await kubectl.run("get", "namespaces", "-o", "yaml")
    assert yaml.safe_load(out)["kind"] == "List"
    _, out, _ = await kubectl.run("api-resources")
    assert "deployments" in out and "apps/v1" in out


async def test_apply_builtin_reapply_patch_wait_delete(kubectl: Kubectl) -> None:
    manifest = json.dumps(deployment("web", 2))
    _, out, _ = await kubectl.run("apply", "-f", "-", stdin=manifest)
    assert "deployment.apps/web created" in out
    _, out, _ = await kubectl.run("apply", "-f", "-", stdin=json.dumps(deployment("web", 3)))
    assert "configured" in out
    await kubectl.run("wait", "--for=condition=Available", "deployment/web", "--timeout=60s",
                      timeout=90)
    await kubectl.run("patch", "deployment", "web", "--type", "merge",
                      "-p", '{"spec":{"replicas":1}}')
    await kubectl.run("patch", "deployment", "web", "--type", "json",
                      "-p", '[{"op":"replace","path":"/spec/replicas","value":4}]')
    _, out, _ = await kubectl.run("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}")
    assert out == "4"
    _, out, _ = await kubectl.run("get", "deploy")
    assert out.split()[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    await kubectl.run("delete", "deployment", "web")
    rc, _, err = await kubectl.run("get", "deployment", "web", check=False)
    assert rc != 0 and "NotFound" in err


async def test_apply_custom_resource_and_wait_ready(crd: dict[str, Any], kubectl: Kubectl
                                                    ) -> None:
    _, out, _ = await kubectl.run("apply", "-f", "-", stdin=json.dumps(WIDGET_CRD))
    assert "customresourcedefinition.apiextensions.k8s.io/widgets.example.com" in out
    _, out, _ = await kubectl.run("apply", "-f", "-", stdin=json.dumps(widget("w1")))
    assert "widget.example.com/w1 created" in out
    _, out, _ = await kubectl.run("apply", "-f", "-", stdin=json.dumps(widget("w1", size=2)))
    assert "configured" in out
    rc, _, err = await kubectl.run("apply", "-f", "-", check=False,
                                   stdin=json.dumps(widget("w2", name="BAD")))
    assert rc != 0 and "should match" in err
    await kubectl.run("patch", "widget", "w1", "--subresource", "status", "--type", "merge",
                      "-p", '{"status":{"phase":"Ready","conditions":'
                            '[{"type":"Ready","status":"True"}]}}')
    await kubectl.run("wait", "--for=condition=Ready", "widget/w1", "--timeout=30s")
    _, out, _ = await kubectl.run("get", "wd")
    assert out.split()[:4] == ["NAME", "PHASE", "SIZE", "w1"]
    await kubectl.run("delete", "widget", "w1")


async def test_get_watch_streams_rows(kubectl: Kubectl) -> None:
    await kubectl.run("create", "configmap", "c1")
    proc = await asyncio.create_subprocess_exec(
        *kubectl.base, "get", "configmaps", "-w", stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    rows: list[list[bytes]] = []
    try:
        async with asyncio.timeout(30):
            header = await proc.stdout.readline()
            rows.append((await proc.stdout.readline()).split())
            await kubectl.run("create", "configmap", "c2")
            while rows[-1][0] != b"c2":
                # A real control plane also has kube-root-ca.crt in every namespace.
                rows.append((await proc.stdout.readline()).split())
    finally:
        proc.kill()
        await proc.wait()
    assert header.split() == [b"NAME", b"DATA", b"AGE"]
    assert rows[0][:2] == [b"c1", b"0"] and rows[-1][:2] == [b"c2", b"0"]
    assert {r[0] for r in rows[1:-1]} <= {b"kube-root-ca.crt"}
