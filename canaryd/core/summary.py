"""The summary a finished Rollout is cached as. Pure.

A finished rollout is read by the list (its rows and `canaryd list --target`), arbitration
(it holds nothing), retention (target, creation, uid, resourceVersion) and the phase gauge;
its check history, conditions, evidence and hook runs are read only when someone asks for
that one rollout, and the API then reads it whole from Kubernetes. Kept whole, 50,000 of
them would take about 7 GB (136 KiB each with 20 checks), as summaries 229 MiB
(bench/cache_memory.py, docs/scale.md); `summary` keeps what those readers use.

`summarisable` is the cheap test (the raw phase): only an object whose status says a
terminal phase is looked at further; the caller also keeps whole one whose status canaryd
cannot read, or with a hook call still out (the controller still works on it).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from canaryd.core.model import Phase

TERMINAL = frozenset(p.value for p in Phase if p.terminal)
META_KEYS = ("name", "namespace", "uid", "resourceVersion", "generation",
             "creationTimestamp", "deletionTimestamp", "labels", "finalizers")
ANNOTATION_PREFIX = "canaryd.io/"  # idempotency key, request digest, action
SPEC_KEYS = ("target", "version", "supersede")
# What the list shows (its rows, `list --target`: release from/to, the verdict's time),
# what the notifier's watermark needs (sequence, notified), and small scalars.
STATUS_KEYS = ("phase", "observedGeneration", "stepIndex", "stepCount", "stepProgress",
               "weights", "phaseStartedAt", "reason", "rollbackReason", "outcome",
               "controller", "sequence", "notified", "release")


# Values that differ from one rollout to the next: not worth interning.
_UNIQUE = frozenset({"name", "uid", "resourceVersion", "creationTimestamp",
                     "deletionTimestamp", "phaseStartedAt", "time", "reason",
                     "rollbackReason", "detail"})


def _compact(value: Any, key: str = "") -> Any:
    """`value` with its keys interned, and short strings that repeat across rollouts
    (phases, triggers, namespaces, targets, images): a decoded object holds its own copy of
    every key and string, and 50,000 summaries would hold 50,000 copies of each."""
    if isinstance(value, Mapping):
        return {sys.intern(k) if isinstance(k, str) else k: _compact(v, k)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v, key) for v in value]
    if isinstance(value, str) and len(value) <= 128 and key not in _UNIQUE:
        return sys.intern(value)
    return value


def summarisable(obj: Mapping[str, Any]) -> bool:
    """Whether `obj`'s status names a terminal phase (nothing parsed)."""
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return False
    phase = status.get("phase")
    return isinstance(phase, str) and phase in TERMINAL


def summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A finished rollout's cached form: a subset of the object, with the same
    metadata.resourceVersion, and of `status.history` only the entry into its verdict."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    spec = obj.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    status = obj.get("status")
    status = status if isinstance(status, Mapping) else {}
    kept_meta = {k: meta[k] for k in META_KEYS if k in meta}
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping):
        ours = {k: v for k, v in annotations.items()
                if isinstance(k, str) and k.startswith(ANNOTATION_PREFIX)}
        if ours:
            kept_meta["annotations"] = ours
    kept_status = {k: status[k] for k in STATUS_KEYS if k in status}
    history = status.get("history")
    if isinstance(history, list):
        verdict = next((e for e in reversed(history)
                        if isinstance(e, Mapping) and e.get("phase") == status.get("phase")),
                       None)
        kept_status["history"] = [verdict] if verdict is not None else []
    out: dict[str, Any] = {k: obj[k] for k in ("apiVersion", "kind") if k in obj}
    out["metadata"] = kept_meta
    out["spec"] = {k: spec[k] for k in SPEC_KEYS if k in spec}
    out["status"] = kept_status
    compact: dict[str, Any] = _compact(out)
    return compact
