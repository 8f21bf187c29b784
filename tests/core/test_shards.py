"""Shards (canaryd.core.shards): the shard of a target, the fair share, and which shards a
replica takes or gives up, driven tick by tick with a virtual clock over simulated Leases."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from canaryd.core import shards

LEASE = 2.0  # leaseDurationSeconds in the simulation


def test_a_targets_shard_is_the_same_in_another_process() -> None:
    # Python's hash() of a str changes per process (PYTHONHASHSEED); the shard must not.
    code = ("from canaryd.core.shards import shard_of; "
            "print([shard_of('demo', f't{i}', 16) for i in range(50)])")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "12345"})
    here = [shards.shard_of("demo", f"t{i}", 16) for i in range(50)]
    assert other.stdout.strip() == str(here)
    assert len(set(here)) > 8, "fifty targets land on most of sixteen shards"


def test_the_namespace_is_part_of_the_shard_key() -> None:
    spread = {shards.shard_of(f"ns{i}", "podinfo", 64) for i in range(40)}
    assert len(spread) > 20


def test_one_shard_holds_every_target() -> None:
    assert {shards.shard_of("demo", f"t{i}", 1) for i in range(20)} == {0}


def test_fair_share_rounds_up_so_every_shard_can_be_held() -> None:
    assert shards.fair_share(4, 3) == 2
    assert shards.fair_share(3, 3) == 1
    assert shards.fair_share(1, 5) == 1
    assert shards.fair_share(8, 0) == 8
    with pytest.raises(ValueError, match="shards"):
        shards.fair_share(0, 1)


def test_a_lone_replica_takes_every_free_shard() -> None:
    p = shards.plan(me="a", shards=4, holders={}, members=())
    assert sorted(p.take) == [0, 1, 2, 3] and p.release == () and p.share == 4


def test_a_replica_gives_up_its_surplus_when_a_member_joins() -> None:
    holders = {s: "a" for s in range(4)}
    p = shards.plan(me="a", shards=4, holders=holders, members=("a", "b"))
    assert p.replicas == 2 and p.share == 2 and len(p.release) == 2 and p.take == ()
    # What it keeps are the shards it ranks highest.
    kept = set(range(4)) - set(p.release)
    assert kept == set(sorted(range(4), key=lambda s: -shards.rank("a", s))[:2])


def test_a_held_shard_is_never_taken() -> None:
    p = shards.plan(me="b", shards=4, holders={0: "a", 1: "a", 2: "a", 3: "a"},
                    members=("a", "b"))
    assert p.take == () and p.release == ()


def test_observed_holder_expires_on_the_local_clock_only() -> None:
    obs = shards.Observations()
    spec = {"holderIdentity": "a", "leaseDurationSeconds": 2, "renewTime": "2020-01-01T00:00:00Z"}
    obs.observe("s0", spec, now=10.0)
    assert obs.holder("s0", 11.9) == "a"
    obs.observe("s0", spec, now=11.9)  # the same record again: not a renewal
    assert obs.holder("s0", 12.0) == ""
    obs.observe("s0", {**spec, "renewTime": "2020-01-01T00:00:01Z"}, now=12.5)
    assert obs.holder("s0", 14.4) == "a" and obs.expiry("s0") == 14.5
    obs.observe("s0", {**spec, "holderIdentity": ""}, now=13.0)  # released
    assert obs.holder("s0", 13.0) == ""
    obs.forget_missing(())
    assert obs.expiry("s0") == float("-inf")


# ---------------------------------------------------------------------- the simulation


@dataclass
class World:
    """The API server's Leases (name -> spec) and the replicas, stepped on a virtual clock.
    Each replica reads every Lease, renews what it holds and its member Lease, then acts on
    `plan`; a write is an optimistic update (first writer of a tick wins the free Lease)."""

    n_shards: int
    leases: dict[str, dict[str, object]] = field(default_factory=dict)
    obs: dict[str, shards.Observations] = field(default_factory=dict)
    alive: set[str] = field(default_factory=set)
    version: int = 0
    now: float = 0.0

    def join(self, name: str) -> None:
        self.alive.add(name)
        self.obs[name] = shards.Observations()

    def _write(self, lease: str, holder: str) -> None:
        self.version += 1
        self.leases[lease] = {"holderIdentity": holder, "leaseDurationSeconds": LEASE,
                              "renewTime": self.version}

    def step(self, me: str) -> None:
        o = self.obs[me]
        for lease, spec in self.leases.items():
            o.observe(lease, spec, self.now)
        self._write(f"member-{me}", me)
        holders = {s: o.holder(f"shard-{s}", self.now) for s in range(self.n_shards)}
        members = [n.removeprefix("member-") for n in self.leases
                   if n.startswith("member-") and o.holder(n, self.now)]
        for s in [s for s, h in holders.items() if h == me]:
            self._write(f"shard-{s}", me)  # renew
        p = shards.plan(me=me, shards=self.n_shards, holders=holders, members=members)
        for s in p.release:
            self.leases[f"shard-{s}"] = {"holderIdentity": "", "leaseDurationSeconds": 1,
                                         "renewTime": -s}
        for s in p.take:
            spec = self.leases.get(f"shard-{s}")
            # The optimistic write: lost when someone else wrote it since it was read.
            if spec is None or o.seen.get(f"shard-{s}") is None or \
                    o.seen[f"shard-{s}"].spec == spec:
                self._write(f"shard-{s}", me)

    def tick(self, dt: float = 0.5) -> None:
        for me in sorted(self.alive):
            self.step(me)
        self.now += dt

    def truth(self) -> dict[int, str]:
        """Who holds each shard by the Leases' latest records."""
        return {s: str(self.leases.get(f"shard-{s}", {}).get("holderIdentity") or "")
                for s in range(self.n_shards)}

    def counts(self) -> dict[str, int]:
        held = self.truth()
        return {r: sum(1 for h in held.values() if h == r) for r in sorted(self.alive)}


def test_three_replicas_spread_eight_shards_then_a_fourth_joins_then_one_dies() -> None:
    w = World(n_shards=8)
    for r in ("a", "b", "c"):
        w.join(r)
    for _ in range(12):
        w.tick()
    assert sorted(w.counts().values()) == [2, 3, 3]
    assert all(w.truth().values()), "every shard is held"

    w.join("d")
    for _ in range(12):
        w.tick()
    assert sorted(w.counts().values()) == [2, 2, 2, 2]

    w.alive.discard("b")  # SIGKILL: b writes nothing more
    lost = {s for s, h in w.truth().items() if h == "b"}
    for _ in range(int(LEASE / 0.5) + 4):
        w.tick()
    held = w.truth()
    assert all(held[s] in {"a", "c", "d"} for s in lost), held
    assert sorted(w.counts().values()) == [2, 3, 3]


def test_no_shard_ever_has_two_live_holders_in_anyones_view() -> None:
    w = World(n_shards=5)
    for r in ("a", "b"):
        w.join(r)
    for i in range(40):
        if i == 10:
            w.join("c")
        if i == 25:
            w.alive.discard("a")
        w.tick(0.3)
        for s in range(5):
            seen = {o.holder(f"shard-{s}", w.now) for n, o in w.obs.items() if n in w.alive}
            assert len(seen - {""}) <= 1, (i, s, seen)


def test_lease_names_and_the_range_of_shards() -> None:
    assert shards.shard_lease_name("canaryd-leader", 3) == "canaryd-leader-shard-3"
    assert shards.lease_shard("canaryd-leader", "canaryd-leader-shard-3", 8) == 3
    assert shards.lease_shard("canaryd-leader", "canaryd-leader-shard-8", 8) is None
    assert shards.lease_shard("canaryd-leader", "canaryd-leader-shard-03", 8) is None
    assert shards.lease_shard("canaryd-leader", "other-shard-3", 8) is None
    member = shards.member_lease_name("canaryd-leader", "pod/with odd chars")
    assert shards.is_member_lease("canaryd-leader", member)
    assert re.fullmatch(r"canaryd-leader-member-[0-9a-f]{12}", member)
    assert member != shards.member_lease_name("canaryd-leader", "another-pod")
    assert shards.check_shards(1) == 1 and shards.check_shards(shards.MAX_SHARDS) == 256
    for bad in (0, -1, shards.MAX_SHARDS + 1):
        with pytest.raises(ValueError, match="between 1 and 256"):
            shards.check_shards(bad)
    with pytest.raises(ValueError, match="label value"):
        shards.check_group("x" * 64)


def test_a_rollouts_shard_follows_its_target_or_else_its_name() -> None:
    def obj(spec: object) -> dict[str, object]:
        return {"metadata": {"namespace": "demo", "name": "r1"}, "spec": spec}

    assert shards.owner_key(obj({"target": "podinfo"})) == ("demo", "podinfo")
    assert shards.owner_key(obj({"target": 7})) == ("demo", "rollout:r1")
    assert shards.owner_key(obj("garbage")) == ("demo", "rollout:r1")
