"""kwok's stages for the real control plane: kwok's own (node initialize and heartbeat, pod
ready, complete and delete), with one of canaryd's beside them: a Job's pod labelled
`canaryd.io/test-outcome: fail` fails (exit code 1) where kwok's pod-complete would have it
succeed, so tests can run a failing Job through the real Job controller. Every other pod
is handled by kwok's stages as before: pod-complete only gains the label's exclusion and
a delay read from the pod's annotation canaryd.io/test-duration (none: at once, as before)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from canaryd.sandbox.realkube.binaries import Binaries

OUTCOME_LABEL = "canaryd.io/test-outcome"
DURATION_ANNOTATION = "canaryd.io/test-duration"  # how long the pod runs, e.g. "8s"
_LABEL_KEY = f'.metadata.labels["{OUTCOME_LABEL}"]'
# Both stages finish a Job's pod at once, or after the pod's canaryd.io/test-duration.
_DELAY = {"durationMilliseconds": 0, "durationFrom": {
    "expressionFrom": f'.metadata.annotations["{DURATION_ANNOTATION}"]'}}

POD_FAIL: dict[str, Any] = {
    "apiVersion": "kwok.x-k8s.io/v1alpha1",
    "kind": "Stage",
    "metadata": {"name": "canaryd-pod-fail"},
    "spec": {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "selector": {"matchExpressions": [
            {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
            {"key": ".status.phase", "operator": "In", "values": ["Running"]},
            {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
            {"key": _LABEL_KEY, "operator": "In", "values": ["fail"]},
        ]},
        "delay": _DELAY,
        "next": {"statusTemplate": """
{{ $now := Now }}
containerStatuses:
{{ range $index, $item := .spec.containers }}
- image: {{ $item.image | Quote }}
  name: {{ $item.name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: 1
      finishedAt: {{ $now | Quote }}
      reason: Error
      message: "failed by canaryd's kwok stage (label canaryd.io/test-outcome=fail)"
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Failed
"""},
    },
}


def _not_failing(stage: dict[str, Any]) -> dict[str, Any]:
    exprs = stage["spec"]["selector"]["matchExpressions"]
    exprs.append({"key": _LABEL_KEY, "operator": "NotIn", "values": ["fail"]})
    stage["spec"].setdefault("delay", _DELAY)
    return stage


def stage_files(binaries: Binaries, into: Path) -> list[Path]:
    """The stage files kwok is started with: kwok's, pod-complete rewritten into `into`
    without the pods canaryd's pod-fail stage (written there too) takes."""
    out: list[Path] = []
    for path in binaries.stages:
        if path.name == "pod-complete.yaml":
            changed = into / "pod-complete.yaml"
            changed.write_text(yaml.safe_dump(_not_failing(yaml.safe_load(path.read_text()))))
            out.append(changed)
        else:
            out.append(path)
    fail = into / "canaryd-pod-fail.yaml"
    fail.write_text(yaml.safe_dump(POD_FAIL))
    return [*out, fail]
