"""List pagination as the etcd3 storage layer does it (`apiserver/pkg/storage/continue.go`).

A continue token is base64url (no padding) of `{"v":"meta.k8s.io/v1","rv":N,"start":KEY}`:
the next page is read at resourceVersion N, a consistent snapshot, from the key after the
last one returned (`/<name>\\x00` within a namespace, `/<namespace>/<name>\\x00` across).
Malformed tokens are refused with 400; a token whose snapshot is no longer in the history
(the store was compacted) gets 410 Expired with a fresh token (rv -1: go on at the latest).
"""

from __future__ import annotations

import base64
import binascii
import json

from canaryd.sandbox.apiserver.errors import ApiError, Obj
from canaryd.sandbox.apiserver.store import etcd_key

_INCONSISTENT = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted "
    "between the time the first chunk was returned and now may show up in the list."
)

Key = tuple[str, str]


def key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


def after(obj: Obj, start: Key) -> bool:
    """Does `obj` come after `start` in etcd's key order?"""
    return etcd_key(key(obj)) > etcd_key(start)


def encode(last: Key, namespace: str | None, rv: int) -> str:
    ns, name = last
    start = f"/{name}\x00" if namespace is not None or not ns else f"/{ns}/{name}\x00"
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _bad(detail: str) -> ApiError:
    return ApiError(400, f"invalid continue token: {detail}")


def decode(token: str, namespace: str | None) -> tuple[Key, int]:
    """The key the next page starts after, and the snapshot's resourceVersion."""
    try:
        if "=" in token or len(token) % 4 == 1:
            raise binascii.Error
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        bad_at = next((i for i, c in enumerate(token) if not (c.isalnum() or c in "-_")),
                      len(token) - 1)
        raise _bad(f"continue key is not valid: illegal base64 data at input byte {bad_at}"
                   ) from None
    try:
        parsed = json.loads(data)
        version, rv, start = parsed["v"], int(parsed.get("rv", 0)), str(parsed.get("start", ""))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _bad(f"continue key is not valid: {exc}") from None
    if version != "meta.k8s.io/v1":
        raise _bad(f"continue key is not valid: server does not recognize this encoded version "
                   f"{version}")
    if rv == 0:
        raise _bad("continue key is not valid: incorrect encoded start resourceVersion "
                   "(version meta.k8s.io/v1)")
    if not start:
        raise _bad("continue key is not valid: encoded start key empty (version meta.k8s.io/v1)")
    parts = start.strip("/").rstrip("\x00").split("/")
    if namespace is not None or len(parts) == 1:
        return ((namespace or "", parts[-1]), rv)
    return ((parts[0], parts[1]), rv)


def parse_rv(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f'invalid resource version "{value}"') from None


def expired(after: Key, namespace: str | None) -> ApiError:
    return ApiError(410, _INCONSISTENT, reason="Expired",
                    list_meta={"continue": encode(after, namespace, -1)})
