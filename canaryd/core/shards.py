"""Shards: which replica drives which rollouts. Pure: no I/O, no clock reads.

Targets are split over a fixed number of shards by a stable hash of `namespace/target`
(SHA-256, never Python's per-process `hash()`), so every rollout of one target is in the
same shard on every replica and across restarts. Each shard is led through its own Lease
with the leader election's client-go semantics; this module decides, from what a replica
has observed, which shards it should try to take and which it should give up:

- The replicas counted are the live members (each replica renews a member Lease of its own)
  plus the live holders of shard Leases plus the replica itself: a replica that holds no
  shard yet is still counted, so the others make room for it.
- A replica's fair share is ceil(shards / replicas). It takes free shards (released, or
  whose lease ran out as observed here) up to its share and gives up its surplus above it.
- Which shards: rendezvous hashing. Every replica ranks the shards by a hash of
  (identity, shard) and prefers the highest; it gives up its lowest-ranked first. Two
  replicas rarely want the same free shard at once, and a shard tends to return to the
  same replica after a restart with the same identity.

`Observations` tracks each Lease record the way `runtime.leader` does: a record's lease is
live while the local time at which it last changed, plus its leaseDurationSeconds, lies in
the future. The server's timestamps are never compared with the local clock.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_SHARDS = 256
# Labels on every Lease of one sharded installation: listed by GROUP_LABEL=<lease name>.
GROUP_LABEL = "canaryd.io/lease-group"
ROLE_LABEL = "canaryd.io/lease-role"
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def check_shards(shards: int) -> int:
    """`shards` if it is a usable number of shards, else ValueError saying the range."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be between 1 and {MAX_SHARDS}, not {shards}")
    return shards


def shard_lease_name(lease: str, shard: int) -> str:
    return f"{lease}-shard-{shard}"


def member_lease_name(lease: str, identity: str) -> str:
    """The member Lease of one replica (the identity hashed: any identity makes a valid
    name)."""
    return f"{lease}-member-{hashlib.sha256(identity.encode('utf-8')).hexdigest()[:12]}"


def lease_shard(lease: str, name: str, shards: int) -> int | None:
    """The shard whose Lease is called `name`, or None."""
    prefix = f"{lease}-shard-"
    if not name.startswith(prefix) or not name[len(prefix):].isdigit():
        return None
    shard = int(name[len(prefix):])
    return shard if shard < shards and name == shard_lease_name(lease, shard) else None


def is_member_lease(lease: str, name: str) -> bool:
    return name.startswith(f"{lease}-member-")


def check_group(lease: str) -> str:
    """The Lease name as a sharded installation uses it: also a label value (at most 63
    characters) and room for the suffixes in a Lease name."""
    if not LABEL_VALUE.match(lease) or len(lease) > 63:
        raise ValueError(f"lease name {lease!r} must be a label value (at most 63 letters, "
                         "digits, '-', '_' or '.', starting and ending alphanumeric) to be "
                         "used with shards")
    return lease


def owner_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, target) that decides a cached rollout's shard: its spec.target, or for a
    spec without a readable one, its own name (every replica computes the same)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec")
    target = spec.get("target") if isinstance(spec, Mapping) else None
    namespace = str(meta.get("namespace", "")) if isinstance(meta, Mapping) else ""
    if isinstance(target, str) and target:
        return namespace, target
    name = meta.get("name", "") if isinstance(meta, Mapping) else ""
    return namespace, f"rollout:{name}"


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def shard_of(namespace: str, target: str, shards: int) -> int:
    """The shard of a target: stable across processes, machines and versions."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    return _digest(f"{namespace}/{target}") % shards


def fair_share(shards: int, replicas: int) -> int:
    """ceil(shards / replicas): what one replica may hold (every shard held when all do)."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    return math.ceil(shards / max(replicas, 1))


def rank(identity: str, shard: int) -> int:
    """How much `identity` prefers `shard` (rendezvous hashing: higher is preferred)."""
    return _digest(f"{identity}#{shard}")


@dataclass(frozen=True)
class Plan:
    take: tuple[int, ...]  # free shards to try, most preferred first
    release: tuple[int, ...]  # held shards to give up, least preferred first
    replicas: int
    share: int


def plan(*, me: str, shards: int, holders: Mapping[int, str], members: Iterable[str],
         mine: Iterable[int] | None = None) -> Plan:
    """What `me` should do now.

    `holders`: shard -> identity of its live holder, as observed (absent or "": free).
    `members`: identities with a live member Lease. `mine`: the shards `me` holds (default:
    those `holders` names it for)."""
    held = {s: h for s, h in holders.items() if h and 0 <= s < shards}
    replicas = {me, *(m for m in members if m), *held.values()}
    share = fair_share(shards, len(replicas))
    own = sorted(set(mine) if mine is not None else {s for s, h in held.items() if h == me},
                 key=lambda s: -rank(me, s))
    if len(own) > share:
        surplus = own[share:]
        return Plan(take=(), release=tuple(reversed(surplus)), replicas=len(replicas),
                    share=share)
    free = sorted((s for s in range(shards) if s not in held and s not in own),
                  key=lambda s: -rank(me, s))
    return Plan(take=tuple(free[:share - len(own)]), release=(), replicas=len(replicas),
                share=share)


# ---------------------------------------------------------------------- observing Leases


@dataclass
class _Seen:
    spec: dict[str, Any]
    at: float  # local monotonic time the record last changed


@dataclass
class Observations:
    """Lease records by name, each with the local time it last changed."""

    seen: dict[str, _Seen] = field(default_factory=dict)

    def observe(self, name: str, spec: Mapping[str, Any] | None, now: float) -> None:
        """Record a Lease as read at local time `now` (None: it does not exist)."""
        if spec is None:
            self.seen.pop(name, None)
            return
        record = dict(spec)
        old = self.seen.get(name)
        if old is None or old.spec != record:
            self.seen[name] = _Seen(record, now)

    def forget_missing(self, present: Iterable[str]) -> None:
        """Drop the records of Leases that no longer exist (a listing's complete view)."""
        keep = set(present)
        for name in [n for n in self.seen if n not in keep]:
            del self.seen[name]

    def holder(self, name: str, now: float) -> str:
        """The live holder of Lease `name` at local time `now`, or "" (free or expired)."""
        seen = self.seen.get(name)
        if seen is None:
            return ""
        holder = str(seen.spec.get("holderIdentity") or "")
        duration = float(seen.spec.get("leaseDurationSeconds") or 0)
        return holder if holder and seen.at + duration > now else ""

    def expiry(self, name: str) -> float:
        """Local time at which the observed record of `name` runs out (-inf: unknown)."""
        seen = self.seen.get(name)
        if seen is None:
            return -math.inf
        return seen.at + float(seen.spec.get("leaseDurationSeconds") or 0)
