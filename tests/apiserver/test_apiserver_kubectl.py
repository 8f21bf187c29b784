"""kubectl against the emulator: get, -w, apply, patch, delete, wait, api-resources."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from apiserver_helpers import WIDGET_CRD, Kubectl, deployment, widget

from canaryd.sandbox.apiserver import ApiServer

pytestmark = pytest.mark.kubectl


async def test_get_table_and_formats(kubectl: Kubectl) -> None:
    _, out, _ = await kubectl.run("get", "ns")
    assert out.split()[:3] == ["NAME", "STATUS", "AGE"] and "kube-system" in out
    _, out, _ = await kubectl.run("get", "ns", "default", "-o", "json")
    assert json.loads(out)["metadata"]["name"] == "default"
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
    await kubectl.run("wait", "--for=condition=Available", "deployment/web", "--timeout=10s")
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


async def test_apply_custom_resource_and_wait_ready(kubectl: Kubectl) -> None:
    await kubectl.run("apply", "-f", "-", stdin=json.dumps(WIDGET_CRD))
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
    await kubectl.run("wait", "--for=condition=Ready", "widget/w1", "--timeout=10s")
    _, out, _ = await kubectl.run("get", "wd")
    assert out.split()[:4] == ["NAME", "PHASE", "SIZE", "w1"]
    await kubectl.run("delete", "widget", "w1")


async def test_get_watch_streams_rows(kubectl: Kubectl, server: ApiServer) -> None:
    await kubectl.run("create", "configmap", "c1")
    proc = await asyncio.create_subprocess_exec(
        *kubectl.base, "get", "configmaps", "-w", stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(10):
            header = await proc.stdout.readline()
            first = await proc.stdout.readline()
            await kubectl.run("create", "configmap", "c2")
            second = await proc.stdout.readline()
    finally:
        proc.kill()
        await proc.wait()
    assert header.split()[0] == b"NAME"
    assert first.split()[0] == b"c1" and second.split()[0] == b"c2"
