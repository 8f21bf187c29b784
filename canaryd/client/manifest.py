"""Reading a manifest file (YAML or JSON, or - for stdin) and applying `--set key=value`."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml


class ManifestError(ValueError):
    """The file or a --set is unusable (exit code 2)."""


_SEGMENT = re.compile(r"^(?P<key>[^\[\]]*)(?P<idx>(\[\d+\])*)$")


def load_all(path: str) -> list[Any]:
    """Every non-empty document of a YAML (or JSON) file."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: {exc.strerror}") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML or JSON: {exc}") from None


def load(path: str) -> dict[str, Any]:
    docs = load_all(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise ManifestError(f"{path}: expected one Rollout manifest (a mapping), "
                            f"found {len(docs)} document(s)")
    return docs[0]


def _path(key: str) -> list[str | int]:
    """`spec.plan.steps[0].weight` -> ['spec', 'plan', 'steps', 0, 'weight']; `\\.` escapes
    a dot inside a key (`metadata.annotations.example\\.com/team`)."""
    parts: list[str | int] = []
    for raw in re.split(r"(?<!\\)\.", key):
        match = _SEGMENT.match(raw.replace("\\.", "\0"))
        if match is None or (not match.group("key") and not match.group("idx")):
            raise ManifestError(f"--set {key}: bad key segment {raw!r}")
        if match.group("key"):
            parts.append(match.group("key").replace("\0", "."))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group("idx")))
    return parts


def apply_set(doc: dict[str, Any], assignment: str) -> None:
    """Set one value. Values stay strings: the server converts them per the schema
    (`"5"` for an integer field, `"true"` for a boolean), so a version like 1234567 stays
    a string."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ManifestError(f"--set {assignment!r}: expected key=value")
    parts = _path(key)
    node: Any = doc
    for here, nxt in zip(parts, [*parts[1:], None], strict=True):
        last = nxt is None
        if isinstance(here, int):
            if not isinstance(node, list) or here > len(node):
                raise ManifestError(f"--set {key}: index {here} is out of range")
            if here == len(node):
                node.append(None)
            if last:
                node[here] = value
            elif not isinstance(node[here], dict | list):
                node[here] = [] if isinstance(nxt, int) else {}
            node = node[here]
        else:
            if not isinstance(node, dict):
                raise ManifestError(f"--set {key}: {here!r} is not inside a mapping")
            if last:
                node[here] = value
            elif not isinstance(node.get(here), dict | list):
                node[here] = [] if isinstance(nxt, int) else {}
            node = node.get(here)
