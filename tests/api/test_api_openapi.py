"""The OpenAPI document: committed copy matches the served one; schemathesis finds no 5xx and
no response that breaks the schema."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from canaryd.api import openapi
from tests.api.conftest import Served
from tests.api.support import ROOT, TOKENS

COMMITTED = ROOT / "docs" / "openapi.json"
ST = Path(sys.executable).parent / "st"


async def test_the_committed_openapi_document_is_the_served_one(
    http: aiohttp.ClientSession,
) -> None:
    async with http.get("/api/v1/openapi.json") as resp:
        served = await resp.json()
    assert served["openapi"] == "3.1.0"
    assert json.loads(COMMITTED.read_text()) == served, (
        "docs/openapi.json is stale: regenerate with "
        "`python -m canaryd.api.openapi > docs/openapi.json`"
    )
    assert COMMITTED.read_text() == openapi.render()


def test_every_route_is_documented() -> None:
    from canaryd.api.rollouts import ACTION_PHASES

    paths = openapi.paths()
    for action in ACTION_PHASES:
        assert f"/api/v1/rollouts/{{namespace}}/{{name}}/{action}" in paths
    request = openapi.components()["RolloutManifest"]
    assert request["additionalProperties"] is False


@pytest.mark.skipif(not ST.exists(), reason="schemathesis is not installed (pip install .[test])")
async def test_schemathesis_finds_no_server_errors_and_no_schema_violations(
    served: Served, tmp_path: Path,
) -> None:
    report = tmp_path / "report"
    # The event stream is left out: a followed rollout's stream is endless by design.
    argv = [
        str(ST), "run", f"{served.url}/api/v1/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance,response_headers_conformance",
        "--max-examples", os.environ.get("CANARYD_SCHEMATHESIS_EXAMPLES", "25"),
        "--seed", "20261123", "--generation-database", "none", "--workers", "1",
        "--exclude-path-regex", "/events$", "--request-timeout", "10",
        "--phases", "examples,coverage,fuzzing,stateful",
        "-H", f"Authorization: Bearer {TOKENS['admin']}", "--no-color",
        "--report", "junit", "--report-dir", str(report),
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=150)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "No issues found" in text or "passed" in text, text[-3000:]
