"""The smallest JSON merge patch (RFC 7386) that turns `old` into what `new` would make it.

A status write is a merge patch of the whole status fenced by resourceVersion; the server
applies it only to the object the decision was made from, so sending just what differs
from that object gives the same result in fewer bytes (bench/scale.py: a whole status is
10-20 KB, most of it history, conditions and the release that did not change).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def diff(old: Any, new: Mapping[str, Any]) -> dict[str, Any]:
    """Keys of `new` whose values differ from `old`'s, objects compared key by key; keys
    `new` leaves out stay out (as in a merge patch of all of `new`), nulls delete."""
    if not isinstance(old, Mapping):
        return dict(new)
    out: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if key in old and before == value:
            continue
        if value is None and key not in old:
            continue  # deleting what is not there changes nothing
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            # An empty object in a merge patch changes nothing, as nothing differs.
            value = diff(before, value)
        out[key] = value
    return out
